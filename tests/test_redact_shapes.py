"""Credential shapes real applications log, in message text and in meta values:
each ships with its secret replaced, whole (the last review's gaps and the
adversarial review after them)."""

from __future__ import annotations

from pathlib import Path

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from logdna_client import Client, LogDNAHandler
from logdna_client._redact import _AWS_KEY_KINDS, CREDENTIAL_PATTERNS, MARKER, Redactor, has_trigger
from tests._redact_reference import ReferencePatterns
from tests.test_redact import (  # noqa: F401
    CREDENTIAL_EXAMPLES,
    RecordingTransport,
    assert_ships_as,
    wire,
)
from tests.test_speedups import (  # noqa: F401
    needs_speedups,
    pair,
    record,
    through_both,
    with_extras_through_both,
)

#: (text, what it ships as); each secret piece is spelled "s3cr..." so a leak is
#: easy to see.
SHAPES = [
    # A value with spaces before a connection string's ";": all of it.
    ("Password=s3cr et;", "Password=[REDACTED];"),
    ("Server=db;User Id=sa;Password=s3cr et pass;Database=app",
     "Server=db;User Id=sa;Password=[REDACTED];Database=app"),
    # A URL's password holding "@" (urllib takes the host after the last one).
    ("https://user:s3cr@et@host/x", "https://user:[REDACTED]@host/x"),
    ("postgres://app:s3cr@et@db:5432/x", "postgres://app:[REDACTED]@db:5432/x"),
    # A bytearray's repr, as a dict or kwargs repr prints it.
    ("{'password': bytearray(b's3cret')}", "{'password': bytearray(b'[REDACTED]')}"),
    ("Config(password=bytearray(b's3cret'), user='bob')",
     "Config(password=bytearray(b'[REDACTED]'), user='bob')"),
    # A call's repr around the value (a wrapper type's, a custom secret holder's).
    ("login(u, password=Secret('s3cret'))", "login(u, password=Secret('[REDACTED]'))"),
    ('Config(api_token=types.Token("s3cret"), x=1)',
     'Config(api_token=types.Token("[REDACTED]"), x=1)'),
    # A tuple value, as a kwargs repr prints requests' auth=.
    ("get(url, auth=('admin', 's3cret'), timeout=3)", "get(url, auth=[REDACTED], timeout=3)"),
    ("{'password': ('s3cr', 'et')}", "{'password': [REDACTED]}"),
    # A key ending in two digits before ": " is a key, not a time.
    ("token01: s3cret", "token01: [REDACTED]"),
    ('"password12": "s3cret"', '"password12": "[REDACTED]"'),
    # Oracle's user/password@database.
    ("sqlplus scott/s3cret@orcl", "sqlplus scott/[REDACTED]@orcl"),
    ("url jdbc:oracle:thin:app/s3cret@db:1521:ORCL",
     "url jdbc:oracle:thin:app/[REDACTED]@db:1521:ORCL"),
    ("exp userid=system/s3cr#t@//db:1521/XE", "exp userid=system/[REDACTED]@//db:1521/XE"),
    # A command line's user:password.
    ("run curl -u admin:s3cret https://api", "run curl -u admin:[REDACTED] https://api"),
    ("curl -uadmin:s3cret --proxy-user p:s3cr x",
     "curl -uadmin:[REDACTED] --proxy-user p:[REDACTED] x"),
    ("wget --user=bob:s3cret\u00a0-u x:s3cret", "wget --user=bob:[REDACTED]\u00a0-u x:[REDACTED]"),
    # A PEM private key logged bare (no key names it), whole or cut.
    ("loaded -----BEGIN RSA PRIVATE KEY-----\nMIIEs3cret+/x\n-----END RSA PRIVATE KEY-----",
     "loaded -----BEGIN RSA PRIVATE KEY-----[REDACTED]-----END RSA PRIVATE KEY-----"),
    ("-----BEGIN PRIVATE KEY-----\\nMIIs3cret\\n-----END PRIVATE KEY-----\\n",
     "-----BEGIN PRIVATE KEY-----[REDACTED]-----END PRIVATE KEY-----\\n"),
    ("-----BEGIN OPENSSH PRIVATE KEY----- b3Blbs3cret",
     "-----BEGIN OPENSSH PRIVATE KEY-----[REDACTED]"),
    # Tokens that name themselves by their prefix, logged bare.
    ("push with ghp_s3cr" + "a" * 32 + " done", "push with ghp_[REDACTED] done"),
    ("github_pat_11AAs3cr" + "b" * 70, "github_pat_[REDACTED]"),
    ("slack xoxb-1234-5678-s3cretTok ok", "slack xoxb-[REDACTED] ok"),
    ("stripe sk_live_s3cr" + "c" * 20 + ", rk_test_s3cr" + "d" * 20,
     "stripe sk_live_[REDACTED], rk_test_[REDACTED]"),
    # API keys that name their provider by their prefix, logged bare: OpenAI's,
    # Anthropic's, Hugging Face's, GitLab's, npm's, PyPI's, DigitalOcean's, Google's,
    # SendGrid's.
    ("Incorrect API key provided: sk-proj-s3cr" + "A1_-" * 12 + ".",
     "Incorrect API key provided: sk-proj-[REDACTED]."),
    ("keys sk-svcacct-s3cr" + "x" * 30 + " sk-admin-s3cr" + "y" * 30,
     "keys sk-svcacct-[REDACTED] sk-admin-[REDACTED]"),
    ("legacy sk-s3cr" + "a" * 16 + "T3BlbkFJ" + "b" * 20 + " ok",
     "legacy sk-[REDACTED] ok"),
    ("{'detail': 'sk-ant-api03-s3cr" + "Zz9_-" * 20 + "AA'}",
     "{'detail': 'sk-ant-api03-[REDACTED]'}"),
    ("ValueError('hf_s3cr" + "Ab" * 15 + "')", "ValueError('hf_[REDACTED]')"),
    ("remote https://oauth2:glpat-s3cr" + "x" * 16 + "@gitlab.com/a.git",
     "remote https://oauth2:[REDACTED]@gitlab.com/a.git"),
    ("token glpat-s3cr" + "Xy1" * 6 + " set", "token glpat-[REDACTED] set"),
    ("npm_s3cr" + "a1" * 16 + ", pypi-AgEIcHlwaS5vcmcs3cr" + "B" * 40,
     "npm_[REDACTED], pypi-[REDACTED]"),
    ("do: dop_v1_" + "ab12" * 16, "do: dop_v1_[REDACTED]"),
    ("maps AIzas3cr" + "Aa0_-" * 6 + "z key", "maps AIza[REDACTED] key"),
    ("mail SG.s3cr" + "a" * 18 + ".s3cr" + "B" * 39 + " sent",
     "mail SG.[REDACTED] sent"),
    # After a backslash escape written out, as %r and json.dumps write a line break or
    # an "é" (H183: the "n" before the prefix read as a word's letter).
    ("loaded 'card\\nhf_s3cr" + "Ab" * 15 + "'", "loaded 'card\\nhf_[REDACTED]'"),
    ('said {"error": "bad\\tglpat-s3cr' + "x" * 16 + '"}',
     'said {"error": "bad\\tglpat-[REDACTED]"}'),
    ("x\\u00e9npm_s3cr" + "a1" * 16, "x\\u00e9npm_[REDACTED]"),
    # The same for the other tokens that name themselves, and AWS key ids and JWTs.
    ("got 'a\\nghp_s3cr" + "a" * 32 + "'", "got 'a\\nghp_[REDACTED]'"),
    ("got 'a\\txoxb-1234-s3cretTok'", "got 'a\\txoxb-[REDACTED]'"),
    ("got 'a\\u00e9sk_live_s3cr" + "c" * 20 + "'", "got 'a\\u00e9sk_live_[REDACTED]'"),
    ("got 'a\\nAKIAIOSFODNN7EXAMPLE'", "got 'a\\n[REDACTED]'"),
    ("got 'a\\neyJhbGciOi.eyJzdWIi.s3cr'", "got 'a\\n[REDACTED]'"),
    # %r's other escapes (H184): a control character, octal, an astral character.
    ("got 'a\\x00AKIAIOSFODNN7EXAMPLE'", "got 'a\\x00[REDACTED]'"),
    ("got 'a\\012ghp_s3cr" + "a" * 32 + "'", "got 'a\\012ghp_[REDACTED]'"),
    ("got 'a\\U0001f600hf_s3cr" + "Ab" * 15 + "'", "got 'a\\U0001f600hf_[REDACTED]'"),
    ("got 'a\\x0axoxb-1234-s3cretTok'", "got 'a\\x0axoxb-[REDACTED]'"),
    # A command line's secret option, its value after a space (with "=" it is a
    # key=value); MySQL's "-p" with the password run into it.
    ("run tool --password s3cret --x 1", "run tool --password [REDACTED] --x 1"),
    ("deploy --api-key s3cret --token 's3cr et' --client-secret \"s3cr\"",
     "deploy --api-key [REDACTED] --token [REDACTED] --client-secret [REDACTED]"),
    ("mysql -u root -ps3cret app", "mysql -u root -p[REDACTED] app"),
    ("/usr/bin/mysqldump -h db -ps3cret --all", "/usr/bin/mysqldump -h db -p[REDACTED] --all"),
    ("mariadb -ps3cret", "mariadb -p[REDACTED]"),
    # Chat webhooks: the path is the secret.
    ("post https://hooks.slack.com/services/T0S3CR/B0S3CR/s3cretXXXXXXXXXXXXXXXX ok",
     "post https://hooks.slack.com/services/[REDACTED] ok"),
    ("hooks.slack.com/services/T0S3CR/B0S3CR/s3cretXXXXXXXX",
     "hooks.slack.com/services/[REDACTED]"),
    ("POST https://discord.com/api/webhooks/1234567890/s3cretABC_def-XYZ failed",
     "POST https://discord.com/api/webhooks/[REDACTED] failed"),
    ("url='https://acme.webhook.office.com/webhookb2/a-1@b-2/IncomingWebhook/s3cret/c-3'",
     "url='https://acme.webhook.office.com/webhookb2/[REDACTED]'"),
    # A token as a URL's whole user info (a git remote).
    ("git clone https://s3cret0123456789abcdef0123@github.com/o/r.git",
     "git clone https://[REDACTED]@github.com/o/r.git"),
    # An AWS secret access key after its key id, in an exception's message.
    ("InvalidSignature: AKIAIOSFODNN7EXAMPLE wJalrXUts3cretK7MDENG/bPxRfiCYEXAMPLEKEY",
     "InvalidSignature: [REDACTED] [REDACTED]"),
    ("creds ASIAY34FZKBOKMUTVV7A/s3cretXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLE12",
     "creds [REDACTED]/[REDACTED]"),
    # key=value with its separator URL-encoded: a query inside a logged URL's query,
    # JSON in a form field.
    ("GET /cb?next=%2Flogin%3Fuser%3Dbob%26password%3Ds3cret%26x%3D1 200",
     "GET /cb?next=%2Flogin%3Fuser%3Dbob%26password%3D[REDACTED]%26x%3D1 200"),
    ("password%3A%20s3cret", "password%3A%20[REDACTED]"),
    ("data=%7B%22api_key%22%3A%20%22s3cr%20et%22%7D",
     "data=%7B%22api_key%22%3A%20%22[REDACTED]%22%7D"),
    ("f=user%5Bpin%5D%3ds3cr%2Bet%20ok", "f=user%5Bpin%5D%3d[REDACTED]%20ok"),
    # Shapes of this round's list that key=value already caught (kept so).
    ("run tool --password=s3cret", "run tool --password=[REDACTED]"),
    ("PGPASSWORD=s3cret psql -h db", "PGPASSWORD=[REDACTED] psql -h db"),
    ("aws_secret_access_key = s3cretXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY",
     "aws_secret_access_key = [REDACTED]"),
    ("requests.get(url, auth=('admin', 's3cret'))", "requests.get(url, auth=[REDACTED])"),
    # Long values go whole (the patterns' bounds are past them).
    ("mysql -p" + "s3cr" * 300 + " db", "mysql -p[REDACTED] db"),
    ("BasicAuth('a', '" + "s3cr" * 300 + "')", "BasicAuth('a', '[REDACTED]')"),
    ("https://1" + "s3cr" * 300 + "@host/x", "https://[REDACTED]@host/x"),
    # A password passed by position to an HTTP auth class.
    ("using HTTPBasicAuth('admin', 's3cret')", "using HTTPBasicAuth('admin', '[REDACTED]')"),
    ('httpx.DigestAuth("admin", "s3cret")', 'httpx.DigestAuth("admin", "[REDACTED]")'),
    ("aiohttp.BasicAuth(user, 's3cret')", "aiohttp.BasicAuth(user, '[REDACTED]')"),
    # A YAML block under a secret key, logged as one message: a block scalar's lines
    # (only its "|" was replaced), a plain value on the next line, a nested mapping.
    ("password: |\n  s3cret\n  s3cr2\nuser: bob", "password: [REDACTED]\n  [REDACTED]\nuser: bob"),
    ("db:\n  password: >-\n    s3cret\n\n    s3cr2\n  user: bob",
     "db:\n  password: [REDACTED]\n    [REDACTED]\n  user: bob"),
    ("- api_token: |+\n    s3cret\n- user: bob",
     "- api_token: [REDACTED]\n    [REDACTED]\n- user: bob"),
    ("secret:\n  s3cret\nuser: bob", "secret:\n  [REDACTED]\nuser: bob"),
    ("cfg:\n- x: 1\n- password: |\n    s3cret\n- y: 2",
     "cfg:\n- x: 1\n- password: [REDACTED]\n    [REDACTED]\n- y: 2"),
    ("credentials:\n  user: admin\n  password: s3cret\nport: 5432",
     "credentials:\n  [REDACTED]\nport: 5432"),
    ('"password":\r\n  "s3cret"\r\n"user": "bob"', '"password":\r\n  [REDACTED]\r\n"user": "bob"'),
    # Command-line passwords cli_option's long names missed: "--pass", PuTTY's "-pw",
    # OpenSSL's "pass:", and "-P" after "-U user" (not a port, not a name=value).
    ("sshpass --pass s3cret ssh host", "sshpass --pass [REDACTED] ssh host"),
    ("plink -ssh -pw s3cret admin@host", "plink -ssh -pw [REDACTED] admin@host"),
    ("openssl rsa -in k.pem -passin pass:s3cret -passout 'pass:s3cr et'",
     "openssl rsa -in k.pem -passin pass:[REDACTED] -passout 'pass:[REDACTED]'"),
    ("sqlcmd -S db -U sa -P s3cret -Q 'select 1'",
     "sqlcmd -S db -U sa -P [REDACTED] -Q 'select 1'"),
    ("ipmitool -I lanplus -H bmc -U admin -P \"s3cr et\" power status",
     "ipmitool -I lanplus -H bmc -U admin -P [REDACTED] power status"),
    # MySQL's password quoted for the shell, run into its option.
    ("mysql -u root -p's3 cr\"et' db && mysqldump -p\"s3cr'et\" db",
     "mysql -u root -p[REDACTED] db && mysqldump -p[REDACTED] db"),
    ("sqlcmd -U CORP\\svc -P s3cret and bcp t out f -U sa -P 'pager'",
     "sqlcmd -U CORP\\svc -P [REDACTED] and bcp t out f -U sa -P [REDACTED]"),
    # An AWS secret access key before its key id, or after its name and a space.
    ("creds ('wJalrXUs3crMI/K7MDENG/bPxRfiCYEXAMPLEKEY', 'AKIAIOSFODNN7EXAMPLE')",
     "creds ('[REDACTED]', '[REDACTED]')"),
    ("wJalrXUs3crMI/K7MDENG/bPxRfiCYEXAMPLEKEY AKIAIOSFODNN7EXAMPLE",
     "[REDACTED] [REDACTED]"),
    ("aws configure set aws_secret_access_key wJalrXUs3crMI/K7MDENG/bPxRfiCYEXAMPLEKEY",
     "aws configure set aws_secret_access_key [REDACTED]"),
    ("setenv AWS_SECRET_ACCESS_KEY wJalrXUs3crMI/K7MDENG/bPxRfiCYEXAMPLEKEY",
     "setenv AWS_SECRET_ACCESS_KEY [REDACTED]"),
    # A key=value encoded twice (a logged URL's query inside a redirect's parameter).
    ("GET /sso?return=%2Fcb%3Fnext%3D%252Flogin%253Fpassword%253Ds3cret%2526x%253D1 302",
     "GET /sso?return=%2Fcb%3Fnext%3D%252Flogin%253Fpassword%253D[REDACTED]%2526x%253D1 302"),
    ("password%253Ds3cret", "password%253D[REDACTED]"),
    ("f=%253Fpw%253Ds3cret", "f=%253Fpw%253D[REDACTED]"),
    # Shapes of this round's list that key=value and cli_option already caught (kept so).
    ('session.auth = ("admin", "s3cret")', 'session.auth = [REDACTED]'),
    ("Client(basic_auth=('admin', 's3cret'), credentials=('a', 's3cr'))",
     "Client(basic_auth=[REDACTED], credentials=[REDACTED])"),
    ("cmd --passwd s3cret", "cmd --passwd [REDACTED]"),
    ("secret=wJalrXUs3crMI/K7MDENG/bPxRfiCYEXAMPLEKEY key_id=AKIAIOSFODNN7EXAMPLE",
     "secret=[REDACTED] key_id=[REDACTED]"),
    ("GET /x?token=s3cr5&y=1 and ?pw=s3", "GET /x?token=[REDACTED]&y=1 and ?pw=[REDACTED]"),
]  # fmt: skip

#: Lines that stay as they are: times, ratios, ordinary text near the new rules.
PLAIN = [
    "at 12:30 ok",
    "started 2024-01-02T10:30:45Z",
    "ratio 16:9 kept",
    "see https://example.com/a@b and https://example.com:8080/x",
    "mail admin@example.com about https://example.com/",
    "user=bob; more text",
    "Password policy: 8 characters; ok",
    "docker run -u 1000:1000 img; sudo -u www-data cmd; git push -u origin main",
    "uses: actions/checkout@v4 and actions/setup-python@0b93645",
    "pulled library/nginx@sha256:0d17b565c37bcbd895e9d92315a05c1c3c9a29f762b011a10c54a66cd53c9b31",
    "npm i @types/node@18.0.0 from /usr/lib/node_modules/x@y",
    "kinit HTTP/web.example.com@EXAMPLE.COM and nn/localhost@EXAMPLE.COM",
    "-----BEGIN CERTIFICATE-----\nMIIBcert\n-----END CERTIFICATE-----",
    "-----BEGIN PUBLIC KEY-----\nMIIBpub\n-----END PUBLIC KEY-----",
    "my_ghp_value gh_pages sk_live xoxb- task_live_x",
    # A branch an action is pinned to; a user:group that names the user twice.
    "uses: actions/checkout@main and org/deploy@master, Download 'a/b@develop'",
    "docker run -u app:app img; docker exec --user=www-data:www-data c",
    # Options whose names are no secret's; a "-p" that is no MySQL password.
    "initdb --auth-local peer --auth-host scram-sha-256 --no-password -x",
    # Options named in prose, and flags: their next word is no value.
    "gpg --try-all-secrets used; p11tool --list-tokens only; dbus-send --session x.y.z",
    "git log --show-signature HEAD; the --password is read; --api-key option, --token flag.",
    "mkdir -p /srv; ssh -p22 host; gcc -pthread; docker login --password-stdin -u bob",
    "mysql -u root -p app",
    # URLs with a user and no token; git's ssh remotes.
    "https://user@host/x git@github.com:org/repo.git ssh://git@github.com/o/r",
    "https://deploy-bot@ci.example.com/x",
    # A key id without its secret beside it; a git hash beside one.
    "AKIA key rotated; commit 3f2a9c1d0b7e6f5a4c3b2a1d0e9f8a7b6c5d4e3f",
    "HTTPBasicAuth(user, password) and BasicAuth()",
    "https://hooks.slack.com/services/ and /webhook/x",
    # URL-encoded separators after keys that name no secret, or short names bare.
    "q=%2Fa%3Fpage%3D2%26sort%3Dasc ts%3A10%3A30 pin%3A1234 KeyError%3Dx",
    # Branches a git ref names after "/name@" (the Oracle rule took "deploy" for a
    # password); URL-encoded twice, keys that name no secret.
    "pushed org/deploy@feature-x; merged o/r@fix/login, a/b@hotfix-2 and c/d@refs/heads/x",
    "q=%253Fpage%253D2%2526sort%253Dasc 100%25 done",
    # "-P" that is no password: a port, a flag, a regex, psql's "-P name=value".
    "scp -P 22 f host:; grep -P '\\d+' x; rsync -P a b; tar -U -P -xf t; mysqlsh -U r -P 3306",
    "psql -U app -P pager=off -c 'select 1'",
    # psql's print options named alone; wget's user agent ("-U") and folder ("-P").
    "psql -U app -P expanded -f q.sql; psql -h db -U app -P tuples_only -P pager -d shop",
    "wget -U Mozilla/5.0 -P /tmp/downloads http://example.com/f",
    "wget -U 'Mozilla/5.0 (X11)' -P dl/ https://example.com/f",
    # Options whose name holds a short one but is not it; YAML blocks under plain keys,
    # Words that only look like an API key's prefix.
    "task-runner disk-full hf_transformers_cache_directory npm_config_cache_dir",
    "pypi-packaging-tools-for-everyone-to-use sk-learn AIzawa SG.OK",
    "ask-proj-" + "a" * 30 + " xhf_" + "a" * 34 + " hf_" + "a" * 70,
    "loaded sk-learn pipeline for hf_hub_download, MSG. DFSG. _reduce_v1__ x",
    # short names bare, and a traceback's colon.
    "cmd --pass-through x --no-pass host --bypass y",
    # Code whose line holds a secret's name before a ":" and a block under it: a
    # YAML key starts its line.
    "if signature:\n    argspec = str(signature)\n  for token in tokens:\n    print(token)",
    'db:\n  host: x\npin:\n  1234\nTraceback (most recent call last):\n  File "a"',
]

#: Pieces that make texts where the trigger marks with a "-" or "_" stand at every
#: place (the text's start and end, beside others), for the C check to agree on.
MARK_PIECES = ["ghp_" + "a" * 36, "github_pat_" + "b" * 22, "xoxp-" + "1" * 10,
               "sk_test_" + "c" * 16, "rk_live_" + "d" * 16, "-----BEGIN PRIVATE KEY-----",
               "-", "_", "x", "g", "k", " ", "\n", "ok", "-u", "--user ", "a:b", "\u00a0",
               "=", "--token ", "-p", "mysql ", "%3D", "%3a", "Auth(", "'a', ", "/webhook",
               "hooks.slack.com/", "services/", "pw", "-U ", "-P ", "x", "%253D", "%253a",
               "%25", "_access_key ", "_ACCESS_KEY ",
               "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY",
               "sk-", "hf_", "glpat-", "npm_", "pypi-", "_v1_", "AIza", "SG.", "ask-", "s",
               "G", "a1"]  # fmt: skip


class TestShapes:
    @pytest.mark.parametrize(("text", "expected"), SHAPES)
    def test_redactor(self, text: str, expected: str) -> None:
        """The redactor alone, and the reference engine the same."""
        redactor = Redactor()
        reference = ReferencePatterns(list(CREDENTIAL_PATTERNS), redactor)

        assert expected == redactor.text(text)
        assert expected == reference.sub(MARKER, text)
        assert "s3cr" not in redactor.text(text)

    @pytest.mark.parametrize(("text", "expected"), SHAPES)
    def test_shipped(
        self,
        text: str,
        expected: str,
        wire: tuple[Client, RecordingTransport],  # noqa: F811
    ) -> None:
        """As the message, a %s argument and an extra= value, through the handler."""
        assert_ships_as(wire, "tests.redact_shapes", text, expected)

    @needs_speedups
    @pytest.mark.parametrize(("text", "expected"), SHAPES)
    def test_c_path_same_bytes(
        self,
        text: str,
        expected: str,
        pair: tuple[LogDNAHandler, LogDNAHandler],  # noqa: F811
    ) -> None:
        """The C handle's trigger check hands each to the redactor: the C path and
        the pure-Python one queue the same line (the C check took the ':' in
        "token01: x" for a time's and shipped the line as it was)."""
        fast, slow = through_both(pair, record(text, ()))

        assert slow == fast
        assert [expected] * 2 == [orjson.loads(entry[1:])["line"] for entry in fast]

    @needs_speedups
    @pytest.mark.parametrize(("name", "example"), CREDENTIAL_EXAMPLES.items())
    def test_c_path_redacts_every_patterns_example(
        self,
        name: str,
        example: str,
        pair: tuple[LogDNAHandler, LogDNAHandler],  # noqa: F811
    ) -> None:
        """Each default pattern's example, in a message and as an extra= value under a
        key known plain, is redacted on the C path as on the Python one: a pattern
        whose mark the C trigger check lacks ships there unredacted."""
        changed = Redactor().text(example)
        assert changed != example, name

        fast, slow = through_both(pair, record(example, ()))
        assert slow == fast
        assert [changed] * 2 == [orjson.loads(entry[1:])["line"] for entry in fast]

        fast_meta, slow_meta = with_extras_through_both(pair, {"note": example}, 3)
        assert slow_meta == fast_meta
        assert not [line for line in fast_meta if example.encode() in line], name

    @needs_speedups
    @pytest.mark.parametrize("kind", _AWS_KEY_KINDS.split("|"))
    def test_c_path_knows_every_aws_key_kind(
        self,
        kind: str,
        pair: tuple[LogDNAHandler, LogDNAHandler],  # noqa: F811
    ) -> None:
        """An access key id of each principal kind the aws_key pattern knows is redacted
        on the C path too (its check has its own list of the prefixes)."""
        text = f"key A{kind}IOSFODNN7EXAMPLE used"
        fast, slow = through_both(pair, record(text, ()))
        assert slow == fast
        assert ["key [REDACTED] used"] * 2 == [orjson.loads(e[1:])["line"] for e in fast]

    @needs_speedups
    def test_c_path_meta_values(
        self,
        pair: tuple[LogDNAHandler, LogDNAHandler],  # noqa: F811
    ) -> None:
        """Each shape as an extra= value: the C handle writes no meta string the
        redactor would change (it wrote them as they were, with keys it knew plain)."""
        extra = {f"note{i}": text for i, (text, _) in enumerate(SHAPES)}

        fast, slow = with_extras_through_both(pair, extra, 3)

        assert slow == fast
        assert not [line for line in fast if b"s3cr" in line]

    @needs_speedups
    @settings(max_examples=200, deadline=None,
              suppress_health_check=[HealthCheck.function_scoped_fixture])  # fmt: skip
    @given(st.lists(st.sampled_from(MARK_PIECES), max_size=6))
    def test_c_path_finds_every_mark(
        self,
        pair: tuple[LogDNAHandler, LogDNAHandler],  # noqa: F811
        pieces: list[str],
    ) -> None:
        """The C trigger check sees each mark with a "-" or "_" wherever it stands."""
        fast, slow = through_both(pair, record("".join(pieces), ()))

        assert slow == fast

    @pytest.mark.parametrize("text", PLAIN)
    def test_plain_stays(self, text: str) -> None:
        assert text == Redactor().text(text)

    @pytest.mark.parametrize(
        "text",
        ["loaded sk-learn pipeline for hf_hub_download", "MSG. DFSG. USG.",
         "_reduce_v1__ opentelemetry.proto.logs_v1_x", "npm_config_cache AIzawa"],
    )  # fmt: skip
    def test_words_like_a_keys_prefix_need_no_patterns(self, text: str) -> None:
        """Without the 20 characters a key has after its prefix, no trigger: the
        patterns (several microseconds) do not run for "sk-learn" or "hf_hub_download"."""
        assert not has_trigger(text)

    @needs_speedups
    @pytest.mark.parametrize(
        "value",
        ["pushed\nglpat-s3cr" + "x" * 16, "id\thf_s3cr" + "A" * 30,
         "x\u0001npm_s3cr" + "a" * 32, "\rsk-ant-api03-s3cr" + "b" * 20],
    )  # fmt: skip
    def test_a_key_after_a_control_character_in_meta(
        self,
        value: str,
        pair: tuple[LogDNAHandler, LogDNAHandler],  # noqa: F811
    ) -> None:
        """A key after a line break or a tab in an extra= value: meta's JSON writes the
        character as an escape ("\\n"), a letter before the key's prefix; the check of
        that JSON took the prefix for a word's middle, and once the keys were known every
        such line shipped the key in clear (H181)."""
        value = value.encode().decode("unicode_escape")
        for _ in range(3):  # (the first time, the keys are new: the walk runs anyway)
            fast, slow = with_extras_through_both(pair, {"output": value}, 3)
            assert slow == fast
            for entry in fast:
                assert "s3cr" not in entry.decode(), entry


#: docs/security.md, "What stays your responsibility": shapes it says ship as they are
#: (its spelling, then the same shape as logged here), and the near ones it says are
#: redacted. When the redactor learns one, the page must say so: this fails first.
DOCUMENTED_AS_SHIPPED = [
    ("`('admin', 'pw')`", "auth ('admin', 's3cret')"),
    ("`-P pw` alone", "cmd -P s3cret"),
    ("`-storepass pw`", "keytool -storepass s3cret"),
    ("`--key pw`", "run --key s3cret"),
    ("`--tok pw`", "run --tok s3cret"),
    ("no key id anywhere in the same line", "secret wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"),
    ("`password%25253Dpw`", "q password%25253Ds3cret"),
]
DOCUMENTED_AS_REDACTED = [
    ("`--pass pw`", "run --pass s3cret"),
    ("`--pw pw`", "run --pw s3cret"),
    ("once and twice are\n  redacted", "q password%253Ds3cret"),
    ("once and twice are\n  redacted", "q password%3Ds3cret"),
    ("A YAML block value on the lines after its key is redacted",
     "config:\n  password:\n    s3cret\n"),
]  # fmt: skip


class TestDocumentedLimits:
    @pytest.mark.parametrize(("said", "text"), DOCUMENTED_AS_SHIPPED)
    def test_what_the_page_says_ships_as_it_is(self, said: str, text: str) -> None:
        page = (Path(__file__).parent.parent / "docs" / "security.md").read_text()
        assert said in page
        assert text == Redactor().text(text)

    @pytest.mark.parametrize(("said", "text"), DOCUMENTED_AS_REDACTED)
    def test_what_the_page_says_is_redacted(self, said: str, text: str) -> None:
        page = (Path(__file__).parent.parent / "docs" / "security.md").read_text()
        assert said in page
        assert "s3cr" not in Redactor().text(text)
