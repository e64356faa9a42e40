"""A language model's token counts are no credentials: "prompt_tokens" with a number
ships, in meta and in text, while "token" and "access_tokens" stay redacted."""

from __future__ import annotations

from typing import Any

import pytest
import structlog

from logdna_client import Client, LogDNAHandler
from logdna_client._redact import MARKER, Redactor
from logdna_client.structlog import LogDNAProcessor
from tests.helpers import make_logger
from tests.test_redact import RecordingTransport, lines_of, shipped, wire  # noqa: F401

# What the SDKs and OpenTelemetry's GenAI conventions name their counts.
COUNT_KEYS = [
    "prompt_tokens", "completion_tokens", "total_tokens", "reasoning_tokens",  # OpenAI
    "max_tokens", "max_new_tokens", "max_completion_tokens",
    "input_tokens", "output_tokens", "cache_read_input_tokens",  # Anthropic
    "inputTokens", "promptTokenCount", "totalTokenCount",  # Bedrock, Gemini
    "gen_ai.usage.input_tokens", "gen_ai.request.max_tokens",  # OpenTelemetry
    "num_tokens", "token_count", "tokens_used", "tokensPerSecond",
]  # fmt: skip
# Still secrets whatever their value: the singular, and plural ones another name or
# word makes a secret's.
SECRET_KEYS = ["token", "api_token", "tokens_token", "auth_tokens", "password_tokens",
               "otp_tokens", "session_tokens",
               # Whole words only: "tokens" with another name after it, singular "token"
               # beside one that starts like "s" (OAuth 1's "oauth_token_secret").
               "token_secret", "tokenSecret", "access_token_secret", "oauth_token_secret",
               "X-Token-Secret", "token_session", "tokenSessionId", "token_signature",
               "tokenString", "token_store",
               # Plural, with words no count is named with (H181): one-time codes,
               # card tokens, a bot's tokens.
               "mfa_tokens", "sms_tokens", "verification_tokens", "recovery_tokens",
               "backup_tokens", "reset_tokens", "card_tokens", "TELEGRAM_BOT_TOKENS",
               "access_tokens", "refresh_tokens", "access_token_details",
               "refresh_token_details"]  # fmt: skip


class TestMeta:
    @pytest.mark.parametrize("key", COUNT_KEYS)
    @pytest.mark.parametrize("count", [0, 1234, 1.5, None])
    def test_a_count_ships(self, key: str, count: float | None) -> None:
        assert {key: count} == Redactor().meta({key: count})

    @pytest.mark.parametrize(
        "value", ["sk-abc123", "1234", ["abc", "def"], {"prod": "abc"}, True, b"12"]
    )
    @pytest.mark.parametrize("key", ["prompt_tokens", "access_tokens", "tokens", "token_count"])
    def test_anything_else_under_a_count_key_is_redacted(self, key: str, value: Any) -> None:
        """A plural "tokens" key holds credentials as often as counts: only a number
        (not a bool, not digits in a string) is known to be a count."""
        assert {key: MARKER} == Redactor().meta({key: value})

    @pytest.mark.parametrize("key", SECRET_KEYS)
    def test_a_secret_key_keeps_its_number_redacted(self, key: str) -> None:
        assert {key: MARKER} == Redactor().meta({key: 123456})

    @pytest.mark.parametrize("key", ["tokenizer", "tokenizer_name", "tokenization", "token_usage"])
    def test_tokenizers_and_usage_dicts_are_no_secrets(self, key: str) -> None:
        """A tokenizer's name ships, and a usage dict (LangChain's "token_usage") is
        walked: its counts ship, a secret in it does not."""
        meta = {key: {"prompt_tokens": 3, "access_token": "abc"}, "name": "cl100k"}

        assert {key: {"prompt_tokens": 3, "access_token": MARKER}, "name": "cl100k"} == (
            Redactor().meta(meta)
        )
        assert {key: "cl100k"} == Redactor().meta({key: "cl100k"})

    @pytest.mark.parametrize(
        "key",
        ["tokenizer_secret", "detokenized_value", "tokenized_card", "tokenizedValue",
         "access_token_usage", "access_token_details_secret", "access_token_details",
         "refresh_tokens_details"],
    )  # fmt: skip
    def test_whole_words_only(self, key: str) -> None:
        """A secret name beside the tokenizer's, and words that only start like it (a
        vault's detokenized value is the raw card number), are secrets."""
        assert {key: MARKER} == Redactor().meta({key: "4111111111111111"})

    def test_count_details_are_walked(self) -> None:
        """OpenAI's usage (``usage.model_dump()``): its details dicts are walked, their
        counts ship; Gemini's list of counts too."""
        usage = {
            "prompt_tokens": 9,
            "prompt_tokens_details": {"cached_tokens": 0, "audio_tokens": None},
            "completion_tokens_details": {"reasoning_tokens": 4, "access_token": "t0p"},
            "promptTokensDetails": [{"modality": "TEXT", "tokenCount": 3}],
        }
        expected = {
            **usage,
            "completion_tokens_details": {"reasoning_tokens": 4, "access_token": MARKER},
        }

        assert expected == Redactor().meta(usage)

    def test_keys_given_by_the_application_are_secrets_whole(self) -> None:
        """redact_keys=["prompt_tokens"] asked for that count to go: it goes."""
        redactor = Redactor(extra_keys=["prompt_tokens", "my_tokenizer"])

        assert {"prompt_tokens": MARKER, "total_tokens": 6, "my_tokenizer": MARKER} == (
            redactor.meta({"prompt_tokens": 5, "total_tokens": 6, "my_tokenizer": "x"})
        )

    def test_without_the_defaults_a_given_token_name_covers_them(self) -> None:
        """redact=False with redact_keys=["token"]: the application's own rule, whole."""
        redactor = Redactor(defaults=False, extra_keys=["token"])

        assert {"prompt_tokens": MARKER, "tokenizer": MARKER} == (
            redactor.meta({"prompt_tokens": 5, "tokenizer": "x"})
        )


class TestText:
    @pytest.mark.parametrize(
        "text",
        [
            "usage prompt_tokens=120 completion_tokens=30 total_tokens=150",
            '{"usage": {"prompt_tokens": 12, "completion_tokens": 3, "total_tokens": 15}}',
            "{'input_tokens': 7, 'output_tokens': -1}",
            "[max_tokens] => 512",
            "limit reached: max_tokens=512.",
            "rate tokens_per_second: 41.5, done",
            "tokens_used=1,234 cached_tokens=None",
        ],
    )
    def test_counts_ship(self, text: str) -> None:
        assert text == Redactor().text(text)

    @pytest.mark.parametrize(
        ("text", "expected"),
        [
            ("refresh_tokens=abc", f"refresh_tokens={MARKER}"),
            ("tokens=12ab x", f"tokens={MARKER} x"),
            ("tokens=1.2.3 x", f"tokens={MARKER} x"),
            ('"prompt_tokens": "120"', f'"prompt_tokens": "{MARKER}"'),
            ("token=123456", f"token={MARKER}"),
            ("auth_tokens=5", f"auth_tokens={MARKER}"),
            ("total_tokens=5;pw=3", f"total_tokens=5;pw={MARKER}"),
            # A number that only starts the value (H179): Google's and Microsoft's
            # refresh tokens, Telegram's bot tokens, Facebook's app tokens.
            ("refresh_tokens=1//0gLxW9zXk3aBcDeF", f"refresh_tokens={MARKER}"),
            ("refresh_tokens=0.ARoAv4j5cvGGr0GRq x", f"refresh_tokens={MARKER} x"),
            ("BOT_TOKENS=123456789:AAHdqTcvCH1vGWJx", f"BOT_TOKENS={MARKER}"),
            ("access_tokens=1234567890|abcdef0123", f"access_tokens={MARKER}"),
            ("config:\n  refresh_tokens: 1//0gabc", f"config:\n  refresh_tokens: {MARKER}"),
            ("?refresh_tokens=1//0gabc&x=1", f"?refresh_tokens={MARKER}&x=1"),
            ("Tokens=12 ab cd; Server=x", f"Tokens={MARKER}; Server=x"),
            *[
                (f"tokens={v} x", f"tokens={MARKER} x")
                for v in [
                    "123.abc",
                    "1.5.abc",
                    "12%20ab",
                    "12/3/ab",
                    "-1/abc",
                    "123€abc",
                    "12+ab==",
                ]
            ],
            ("X-Token-Secret: 12/ab+cdEFgh==", f"X-Token-Secret: {MARKER}"),
            ("token_secret=839201", f"token_secret={MARKER}"),
        ],
    )
    def test_anything_else_is_redacted(self, text: str, expected: str) -> None:
        assert expected == Redactor().text(text)

    @pytest.mark.parametrize("keys", [1, 20])
    def test_long_text_takes_the_same_rule(self, keys: int) -> None:
        """Text long enough that keys are found forwards from each (_key_values), or
        with so many that each separator is read (_at_separators), several times (the
        finders are compiled after a few)."""
        text = ("filler " * 400) + " ".join(
            f"prompt_tokens={n} refresh_tokens=1//0g{n} token{n % keys}=t{n}" for n in range(20)
        )
        redactor = Redactor()

        for _ in range(4):
            redacted = redactor.text(text)

            assert "prompt_tokens=19 " in redacted
            assert "t19" not in redacted and "0g19" not in redacted
            assert redacted.count(f"refresh_tokens={MARKER}") == 20


class TestEndToEnd:
    def test_handler_extras_and_message(
        self,
        handle_path: str,
        wire: tuple[Client, RecordingTransport],  # noqa: F811
    ) -> None:
        client, transport = wire
        log = make_logger(f"t.tokens.{handle_path}", LogDNAHandler(client=client))

        for _ in range(2):  # (the second time, its keys are known to the caches)
            log.info("usage prompt_tokens=%d", 120, extra={"total_tokens": 150, "token": "t0p"})

        for line in lines_of(shipped(client, transport)):
            assert "usage prompt_tokens=120" == line["line"]
            assert 150 == line["meta"]["total_tokens"]
            assert MARKER == line["meta"]["token"]

    def test_structlog_processor(
        self,
        handle_path: str,
        wire: tuple[Client, RecordingTransport],  # noqa: F811
    ) -> None:
        client, transport = wire
        processor = LogDNAProcessor(client=client)
        log = structlog.wrap_logger(
            structlog.ReturnLogger(), processors=[processor], wrapper_class=structlog.BoundLogger
        )

        for _ in range(2):
            log.info("llm call", input_tokens=7, output_tokens=3, api_token="t0p")

        for line in lines_of(shipped(client, transport)):
            assert {"input_tokens": 7, "output_tokens": 3, "api_token": MARKER}.items() <= (
                line["meta"].items()
            )
