"""Redaction: secrets and PHI under meta keys, credentials (and opt-in PHI) in text.

Runs in the application thread before a line is serialized, so nothing
unredacted ever sits in the buffer. It looks inside everything the serializer
would expand (dicts and other mappings, lists, tuples, sets, dataclass
instances, enum members' values), cuts cycles and meta deeper than
``MAX_DEPTH``, and never raises.
It only walks meta when a line has meta, and answers "is this key a secret?"
from a small cache, because the same few keys come back on every line. Text
patterns run only on text that holds one of their marks (``TRIGGER``), on input
cut to the line cap, each in linear time; the C handle (_speedups.c) applies
the same test and the cache, and calls back here only when they say maybe.
"""

from __future__ import annotations

import datetime
import re
import uuid
from collections.abc import Callable, Iterable, Mapping
from dataclasses import fields, is_dataclass
from enum import Enum
from typing import Any

import orjson

__all__ = [
    "CREDENTIAL_PATTERNS",
    "DEFAULT_SECRET_KEYS",
    "MARKER",
    "PHI_PRESETS",
    "PRESET_PATTERNS",
    "SECRET_LAST_WORDS",
    "SECRET_WHOLE_KEYS",
    "SECRET_WORDS",
    "Redactor",
    "bytes_text",
    "has_trigger",
    "key_words",
    "safe_str",
]

MARKER = "[REDACTED]"

#: Secret and PHI key names, matched anywhere in a key once it is lower-cased and
#: its separators ("-", "_", ".", spaces) removed: "X-Api-Key", "db_password",
#: "AWS_ACCESS_KEY_ID" and "sessionId" are all secrets.
DEFAULT_SECRET_KEYS: tuple[str, ...] = (
    # credentials
    "password", "passwd", "passphrase", "passcode", "secret", "token", "apikey",
    "accesskey", "privatekey", "signingkey", "licensekey", "authorization", "cookie",
    "session", "credential", "signature", "jwt", "databaseurl", "connectionstring",
    # session cookies and parameters that do not say "session": PHP's, Express's,
    # WordPress's logged-in and secure auth cookies, ASP.NET's forms and ASP.NET Core
    # Identity's auth cookies (IIS logs them bare: "cs(Cookie)" is
    # ".ASPXAUTH=...;+ASP.NET_SessionId=..."; JSESSIONID, ASP.NET_SessionId,
    # laravel_session and CFTOKEN are matched above)
    "phpsessid", "connectsid", "wordpressloggedin", "wordpresssec", "aspxauth",
    "aspnetcoreidentity",
    # payment cards
    "creditcard", "cardnumber", "cardnum", "ccnumber", "ccnum",
    # PHI / identity
    "socialsecurity", "dateofbirth", "birthdate",
)  # fmt: skip
#: Short names, matched only as a whole word of the key (words split at separators
#: and camelCase humps): "user_ssn" and "userSSN", not "classname"; "pin", not "spinner".
SECRET_WORDS: tuple[str, ...] = (
    "pass", "pw", "pwd", "auth", "bearer", "otp", "totp", "pin", "sig", "dsn",
    "ssn", "ccn", "cvv", "cvc", "pan", "dob", "mrn",
    # sessions: "sess_id", koa's and express's "koa.sess", Drupal's "SESS<hash>" and
    # "SSESS<hash>" cookies, ColdFusion's "CFID" (CFTOKEN's pair)
    "sess", "sessid", "ssess", "cfid",
)  # fmt: skip
#: Matched only as a key's last word: "key", "api_key", "licenseKey", "X-Api-Key";
#: not "KeyError" or "key_count".
SECRET_LAST_WORDS: tuple[str, ...] = ("key",)
#: Matched only as a key's one word: "sid", "SID", "_sid" (a session id: socket.io's
#: "?sid=", phpBB's); not "AccountSid" or "CallSid" (Twilio's resource ids),
#: "ORACLE_SID" or "sid_count".
SECRET_WHOLE_KEYS: tuple[str, ...] = ("sid",)

# The key=value pattern's parts. What comes before the value (see secret_kv): the
# separator, "=>" too (Ruby's, PHP's and Perl's hashes: {"password"=>"x"}); a
# quote may open a bytes repr or stand inside a call's repr ("b'x'",
# "bytearray(b'x')", "SecretStr('x')", "Token(\"x\")": the value is what is quoted).
_KV_BEFORE = (
    r"""[:=](?:(?<!\d\d:)|(?!\d))(?:(?<==)>)?"""
    r"""(?:[ \t]{1,3}(?![A-Za-z0-9_.-]{1,64}(?:\\{0,15}["'])?[:=]))?"""
    r"""(?:(?:[A-Za-z_][A-Za-z0-9_.]{0,63}\()?b?\\{0,15}["'])?"""
    r"""(?:(?i:bearer|basic|token|digest)[ \t]{1,3})?"""
)
# One character (or escape) of a quoted value, after a " and after a '.
_IN_QUOTES = {
    '"': r"""(?:[^"\\\r\n]|\\[^\r\n])""",
    "'": r"""(?:[^'\\\r\n]|\\[^\r\n])""",
}
# One character of an unquoted value: any but a space, a quote or a closing
# bracket; a ",", ";" or "&" too when more of the value follows it (not a space,
# a quote, a closing bracket, the end or another key's "=", a form field's
# "user[name]=" and "user%5Bname%5D=" among them). Passwords hold commas
# ("password=abc,def" is one value, replaced whole), while lists read as lists:
# "password=abc, user=bob", "a=1,pw=x;b=2", "?pw=x&user[name]=bob", and JSON's
# '{"pin":1234,"x":1}' keeps the comma after the number.
_PLAIN = r"""[^\s"'&,;)\]}]"""
_JOINER = r"""[&,;](?![\s"')\]}]|\Z|[A-Za-z0-9_.%\[\]-]{1,64}=)"""
# A space or tab, when at most 8 words (no "=" in them) and spaces lead from it to a
# ";": a connection string's value holds spaces ("Password=my pass;Database=x",
# "Password=a b; user=x"). Prose rarely ends a clause so; a value a space ends
# elsewhere ends there.
_SPACED_WORD = r"""[^\s"'&,;=)\]}]{1,64}"""
_SPACED = rf"""[ \t](?=[ \t]{{0,2}}{_SPACED_WORD}(?:[ \t]{{1,3}}{_SPACED_WORD}){{0,7}};)"""
# What may follow a value's first character: a joiner or such a space.
_INNER = rf"(?:{_JOINER}|{_SPACED})"
# A value's first character.
_BARE_START = rf"(?:{_PLAIN}|{_JOINER})"
_BARE_UNIT = rf"(?:{_PLAIN}|{_INNER})"
# A list value (JSON's, Python's: '"tokens": ["a", "b"]') goes whole, to its first
# "]" (one inside an item ends it early), when an item starts right after its "[":
# a quote (escaped, or a bytes repr's), a number or another list. Any other "[" is
# a bare value's character ("[REDACTED]" among them). A tuple likewise, to its first
# ")": requests' "auth=('user', 'pass')" in a kwargs repr.
_LIST_START = r"""\[(?=[ \t]{0,3}(?:b?\\{0,15}["']|[-\d\[]))"""
_LIST_UNIT = r"[^\]\r\n]"
_TUPLE_START = r"""\((?=[ \t]{0,3}(?:b?\\{0,15}["']|[-\d\[(]))"""
_TUPLE_UNIT = r"[^)\r\n]"

# A line up to its first ":", and what may follow that ":" when a YAML block starts
# under it: a block scalar's indicator, a comment, the line's end before an indented
# line (see yaml_block).
_BLOCK_HEAD = r"[^:\r\n]*:"
_BLOCK_TAIL = r"""[ \t]{0,3}(?:[|>][-+1-9]{0,2}[ \t]{0,3})?(?:#[^\r\n]{0,256})?(?=\r?\n[ \t])"""


def _key_value(quoted: str, bare: str) -> str:
    """The key=value pattern with ``quoted`` after each quoted value's unit (its
    repeat) and ``bare`` for an unquoted value."""
    return (
        rf"""{_KV_BEFORE}(?P<v>(?<="){_IN_QUOTES['"']}{quoted}"""
        rf"""|(?<='){_IN_QUOTES["'"]}{quoted}|{bare})"""
    )


#: What follows the "A" of an AWS access key id, by principal kind (AKIA long-term,
#: ASIA temporary, ...): the aws_key pattern, TRIGGER and has_trigger read them here;
#: _speedups.c's aws_prefixes keeps the same list (tests hold them equal).
_AWS_KEY_KINDS = "KIA|SIA|BIA|CCA|GPA|IDA|ROA|IPA|NPA|NVA|PKA"


def _starts(before: str, prefix: str) -> str:
    """A lookbehind at the end of ``prefix`` (a regex of fixed width): not after a
    character of class ``before`` (a word's), unless that is a backslash escape's,
    written out as %r and json.dumps write a line break, a control character or an
    accent before a token ("\\n", "\\x00", "\\012", "\\u00e9", "\\U0001f600")."""
    escapes = (r"[A-Za-z]", r"x[0-9A-Fa-f]{2}", r"[0-7]{3}", r"u[0-9A-Fa-f]{4}",
               r"U[0-9A-Fa-f]{8}")  # fmt: skip
    after = "".join(rf"|(?<=\\{escape}{prefix})" for escape in escapes)
    return rf"(?:(?<![{before}]{prefix}){after})"


#: Credential patterns for message text, on by default (with ``redact`` on). Each
#: starts with a literal or a character class (any lookbehind comes after it), so
#: the regex engine skips ahead to where a match can start, and has only bounded
#: repeats: each runs in time linear in the text. A group named ``v`` is what is
#: replaced (else the whole match): "password=" stays, its value goes.
CREDENTIAL_PATTERNS: dict[str, str] = {
    # "Authorization: Basic ...", "Proxy-Authorization=...", "Cookie: a=b; c=d":
    # the whole value, to the end of the line or a closing quote.
    "auth_header": r"""(?<![A-Za-z0-9_])(?i:authorization|cookie)"""
    r"""["']?[ \t]{0,3}[:=][ \t]{0,3}["']?(?P<v>[^\r\n"']{1,4096})""",
    # key=value and key: value, found from the separator (not a ":" between two
    # digits and a third: times, ratios; "password12=" and "token01: x" have keys):
    # the key before it is read back and judged by the rules for meta keys
    # (Redactor.is_secret). Space after the separator and then another key right
    # before its separator: this value is empty ("password= token=abc");
    # "password: hunter2 :" is a value. An auth scheme word stays; quoted values go
    # whole. A quote may be escaped (JSON inside a JSON string: {\"password\": \"x\"};
    # by up to 15 backslashes, JSON nested 5 deep), and an escaped quote does not end
    # a quoted value ("p\"w": all of it; in JSON inside JSON, what follows the value
    # in its object too: more than the value, never less). A bare value runs on past
    # a space to a ";" (_SPACED); a list or a tuple goes to its "]" or ")".
    # (An unquoted value is read as a run of plain characters first, the regex
    # engine's fast loop; only one with a joiner in it takes the slower units.)
    "secret_kv": _key_value(
        "{1,256}",
        rf"(?:{_LIST_START}{_LIST_UNIT}{{0,256}}\]?|{_TUPLE_START}{_TUPLE_UNIT}{{0,256}}\)?"
        rf"|{_PLAIN}{{1,256}}(?:{_INNER}{_BARE_UNIT}{{0,255}})?"
        rf"|{_JOINER}{_BARE_UNIT}{{0,255}})",
    ),
    # AWS access key ids (long-term, temporary and the other principal kinds).
    "aws_key": rf"A{_starts('A-Za-z0-9', 'A')}(?:{_AWS_KEY_KINDS})[A-Z0-9]{{16}}(?![A-Za-z0-9])",
    # scheme://user:password@host: the password goes, to the authority's last "@"
    # (one inside the password, unencoded, is the password's: urllib and the
    # database drivers take the host after the last).
    "url_credentials": r"://[^\s/?#@:]{0,128}:(?P<v>[^\s/?#]{1,256})(?=@)",
    # JSON Web Tokens: header.payload.signature, base64url.
    "jwt": rf"eyJ{_starts('A-Za-z0-9_-', 'eyJ')}[A-Za-z0-9_-]{{1,4093}}"
    r"\.[A-Za-z0-9_-]{4,8192}"
    r"\.[A-Za-z0-9_-]{0,4096}",
    # A PEM private key (PKCS#1, PKCS#8, OpenSSH, PGP's block) logged bare, with no
    # key before it: its body, to its END line (or the end of the text, when cut).
    "private_key": r"-----BEGIN[A-Z0-9 ]{0,40}PRIVATE KEY(?: BLOCK)?-----"
    r"(?P<v>(?:(?!-----END)[\s\S]){1,16384})",
    # Tokens that say what they are by their prefix, logged bare: GitHub's (ghp_,
    # gho_, ghu_, ghs_, ghr_, github_pat_) and Stripe's secret and restricted keys
    # (sk_live_, rk_test_ ...): what follows the prefix. (Found from the prefix's
    # last "_", a literal the engine skips ahead to: a class or an alternation
    # first made it try each "-" and "_" of a log, ten times slower.)
    "service_token": rf"_(?:(?<=gh[pousr]_){_starts('A-Za-z0-9_', 'gh[pousr]_')}"
    rf"|(?<=github_pat_){_starts('A-Za-z0-9_', 'github_pat_')}"
    rf"|(?<=[rs]k_live_){_starts('A-Za-z0-9_', '[rs]k_live_')}"
    rf"|(?<=[rs]k_test_){_starts('A-Za-z0-9_', '[rs]k_test_')})"
    r"(?P<v>[A-Za-z0-9_-]{10,255})",
    # API keys that say what they are by their prefix, logged bare (a config dump, an
    # exception's text): OpenAI's (sk-proj-, sk-svcacct-, sk-admin-, and the older
    # sk-<48> with "T3BlbkFJ" in it), Anthropic's (sk-ant-api03-), Hugging Face's (hf_),
    # GitLab's (glpat-), npm's (npm_), PyPI's (pypi-AgE...), DigitalOcean's (dop_v1_,
    # doo_v1_, dor_v1_), Google's (AIza) and SendGrid's (SG.<22>.<43>): what follows
    # the prefix, each kind's own shape, whole (not part of a longer word, but after a
    # backslash escape written out, "\\n" or "\\u00e9", as %r and json.dumps write
    # them; a "." may be inside one, as in GitLab's newer tokens, not end it).
    "provider_key": _starts("A-Za-z0-9_-", "")
    + r"(?:sk-(?:proj|svcacct|admin|ant-[a-z]{2,8}[0-9]{2})-"
    r"|sk-(?=[A-Za-z0-9]{20}T3BlbkFJ)|glpat-|pypi-(?=AgE)|hf_|npm_|do[opr]_v1_|AIza|SG\.)"
    r"(?P<v>(?<=-)(?=[A-Za-z0-9_.-]{20})[A-Za-z0-9_.-]{0,511}[A-Za-z0-9_-]|(?<=hf_)[A-Za-z0-9]{30,64}|(?<=npm_)[A-Za-z0-9]{36}"
    r"|(?<=_v1_)[a-f0-9]{64}|(?<=AIza)[A-Za-z0-9_-]{35}"
    r"|(?<=SG\.)[A-Za-z0-9_-]{22}\.[A-Za-z0-9_-]{43})(?![A-Za-z0-9_-])",
    # Oracle's user/password@database (sqlplus, exp/imp, JDBC thin's
    # "jdbc:oracle:thin:scott/tiger@host:1521:ORCL"): the password goes. Found from
    # the "/" (the user before it is read back: a name of 1 to 30 letters, digits,
    # "_", "$" or "#" that starts with a letter, not after a "/", ".", "@", "-", "%",
    # "+" or "\\": a path, a URL, a host name, an npm scope). Not where
    # what follows the "@" reads as a version, a digest or a Kerberos realm
    # ("actions/checkout@v4", "image@sha256:...", "HTTP/host@EXAMPLE.COM").
    "connect_credentials": r"/(?<=[A-Za-z0-9_$#]/)(?P<v>[^\s/@\"'()\[\]{},;]{1,128})@"
    r"(?![vV]?\d|sha\d|[0-9a-f]{7,64}(?![A-Za-z0-9])"
    r"|[A-Z0-9-]{1,64}\.[A-Z0-9.-]{1,190}(?![A-Za-z0-9.-])"
    # (nor a branch a GitHub Actions step or a package is pinned to: actions/checkout@main,
    # org/deploy@feature-x, o/r@fix/login: git-flow's and the forges' branch prefixes)
    r"|(?:main|master|develop|dev|trunk|HEAD|stable|latest|nightly|edge|canary)"
    r"(?![A-Za-z0-9_.-])|(?:releases?|feature|feat|fix|bugfix|hotfix|chore|topic|refs)[/-])"
    r"[A-Za-z(/]",
    # A command line's user:password (curl's, wget's "-u admin:pw", "-uadmin:pw",
    # "--user=admin:pw", "--proxy-user admin:pw"): the password goes. The user starts
    # with a letter ("docker run -u 1000:1000" is a uid and a gid), and the password
    # is not the user again ("docker run -u app:app" is a user and its group).
    "cli_credentials": r"""-(?<![^\s"'=]-)(?:-(?:proxy-)?user[ \t=]|u[ \t]?)["']?"""
    r"""(?P<u>[A-Za-z][^\s:"'/@]{0,127}):(?!(?P=u)(?![^\s"']))(?P<v>[^\s"']{1,256})""",
    # A command line's secret option and its value: "--password pw", "--api-key pw",
    # "--token 'pw'" (the option's name judged as a bare "name:" key is: it ends with
    # one of the longer names, Redactor._names_secret, or is a short one whole:
    # "--pass pw", sshpass's and others'; "--auth-local peer" stays;
    # "--password=pw" is a key=value). Not a value that starts with "-" (the next
    # option), nor after a name that ends in "s", "session" or "signature" (flags:
    # "--list-tokens", "--try-all-secrets", dbus's "--session", git's
    # "--show-signature"), nor a word of prose after an option named in text
    # ("--password is ...", "--passphrase with ...", "--password option").
    "cli_option": r"""--(?<![^\s"'(\[,]--)(?P<k>[A-Za-z][A-Za-z0-9_-]{0,62}[A-Za-z0-9])"""
    r"""(?:(?<![sS])|(?<=--pass)|(?<=--PASS))(?<!ession)(?<!ESSION)(?<!ignature)[ \t]{1,3}"""
    r"""(?!(?:is|are|was|were|be|to|for|and|or|in|on|at|with|when|if|the|a|an|which|that"""
    r"""|as|by|of|can|will|from|instead|also|not|no|must|may|should|does|do|has|have|had"""
    r"""|it|now|only|(?:option|flag|switch|argument|parameter|command)(?:e?s)?[.,;:)]?)"""
    r"""(?![^\s"']))"""
    r"""(?P<v>"[^"\r\n]{1,4096}"?|'[^'\r\n]{1,4096}'?|[^\s"'-][^\s"']{0,4095})""",
    # MySQL's and MariaDB's password run into its option: "mysql -u root -ppw"
    # ("-p pw" is a prompt and a database name), quoted for the shell too ("-p'p w'",
    # '-p"pw"': the quotes and what they hold). The command's name is read whole
    # (a lookahead and a backreference: what backtracking gave back, the search for
    # "-p" read again, 256 characters for each of 17 lengths), and the search stops
    # at the next "mysql" (which searches on from there itself): "-mysqlghp_-"
    # repeated cost 327 times a plain line, "mysql a:" 29 times.
    "mysql_password": r"""m(?<![A-Za-z0-9_]m)(?:ysql|ariadb)(?=(?P<n>[A-Za-z_-]{0,16}))(?P=n)"""
    r"""(?:(?!(?<![A-Za-z0-9_])m(?:ysql|ariadb))[^\r\n;|&]){0,256}?"""
    r"""-(?<=[\s"']-)p(?P<v>"[^"\r\n]{1,4096}"?|'[^'\r\n]{1,4096}'?|[^\s"'-][^\s"']{0,4095})""",
    # Chat webhooks whose path is the secret: Slack's
    # "hooks.slack.com/services/T.../B.../XXXX", Discord's ".../api/webhooks/ID/TOKEN",
    # Microsoft Teams' "....webhook.office.com/webhookb2/.../IncomingWebhook/...".
    "webhook_url": r"/(?:(?<=hooks\.slack\.com/)(?:services|workflows|triggers)/"
    r"|(?<=discord\.com/api/webhooks/)|(?<=discordapp\.com/api/webhooks/)"
    r"|(?<=webhook\.office\.com/webhookb2/)|(?<=outlook\.office\.com/webhook/))"
    r"(?P<v>[A-Za-z0-9_@./%+=-]{8,4096})",
    # A token as a URL's whole user info: "https://<token>@github.com/o/r.git" (git
    # remotes): 20 or more token characters, a digit among them; not "user@host",
    # "git@github.com:" or an email.
    "url_token": r"://(?=[A-Za-z0-9_.~%+-]{0,4095}\d)(?P<v>[A-Za-z0-9_.~%+-]{20,4096})(?=@)",
    # An AWS secret access key logged bare after its access key id in the same line
    # (an exception's message, "AKIA.../wJalr..."): 40 base64 characters, both cases
    # and a digit, "/" or "+" among them (a git hash is one case).
    "aws_secret": rf"A{_starts('A-Za-z0-9', 'A')}(?:KIA|SIA)[A-Z0-9]{{16}}(?![A-Za-z0-9])"
    r"(?:[^\r\n]{0,128}?[^A-Za-z0-9/+\r\n]|/)"
    r"(?P<v>(?=[A-Za-z0-9/+]{0,39}[a-z])(?=[A-Za-z0-9/+]{0,39}[A-Z])"
    r"(?=[A-Za-z0-9/+]{0,39}[0-9/+])[A-Za-z0-9/+]{40})(?![A-Za-z0-9/+=])",
    # A password passed by position to an HTTP auth class: requests'
    # HTTPBasicAuth('admin', 'pw'), HTTPDigestAuth, HTTPProxyAuth, aiohttp's and
    # httpx's BasicAuth, httpx's DigestAuth: what the second argument quotes.
    "auth_call": r"""\((?:(?<=BasicAuth\()|(?<=DigestAuth\()|(?<=ProxyAuth\())[ \t]{0,3}"""
    r"""(?:b?(?:"[^"\r\n]{0,256}"|'[^'\r\n]{0,256}')|[A-Za-z_][A-Za-z0-9_.]{0,64})"""
    r"""[ \t]{0,3},[ \t]{0,3}b?["'](?P<v>(?<=")[^"\r\n]{1,4096}|(?<=')[^'\r\n]{1,4096})""",
    # key=value with its separator URL-encoded ("password%3Dpw", a query inside a
    # logged URL's query: "next=%2Flogin%3Fpassword%3Dpw%26x%3D1"; '%22password%22%3A
    # %22pw%22'), found from the "%3D" or "%3A": the key before it is read back and
    # judged as secret_kv judges its key (_encoded_values). A value runs to an encoded
    # space, quote, "&", ",", ";" or "#"; a quoted one (after "%22") to its "%22".
    # Encoded twice too ("password%253Dpw": a logged URL's query inside a redirect's
    # parameter, "%25" the "%" encoded): each escape may be "%25" and its two digits;
    # a value encoded once ends at a separator encoded twice (it is the inner query's).
    "encoded_kv": r"""%(?:25)?3(?:[Dd]|[Aa](?:%(?:25)?20|\+){0,3})(?:%(?:25)?22)?"""
    r"""(?P<v>(?:(?<=%22)|(?<=%2522))(?:(?!%(?:25)?22)[^\s"'<>&]){1,4096}"""
    r"""|(?<!%22)(?:[^\s%&"'<>;,#]"""
    r"""|%(?!(?:25)?(?:2[0236-7Cc]|3[Bb]|0[AaDd])|253[DdAa])[0-9A-Fa-f]{2}){1,4096})""",
    # Slack's tokens (xoxb-, xoxp-, xoxa- ...): what follows the prefix.
    "slack_token": rf"xox{_starts('A-Za-z0-9_', 'xox')}[abposr]-(?P<v>[A-Za-z0-9-]{{10,255}})",
    # A command line's password option that cli_option's long names miss: PuTTY's
    # "plink -pw pw", OpenSSL's "-passin pass:pw" ("-passout", "-pass"), and "-P pw"
    # after a "-U user" (sqlcmd's, bcp's, ipmitool's "-U sa -P pw"). "-P" alone is
    # too many other things to judge ("scp -P 22", "grep -P 're'", "rsync -P a b");
    # after "-U" it is still not a port ("-P 3306") nor a "name=value" or a print
    # option's name alone (psql's "-U app -P pager=off", "-P expanded"), and a "-U"
    # whose value holds a "/" names no user (wget's "-U Mozilla/5.0 -P downloads/":
    # a user agent and a folder).
    # (A quote before "pass:" is the value's: "-passout 'pass:p w'". At most 4 words
    # between the user and "-P": each "-U" reads a few words on, not 256 characters.)
    "cli_password": r"""-(?<![^\s"'=]-)(?:pw[ \t]{1,3}|pass(?:in|out)?[ \t]{1,3}(?P<q>["'])?pass:"""
    r"""|U[ \t]{1,3}["']?[^\s"'/-][^\s"'/]{0,127}["']?(?:[ \t]{1,3}[^\s;|&]{1,64}){0,4}?"""
    r"""[ \t]{1,3}-P[ \t]{1,3}"""
    r"""(?!\d{1,5}(?![^\s"'])|[A-Za-z_]{1,32}=[^\s"']"""
    r"""|(?:border|columns|csv_fieldsep|expanded|fieldsep(?:_zero)?|footer|format|linestyle"""
    r"""|null|numericlocale|pager(?:_min_lines)?|recordsep(?:_zero)?|tableattr|title"""
    r"""|tuples_only|unicode_(?:border|column|header)_linestyle|xheader_width)(?![^\s"'])))"""
    r"""(?P<v>(?(q)[^"'\r\n]{1,4096}"""
    r"""|(?:"[^"\r\n]{1,4096}"?|'[^'\r\n]{1,4096}'?|[^\s"'-][^\s"']{0,4095})))""",
    # An AWS secret access key after its name and a space, not "=": "aws configure set
    # aws_secret_access_key wJalr...", csh's "setenv AWS_SECRET_ACCESS_KEY wJalr...".
    "aws_secret_option": r"_(?:key(?<=secret_access_key)|KEY(?<=SECRET_ACCESS_KEY))"
    r"""[ \t]{1,3}["']?(?P<v>[A-Za-z0-9/+]{40})(?![A-Za-z0-9/+=])""",
    # An AWS secret access key logged before its access key id in the same line
    # ("wJalr... AKIA..."): found from the key id, as aws_secret is, and read back
    # (_AWS_SECRET_BEFORE_REVERSED): the same 40 characters, at most 128 before it.
    "aws_secret_before": r"A(?<![A-Za-z0-9]A)(?:KIA|SIA)[A-Z0-9]{16}(?![A-Za-z0-9])",
    # A secret key's YAML block, logged as one message: a block scalar ("password: |"
    # or ">-" and the lines under it), a plain value on the next lines ("secret:\n
    # s3cret") or a nested mapping ("credentials:\n  user: a\n  token: b", replaced
    # whole, as under such a key in meta). Found from a line whose first ":" ends it
    # before an indented line; the key before it is read back and judged as
    # secret_kv's, and the block is the lines indented deeper than the key
    # (_block_span). (Only a line's first ":" can follow a key that starts the line;
    # tried at every ":", a comment was read to the line's end from each: a line of
    # ":#" took 146 times a plain one. _BLOCK_AFTER_BREAK: the form the engine runs.)
    "yaml_block": rf"(?m:^){_BLOCK_HEAD}{_BLOCK_TAIL}",
}

#: Ready-made text patterns for PHI, off by default: name them in
#: ``redact_patterns=`` ("phi" names them all).
PHI_PRESETS: dict[str, str] = {
    # 13-19 digits, continuous or in groups of 4 (Amex 4-6-5); only those with a card
    # network's prefix and a valid Luhn check digit are replaced.
    "card": r"\d(?<![\d.,-]\d)(?:\d{12,18}|\d{3}(?P<s>[ .-])\d{4}(?P=s)\d{4}(?P=s)\d{1,7}"
    r"|\d{3}(?P<t>[ .-])\d{6}(?P=t)\d{4,5})(?!\d)",
    # 123-45-6789, 123 45 6789, 123.45.6789 (never-issued numbers excluded), and
    # nine digits right after "SSN" or "social security number".
    "us_ssn": r"\d(?<![\d.-]\d)\d\d(?P<s>[- .])\d\d(?P=s)\d{4}(?![\d-])",
    "us_ssn_labelled": r"(?<![A-Za-z])(?i:ssn|social[ _-]?security(?:[ _-]?(?:number|no))?)"
    r"[^A-Za-z0-9\r\n]{0,3}(?P<v>\d{9})(?!\d)",
    # From the "@": the local part before it is read back (at most 64 characters).
    "email": r"@(?:[A-Za-z0-9-]{1,63}\.){1,8}[A-Za-z]{2,24}(?![A-Za-z0-9-])",
    # North American numbers written with separators ("(555) 123-4567",
    # "555.123.4567") and international ones written with "+": bare digit runs
    # (ids, timestamps) are left alone.
    "phone": r"\((?<![\w+.-]\()\d{3}\)[ ]?\d{3}[ .-]\d{4}(?![\w-])",
    "phone_plain": r"\d(?<![\w+.-]\d)\d\d[ .-]\d{3}[ .-]\d{4}(?![\w-])",
    "phone_plus": r"\+(?<![\w+]\+)\d{1,3}[ .-]?(?:\d[ .-]?){6,12}\d(?!\d)",
}

#: Every pattern that can be named in ``redact_patterns=``.
PRESET_PATTERNS: dict[str, str] = {
    **PHI_PRESETS,
    "bearer": r"(?<![A-Za-z0-9])(?i:bearer)[ \t]{1,3}[A-Za-z0-9\-._~+/]{1,4096}=*",
    **CREDENTIAL_PATTERNS,
}
#: Names that stand for several presets.
PRESET_GROUPS: dict[str, tuple[str, ...]] = {
    "phi": ("card", "us_ssn", "email", "phone"),
    "credentials": tuple(CREDENTIAL_PATTERNS),
    "us_ssn": ("us_ssn", "us_ssn_labelled"),
    "phone": ("phone", "phone_plain", "phone_plus"),
}

# Every default credential pattern needs one of these in the text: ":" or "=" (headers,
# key=value), "@" (URLs), "eyJ" (JWTs), an AWS key id's prefix, a PEM key's
# "-----BEGIN", a GitHub, Stripe or Slack token's prefix, a long option ("--password
# pw"), "-p" (MySQL's, "-pw", "-passin") or "-U" (before "-P pw"), an AWS secret
# key's name ("aws_secret_access_key wJalr..."), a chat webhook's path, a URL-encoded
# separator ("%3D", "%3A", or encoded twice: "%253D"), an HTTP auth class's "Auth(",
# an API key's prefix and its next 20 characters (provider_key's: _key_at). Text without
# any skips the patterns; _speedups.c has the same test (needs_redaction), kept equal by
# tests.
# Where an API key may start: not after a letter or digit ("sk-" in "task-runner"),
# unless that is a JSON escape's ("\nhf_...", "\u0001hf_...": meta's JSON is tested).
# (A superset of _starts' escapes, for a cheap test: a backslash among the 10 characters
# before, the longest escape's, "\\U0001f600".)
_KEY_START = "(?:(?<![A-Za-z0-9])" + "".join(rf"|(?<=\\[\s\S]{{{n}}})" for n in range(10)) + ")"
TRIGGER = re.compile(
    rf"[:=@]|eyJ|A(?:{_AWS_KEY_KINDS})|Auth\("
    r"|-----BEGIN|gh[pousr]_|github_pat_|[rs]k_(?:live|test)_|xox[abposr]-|--[A-Za-z]|-p|-U"
    r"|_access_key|_ACCESS_KEY"
    r"|hooks\.slack\.com/|/webhook|%(?:25)?3[ADad]"
    rf"|{_KEY_START}(?:(?:sk-|glpat-|pypi-)[A-Za-z0-9_.-]{{20}}|(?:hf_|npm_)[A-Za-z0-9]{{20}})"
    r"|_v1_[A-Za-z0-9]{20}|(?:AIza|SG\.)[A-Za-z0-9_.-]{20}"
)
_AWS_PREFIX = re.compile(rf"A(?:{_AWS_KEY_KINDS})")
_STRIPE_MARK = re.compile(r"[rs]k_(?:live|test)_")
_SLACK_MARK = re.compile(r"xox[abposr]-")
_OPTION_MARK = re.compile(r"--[A-Za-z]")
_ENCODED_MARK = re.compile(r"%(?:25)?3[ADad]")
_ASCII_ALNUM = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789")
# The 20 characters after an API key's prefix, as provider_key needs them (_key_at).
_DASH_RUN = re.compile(r"[A-Za-z0-9_.-]{20}")
_ALNUM_RUN = re.compile(r"[A-Za-z0-9]{20}")


def has_trigger(text: str) -> bool:
    """``TRIGGER.search(text)``, answered by substring tests first: four times
    cheaper on a log message, where the alternation makes the regex try every
    position (this runs on the logging call's path)."""
    return (
        ":" in text
        or "=" in text
        or "@" in text
        or "eyJ" in text
        or (
            "A" in text
            and (
                _AWS_PREFIX.search(text) is not None
                or "Auth(" in text
                or ("AIza" in text and _key_at(text, "AIza", _DASH_RUN, word=False))
            )
        )
        or ("SG." in text and _key_at(text, "SG.", _DASH_RUN, word=False))
        or (("-" in text or "_" in text) and _dash_mark(text))
        or ("/" in text and ("/webhook" in text or "hooks.slack.com/" in text))
        or (("%3" in text or "%25" in text) and _ENCODED_MARK.search(text) is not None)
    )


def _dash_mark(text: str) -> bool:
    """Whether ``text`` (which holds a "-" or a "_") holds a PEM key's BEGIN, a
    GitHub, Stripe or Slack token's prefix, a long option, "-p", "-U", an AWS
    secret key's name or an API key's prefix: substring tests first (a regex call
    costs a few hundred ns on a log message)."""
    return (
        "-----BEGIN" in text
        or ("gh" in text and ("ghp_" in text or "gho_" in text or "ghu_" in text
                              or "ghs_" in text or "ghr_" in text))
        or "github_pat_" in text
        or (("k_live_" in text or "k_test_" in text) and _STRIPE_MARK.search(text) is not None)
        or ("xox" in text and _SLACK_MARK.search(text) is not None)
        or "-p" in text
        or "-U" in text
        or "_access_key" in text
        or "_ACCESS_KEY" in text
        or ("--" in text and _OPTION_MARK.search(text) is not None)
        # (An API key's prefix: a "-" or "_" in it rules out half of them at once.)
        or ("-" in text and (("sk-" in text and _key_at(text, "sk-", _DASH_RUN))
                             or ("glpat-" in text and _key_at(text, "glpat-", _DASH_RUN))
                             or ("pypi-" in text and _key_at(text, "pypi-", _DASH_RUN))))
        or ("_" in text and (("_v1_" in text and _key_at(text, "_v1_", _ALNUM_RUN, word=False))
                             or ("hf_" in text and _key_at(text, "hf_", _ALNUM_RUN))
                             or ("npm_" in text and _key_at(text, "npm_", _ALNUM_RUN))))
    )  # fmt: skip


def _key_at(text: str, prefix: str, run: re.Pattern[str], word: bool = True) -> bool:
    """Whether an API key's ``prefix`` stands in ``text`` with 20 characters of ``run``
    after it (provider_key's shape: "sk-learn", "hf_hub_download" are no keys), and
    with ``word`` where one may start (``_KEY_START``: "task-runner" holds none)."""
    at = text.find(prefix)
    while at >= 0:
        if (not word or _key_start(text, at)) and run.match(text, at + len(prefix)):
            return True
        at = text.find(prefix, at + 1)
    return False


def _key_start(text: str, at: int) -> bool:
    """``_KEY_START`` at ``text[at]``."""
    return at == 0 or text[at - 1] not in _ASCII_ALNUM or "\\" in text[max(0, at - 10) : at - 1]


def bytes_text(value: bytes | bytearray | memoryview) -> str:
    """The text bytes ship as, in meta or as a rendered event: UTF-8, with what is
    not UTF-8 shown as backslash escapes (never raising)."""
    return bytes(value).decode("utf-8", "backslashreplace")


def safe_str(value: object) -> str:
    """``str(value)``, or a marker when that raises: never raises itself. How the
    line builder ships an object it cannot encode, a mapping key among them."""
    try:
        text = str(value)
        if type(text) is str:
            return text
        return str.__str__(text)
    except Exception:
        try:
            return f"<unprintable {type(value).__name__}>"
        except Exception:
            return "<unprintable>"


_NOT_KEYS = ("Error", "Exception", "Warning")
# A digit doubled, its two digits summed (Luhn): 7 -> 14 -> 5.
_LUHN_DOUBLED = bytes.maketrans(b"0123456789", b"0246813579")
_CARD_SEPARATORS = str.maketrans("", "", " .-")


def _is_card(digits: str) -> bool:
    """Whether a 13-19 digit string has a card network's prefix and a valid Luhn digit."""
    if not 13 <= len(digits) <= 19:
        return False
    if digits.isascii():
        return _is_card_number(digits.encode())
    # Another script's digits ("٤١١١..."): as before the bytes form, digits other
    # than 0-9 in doubled places count undoubled.
    first, two = digits[0], int(digits[:2])
    if not (
        first in "46"
        or 51 <= two <= 55
        or 2221 <= int(digits[:4]) <= 2720
        or two in (30, 34, 35, 36, 37, 38, 39, 50)
    ):
        return False
    total = sum(map(int, digits[-1::-2])) + sum(map(int, digits[-2::-2].translate(_LUHN_STR)))
    return total % 10 == 0


_LUHN_STR = str.maketrans("0123456789", "0246813579")


def _is_card_number(number: bytes) -> bool:
    """``_is_card`` for 13-19 ASCII digits."""
    lead = number[0]
    if lead not in b"46":
        if lead not in b"235":
            return False
        two = int(number[:2])
        if not (51 <= two <= 55 or two in (30, 34, 35, 36, 37, 38, 39, 50)
                or 2221 <= int(number[:4]) <= 2720):  # fmt: skip
            return False
    # Each byte is 48 more than its digit.
    total = sum(number[-1::-2]) + sum(number[-2::-2].translate(_LUHN_DOUBLED))
    return (total - 48 * len(number)) % 10 == 0


def _is_ssn(text: str) -> bool:
    """Whether "AAA-GG-SSSS" (any one separator) is a number the SSA could have issued."""
    area, group, serial = text[:3], text[4:6], text[7:]
    return area not in ("000", "666") and area[0] != "9" and group != "00" and serial != "0000"


_CAMEL = re.compile(r"[A-Z]+(?=[A-Z][a-z])|[A-Z]?[a-z]+|[A-Z]+|\d+")


def key_words(key: str) -> list[str]:
    """A key's words, lower-cased: split at separators and camelCase humps.

    ``"userSSN"`` -> ``["user", "ssn"]``; ``"X-Api-Key"`` -> ``["x", "api", "key"]``.
    """
    return [w.lower() for w in _CAMEL.findall(key)]


# A key=value separator and what stands before it, on the reversed text: the
# separator (not a ":" between two digits and a third: times, ratios, "10:30",
# "16:9"; "token01: x" has a key), a little space, a closing bracket (plain or
# URL-encoded), an optional quote, the key (at most 64 characters; see _key_name).
# A form field's or PHP print_r's key is its last bracketed name: "user[password]=",
# "user%5Bpassword%5D=", "[password] =>"; a bracket is read only right before its
# separator or before "=>" ("cache[key] = x" is a line of code, in a traceback,
# not a key).
# One scan finds every candidate, in C; the key=value pattern then runs only at
# separators whose key names a secret. _speedups.c reads keys back the same way
# (key_known_plain).
_SPACE_BRACKET_REVERSED = r"(?:\]|D5%|(?<=>=)[ \t]{1,3}(?:\]|D5%)|[ \t]{0,3})"
_QUOTE_REVERSED = r"""(?:["']\\{0,15})?"""
_KEY_REVERSED = r"[A-Za-z0-9_.-]{1,64}"
_COLON_REVERSED = r":(?:(?!\d\d)|(?<!\d:))"
_SEPARATOR_KEY_REVERSED = re.compile(
    rf"(?:=|{_COLON_REVERSED}){_SPACE_BRACKET_REVERSED}({_QUOTE_REVERSED})({_KEY_REVERSED})"
)
_LOCAL_PART_REVERSED = re.compile(r"[A-Za-z0-9._%+-]{1,64}")


def _key_name(read: str) -> str:
    """The key read back before a separator, as it is judged: one that starts with
    "5B" (after a URL-encoded "[": "user%5Bpin%5D=") without it, unless it is 64
    characters long (the last 64 of a longer run). (Not in the regex: a lookahead
    for "%5B" at each character doubled the time of reading keys back.)"""
    return read[2:] if read[:2] == "5B" and 2 < len(read) < 64 else read


# card, us_ssn and phone_plain all start with a digit: whichever of them are on run
# as one regex (one scan over the digits instead of one each), branches named after
# them. Same rules as their PHI_PRESETS forms. This form is for short text and
# text with letters or digits outside ASCII (digits such as "٣" count too); other
# text takes _ZERO_BRANCHES.
_DIGIT_BRANCHES: dict[str, str] = {
    "card": r"(?<!,\d)(?P<card>(?:\d{12,18}|\d{3}(?P<s>[ .-])\d{4}(?P=s)\d{4}(?P=s)\d{1,7}"
    r"|\d{3}(?P<t>[ .-])\d{6}(?P=t)\d{4,5})(?!\d))",
    "us_ssn": r"(?P<us_ssn>\d\d(?P<u>[- .])\d\d(?P=u)\d{4}(?![\d-]))",
    "phone_plain": r"(?<![\w+]\d)(?P<phone_plain>\d\d[ .-]\d{3}[ .-]\d{4}(?![\w-]))",
}
# The same branches for the text with every digit written "0" (_ZEROS), after the
# three digits each of them starts with: the regex then starts with the literal
# "000", which the engine finds without trying each digit in turn ("4 4 4 ..."
# has none). Every class here answers for a "0" as the original does for any
# digit, and all else in the text is unchanged: the matches are the same.
_ZERO_BRANCHES: dict[str, str] = {
    "card": r"(?<!,000)(?P<card>0{10,16}(?!0)|0(?P<s>[ .-])0000(?P=s)0000(?P=s)0{1,7}(?!0)"
    r"|0(?P<t>[ .-])000000(?P=t)0{4,5}(?!0))",
    "us_ssn": r"(?P<us_ssn>(?P<u>[- .])00(?P=u)0000(?![0-]))",
    "phone_plain": r"(?<![\w+]000)(?P<phone_plain>[ .-]000[ .-]0000(?![\w-]))",
}
_ZEROS = bytes.maketrans(b"0123456789", b"0000000000")
_LONG_RUN = b"0" * 20
_ZERO_RUN = re.compile(rb"0*")
# Text shorter than this takes the \d form: few digits to try, less to set up.
_ZEROS_FROM = 64
# A letter or digit outside ASCII.
_NON_ASCII_WORD = re.compile(r"[^\W\x00-\x7f]")

# Patterns that start with a case-insensitive word (which the regex engine cannot
# skip ahead to): they run on the lower-cased text (same indexes) in these forms,
# one regex per word, each starting with its word as a literal (the engine skips
# ahead to it; the lookbehind comes after it). Each class answers for a lower-case
# letter as the original does for either case, and a word's matches are the
# original's at that word. Text whose lower-cased form is not like that
# (_lowered) takes the original, on the text.
_LOWER_FORMS: dict[str, dict[str, str]] = {
    "auth_header": {
        word: rf"""{word}(?<![a-z0-9_]{word})["']?[ \t]{{0,3}}[:=][ \t]{{0,3}}["']?"""
        r"""(?P<v>[^\r\n"']{1,4096})"""
        for word in ("authorization", "cookie")
    },
    "bearer": {"bearer": r"bearer(?<![a-z0-9]bearer)[ \t]{1,3}[a-z0-9\-._~+/]{1,4096}=*"},
    "us_ssn_labelled": {
        "ssn": r"ssn(?<![a-z]ssn)[^a-z0-9\r\n]{0,3}(?P<v>\d{9})(?!\d)",
        "social": r"social(?<![a-z]social)[ _-]?security(?:[ _-]?(?:number|no))?"
        r"[^a-z0-9\r\n]{0,3}(?P<v>\d{9})(?!\d)",
    },
}

Span = tuple[int, int]

# What a rule is, for _Patterns.sub: how its matches become spans.
(_WHOLE, _VALUE, _WORDS_FIRST, _KEY_VALUE, _EMAIL, _DIGITS, _USER_AT, _OPTION, _ENCODED,
 _SECRET_BEFORE, _BLOCK) = range(11)  # fmt: skip
# (kind, literals one of which every match holds, regex, its other forms, _RUN_ON's)
_Rule = tuple[int, tuple[str, ...], re.Pattern[str], Any, "tuple[int, re.Pattern[str]] | None"]

# A value's repeat is bounded (it keeps each pattern linear where it is tried at
# many places), so a longer secret would be replaced only in its first part and
# its tail shipped: a span at least this long (value, or whole match) is run on to
# the end of its value's class (_run_on). None: the class the quote before the
# value says (secret_kv's three kinds of value): so a key=value value always
# ends where its class's run does, and _values reads it so itself.
_RUN_ON: dict[str, tuple[int, re.Pattern[str] | None]] = {
    "secret_kv": (256, None),
    "auth_header": (4096, re.compile(r"""[^\r\n"']+""")),
    "bearer": (4096, re.compile(r"[A-Za-z0-9\-._~+/]+=*")),
}
_RUN_ON_CLASSES: dict[str, tuple[int, re.Pattern[str]]] = {
    name: (bound, run) for name, (bound, run) in _RUN_ON.items() if run is not None
}
_RUN_ON_FROM = min(bound for bound, _ in _RUN_ON_CLASSES.values())
# secret_kv with each kind of value cut to its first character (or escape): it
# finds where the value starts, as the whole pattern does (the parts before the
# value are chosen the same: the value need only match once); _values reads the
# value on from there.
_KEY_VALUE_HEAD = _key_value("", _BARE_START)
_VALUE_BOUND = _RUN_ON["secret_kv"][0]
# A separator at most this far before the furthest value's end found takes the
# whole pattern (which reads at most that much of a value found again): a value
# that ends right after its key's separator ("'password='") needs no second regex.
_NEAR = 16
# A value's whole run, of each class (written so that plain characters take the
# regex engine's fast loop).
_QUOTED_RUN = {quote: re.compile(f"{unit}+") for quote, unit in _IN_QUOTES.items()}
_BARE_RUN = re.compile(rf"{_BARE_START}{_PLAIN}*(?:{_INNER}{_PLAIN}*)*")
# A list value's run, from its "[" or from where its bound cut it.
_LIST_HEAD = re.compile(_LIST_START)
_TUPLE_HEAD = re.compile(_TUPLE_START)
# A list's or tuple's run, by its opening bracket; and the bracket that closes it.
_CLOSED_RUNS = {"[": re.compile(rf"{_LIST_UNIT}*\]?"), "(": re.compile(rf"{_TUPLE_UNIT}*\)?")}
_CLOSERS = {"[": "]", "(": ")"}


class _Patterns:
    """Text patterns as rules: a cheap gate, a regex, and what of a match to replace.

    Each rule's regex runs on its own (``finditer``); the spans they find are
    merged (overlaps joined) and each replaced by one marker. Running them apart
    keeps each regex simple (a literal or class first: the engine skips ahead),
    lets one pattern's near-miss never hide another's match, and lets a user's
    pattern carry global flags or back-references. The built-in ones run in
    forms that let the engine skip ahead further (_ZERO_BRANCHES, _LOWER_FORMS)
    and keep the Python work per match small; tests/_redact_reference.py is the
    plain form they are checked against.
    """

    __slots__ = ("_counts_tokens", "_finders", "_is_secret", "_names_secret", "_quoted_only",
                 "_rules", "_seen")  # fmt: skip

    def __init__(
        self,
        patterns: list[str],
        is_secret: Callable[[str], bool],
        names_secret: Callable[[str], bool],
        counts_tokens: Callable[[str], bool],
    ) -> None:
        self._is_secret = is_secret
        self._names_secret = names_secret
        self._counts_tokens = counts_tokens
        # Key -> whether it counts only as "key=" or quoted, not as a bare "key:".
        self._quoted_only: dict[str, bool] = {}
        self._finders: dict[tuple[str, bool], re.Pattern[str]] = {}
        # Secret keys without a finder yet -> in how many long texts they were.
        self._seen: dict[tuple[str, bool], int] = {}
        rules: list[_Rule] = []
        digit_rules = [name for name in _DIGIT_BRANCHES if name in patterns]
        if digit_rules:
            patterns = [p for p in patterns if p not in digit_rules]
            zeros = "|".join(_ZERO_BRANCHES[name] for name in digit_rules)
            digits = "|".join(_DIGIT_BRANCHES[name] for name in digit_rules)
            regex = re.compile(rf"\d(?<![\d.-]\d)(?:{digits})")
            zeroed = re.compile(rf"000(?<![0.-]000)(?:{zeros})".encode())
            rules.append((_DIGITS, (), regex, zeroed, None))
        for name in patterns:
            regex = re.compile(PRESET_PATTERNS.get(name, name))
            if name == "secret_kv":
                kind: int = _KEY_VALUE
            elif name == "email":
                kind = _EMAIL
            elif name == "connect_credentials":
                kind = _USER_AT
            elif name == "cli_option":
                kind = _OPTION
            elif name == "encoded_kv":
                kind = _ENCODED
            elif name == "aws_secret_before":
                kind = _SECRET_BEFORE
            elif name == "yaml_block":
                kind = _BLOCK
                regex = _BLOCK_AFTER_BREAK
            elif name in _LOWER_FORMS:
                kind = _WORDS_FIRST
            else:
                kind = _VALUE if "v" in regex.groupindex else _WHOLE
            extra: Any = tuple(
                (word, form, "v" in form.groupindex)
                for word, form in (
                    (word, re.compile(form)) for word, form in _LOWER_FORMS.get(name, {}).items()
                )
            )
            if kind == _KEY_VALUE:
                extra = re.compile(_KEY_VALUE_HEAD)
            rules.append((kind, _NEEDS.get(name, ()), regex, extra, _RUN_ON_CLASSES.get(name)))
        self._rules = tuple(rules)

    def sub(self, replacement: str, text: str, keep: int | None = None) -> str:
        spans: list[Span] = []
        low: str | None = None
        backwards: str | None = None
        # (Loops, not any() over a generator: this runs for short messages on the
        # logging call's path, where a generator costs more than the test.)
        # (Only text as long as the shortest bound can hold a span that reaches one.)
        longs: list[tuple[int, int, re.Pattern[str]]] | None = (
            [] if len(text) >= _RUN_ON_FROM else None
        )
        first = 0
        for kind, needs, regex, extra, run_on in self._rules:
            for literal in needs:
                if literal in text:
                    break
            else:
                if needs:
                    continue
            # (Most frequent first: on short text most rules stop at their gate.)
            if kind == _WORDS_FIRST:
                if longs is not None:
                    first = len(spans)
                if low is None:
                    low = _lowered(text)
                if not low:
                    for m in regex.finditer(text):
                        span = m.span("v") if "v" in regex.groupindex else (-1, -1)
                        spans.append(span if span[0] >= 0 else m.span())
                else:
                    for word, form, value in extra:
                        if word in low:
                            if value:  # (always there when the form matches)
                                spans += [m.span("v") for m in form.finditer(low)]
                            else:
                                spans += [m.span() for m in form.finditer(low)]
                if longs is not None and run_on is not None and len(spans) > first:
                    _long_values(text, spans, first, run_on, longs)
            elif kind == _DIGITS:
                _digits(text, extra, regex, spans)
            elif kind == _KEY_VALUE:
                if backwards is None:
                    backwards = text[::-1]
                if len(text) < _FORWARD_FROM:
                    self._at_separators(text, backwards, regex, extra, spans, None)
                else:
                    self._key_values(text, backwards, regex, extra, spans)
            elif kind == _WHOLE:
                spans += [m.span() for m in regex.finditer(text)]
            elif kind == _VALUE:
                for m in regex.finditer(text):
                    span = m.span("v")
                    spans.append(span if span[0] >= 0 else m.span())
            elif kind == _EMAIL:
                if backwards is None:
                    backwards = text[::-1]
                _emails(text, backwards, regex, spans)
            elif kind == _OPTION:
                # (The option's name judged as a bare "name:" key is: "--api-key",
                # "--db-password"; not "--auth-local", "--pin-version".)
                names_secret = self._names_secret
                spans += [
                    m.span("v")
                    for m in regex.finditer(text)
                    if _option_names_secret(m["k"], names_secret)
                ]
            elif kind == _ENCODED:
                if backwards is None:
                    backwards = text[::-1]
                self._encoded_values(text, backwards, regex, spans)
            elif kind == _SECRET_BEFORE:
                if backwards is None:
                    backwards = text[::-1]
                _secrets_before(text, backwards, regex, spans)
            elif kind == _BLOCK:
                if backwards is None:
                    backwards = text[::-1]
                self._blocks(text, backwards, regex, spans)
            else:  # _USER_AT
                if backwards is None:
                    backwards = text[::-1]
                _connect_passwords(text, backwards, regex, spans)
        if not spans:
            return text if keep is None else text[:keep]
        if longs:
            _run_on(text, spans, longs)
        if keep is not None:
            # Only the first ``keep`` characters ship (a match starting before there
            # replaced whole): the rest was read only for what the cut splits, and
            # must not move up into view when a marker is shorter than what it
            # replaced (the window's own end may split a secret).
            spans = [span for span in spans if span[0] < keep]
        spans.sort()
        # The text between markers, overlapping or touching spans joined: one
        # marker for both.
        pieces: list[str] = []
        end = -1
        for s, e in spans:
            if s <= end:
                if e > end:  # noqa: PLR1730 (faster than max() here)
                    end = e
            elif s < e:  # (an empty match replaces nothing)
                pieces.append(text[end:s] if end > 0 else text[:s])
                end = e
        if not pieces:
            return text if keep is None else text[:keep]
        pieces.append(text[end:] if keep is None else text[end:keep])
        return replacement.join(pieces)

    def _number_counted(self, name: str, text: str, at: int, regex: re.Pattern[str]) -> bool:
        """Whether the value the key=value pattern (``regex``) finds at separator ``at``
        of secret key ``name`` is, whole, a count of tokens, which ships
        ("prompt_tokens=120": Redactor._counts_tokens)."""
        if not self._counts_tokens(name):
            return False
        m = regex.match(text, at)
        if m is None:
            return False
        start, end = m.span("v")
        # (Bare: digits in quotes are a string, as in meta.)
        return (
            _value_class(text, start) == "" and _COUNT_VALUE.fullmatch(text, start, end) is not None
        )

    def _key_values(
        self,
        text: str,
        backwards: str,
        regex: re.Pattern[str],
        head: re.Pattern[str],
        spans: list[Span],
    ) -> None:
        """The key=value pattern matched at each separator whose key names a secret,
        in long text (short text takes _at_separators alone).

        Keys are read back from each separator on the reversed text
        (``backwards``): first only the distinct keys (most text names no secret
        and stops there), then the places of those that do, found forwards from
        each key as a literal (_key_finder) when that costs less.
        """
        colons = _COLON_KEY_REVERSED.findall(backwards)
        equals = _EQUALS_KEY_REVERSED.findall(backwards)
        secret: dict[str, bool] = {}
        for key in {*colons, *equals}:
            name = key[::-1]
            if name[0] == "5":  # (as in _at_separators)
                name = _key_name(name)
            if self._is_secret(name) and not name.endswith(_NOT_KEYS):
                secret[name] = self._quoted_only_for(name)
        if not secret:
            return
        # One scan of the text for each key, or Python work for each separator:
        # whichever costs less. A scan costs about what a separator does per 512
        # characters; compiling a key's regex about 600, counted until the key has
        # come back in a few long texts (from then on it pays for itself).
        cost = len(secret) * len(text) // 512
        finders, seen = self._finders, self._seen
        for key in secret.items():
            if key not in finders:
                if len(seen) >= _CACHE_LIMIT:
                    seen.clear()
                times = seen[key] = seen.get(key, 0) + 1
                if times < _COMPILE_AFTER:
                    cost += 600
        if len(secret) > _FORWARD_KEYS or cost > len(colons) + len(equals):
            self._at_separators(text, backwards, regex, head, spans, secret)
            return
        separators: list[int] = []
        for name, strict in secret.items():
            separators += [
                at
                for found in self._key_finder(name, strict).finditer(text)
                if not self._number_counted(name, text, at := found.end(), regex)
            ]
        separators.sort()
        _values(text, separators, regex, head, spans)

    def _at_separators(
        self,
        text: str,
        backwards: str,
        regex: re.Pattern[str],
        head: re.Pattern[str],
        spans: list[Span],
        secret: dict[str, bool] | None,
    ) -> None:
        """_key_values from each separator in turn; ``secret``: the keys that name
        secrets, if known, and whether each counts only quoted or before "="."""
        is_secret = self._is_secret
        last = len(text) - 1
        separators: list[int] = []
        for candidate in _SEPARATOR_KEY_REVERSED.finditer(backwards):
            name = candidate[2][::-1]
            if name[0] == "5":  # (most keys do not start so: no call for them)
                name = _key_name(name)
            if secret is None:
                # Cheapest first: most candidates are "word:" that names no secret.
                if not is_secret(name) or name.endswith(_NOT_KEYS):
                    continue  # ("KeyError: 'k'": a traceback's last line)
            elif name not in secret:
                continue
            at = last - candidate.start()
            if text[at] == ":" and not candidate[1] and self._quoted_only_for(name):
                continue
            if self._number_counted(name, text, at, regex):
                continue
            separators.append(at)
        if separators:
            separators.reverse()  # (found from the end)
            _values(text, separators, regex, head, spans)

    def _encoded_values(
        self, text: str, backwards: str, regex: re.Pattern[str], spans: list[Span]
    ) -> None:
        """Each URL-encoded key=value's value whose key names a secret: matched from
        the encoded separator, its key read back (``_ENCODED_KEY_REVERSED``) and
        judged as at a plain separator (``_at_separators``)."""
        end = len(text)
        for m in regex.finditer(text):
            read = _ENCODED_KEY_REVERSED.match(backwards, end - m.start())
            if read is None:
                continue
            name = _encoded_key(text, m.start(), read)
            if not self._is_secret(name) or name.endswith(_NOT_KEYS):
                continue
            if _encoded_colon(text, m.start()) and not read[1] and self._quoted_only_for(name):
                continue  # (a bare "pin%3A": as a bare "pin:")
            spans.append(m.span("v"))

    def _blocks(self, text: str, backwards: str, regex: re.Pattern[str], spans: list[Span]) -> None:
        """Each YAML block under a key that names a secret (the yaml_block pattern:
        ``regex`` after each line break, _BLOCK_FIRST_LINE at the start): its key read
        back from the line's first ":" and judged as at a plain separator."""
        found = list(regex.finditer(text))
        first = _BLOCK_FIRST_LINE.match(text)
        if first is not None:
            found.insert(0, first)
        if len(found) > _BLOCKS_CHECKED_ONE_BY_ONE and not any(
            # (Many ":" ending lines: first whether any key before a ":" names a
            # secret at all, in one scan, not one Python step for each.)
            self._is_secret(_key_name(key[::-1]))
            for key in set(_COLON_KEY_REVERSED.findall(backwards))
        ):
            return
        reach = 0
        for m in found:
            if m.start() < reach:
                continue  # (inside a block found already: "secret:\n  token:\n    x")
            key_start = _block_key(
                text, backwards, text.find(":", m.start()), self._is_secret, self._quoted_only_for
            )
            if key_start < 0:
                continue
            span = _block_span(text, key_start, m.end())
            if span is not None:
                spans.append(span)
                reach = span[1]

    def _quoted_only_for(self, name: str) -> bool:
        """Whether a key counts only quoted or before "=", not as a bare "name:".

        "PASS: test 3", "dbus-session-bus-common:all": a bare word and a colon is
        prose, a status or a qualifier as often as a key. It counts only when the
        word ends with one of the longer names ("password:", "db_token: ..."); short
        ones (pass, pin, key ...) only as "pin=" or '"pin":'.
        """
        strict = self._quoted_only.get(name)
        if strict is None:
            if len(self._quoted_only) >= _CACHE_LIMIT:
                self._quoted_only.clear()
            strict = self._quoted_only[name] = not self._names_secret(name)
        return strict

    def _key_finder(self, name: str, strict: bool) -> re.Pattern[str]:
        """Where ``name`` is the key before a separator, as _SEPARATOR_KEY_REVERSED
        reads keys back: one regex that starts with the key as a literal (which the
        engine skips ahead to) and ends at the separator (``_values`` matches the
        key=value pattern there). ``strict``: not as a bare "name:"."""
        finder = self._finders.get((name, strict))
        if finder is None:
            if len(self._finders) >= _FINDERS_LIMIT:
                self._finders.clear()
            key = re.escape(name)
            # The key is the whole run of key characters, or what follows its "5B"
            # (_key_name), or its last 64.
            runs = []
            if not (name[:2] == "5B" and len(name) > 2):
                runs.append(f"(?<![A-Za-z0-9_.-]{key})")
            if len(name) < 62:
                runs.append(f"(?<=5B{key})(?<![A-Za-z0-9_.-]5B{key})")
            whole = "" if len(name) == 64 else f"(?:{'|'.join(runs)})"
            bracket = r"(?:(?:\]|%5D)(?:[ \t]{1,3}(?==>))?|[ \t]{0,3})"
            separator = (
                rf"""(?:\\{{0,15}}["']{bracket}|{bracket}(?==))"""
                if strict
                else rf"""(?:\\{{0,15}}["'])?{bracket}"""
            )
            # (The separator and the value are not consumed: a key inside another's
            # value is found too, as from each separator.)
            finder = re.compile(rf"{key}{whole}{separator}(?=[:=])")
            self._finders[(name, strict)] = finder
        return finder

    def search(self, text: str) -> bool:
        """Whether any pattern would replace something in ``text``."""
        return self.sub(MARKER, text) != text


def _values(
    text: str,
    separators: list[int],
    regex: re.Pattern[str],
    head: re.Pattern[str],
    spans: list[Span],
) -> None:
    """Add the value the key=value pattern (``regex``) finds at each separator (in
    ``separators``, ascending), read on to the end of its class's run (as _run_on
    would), unless it is the marker.

    Values may hold keys ("password=\\"password=\\"...": JSON inside a JSON string);
    matched at each separator inside one, the pattern read it to its bound again
    from each: 256 times the text. There only the value's start is matched
    (``head``): a value that starts inside the run found for one before it of its
    class ends where that run does (after a quote, it starts where one of that
    run's characters or escapes does: the quote before it is escaped). So each
    character is read by the pattern once, or a few times near a value's end
    (_NEAR: "'password='": the next value starts past it), and once for each
    class of value.
    """
    # The end of each class's last run found, by class ('"', "'", "[" for a list,
    # or "" for a bare value: not by its regex, whose hash is computed from its code
    # at every lookup); None: only that of the value last found whole (of class
    # ``start_kind``), which ends at ``reach`` (made when needed: most text has no
    # separator inside a value).
    ends: dict[str, int] | None = None
    reach = 0  # (the furthest end)
    start_kind = ""  # (the class of the value found whole that ``ends`` starts from)
    # The last span added: one inside it changes nothing (spans are joined), and
    # values inside a value mostly end where it does.
    last_start = last_end = -1
    v = head.groupindex["v"]  # (a number is looked up faster than a name)
    whole_v = regex.groupindex["v"]
    for at in separators:
        if at < reach - _NEAR:
            if ends is None:
                ends = {start_kind: reach}
            m = head.match(text, at)
            if m is None:
                continue
            s = m.start(v)
            kind = _value_class(text, s)
            e = ends.get(kind, 0)
            if s >= e:
                # (None for a quoted class: a backslash before a line break after
                # the quote, which the pattern takes as a bare value.)
                found = _run_of(kind).match(text, s) or _BARE_RUN.match(text, s)
                e = s + 1 if found is None else found.end()
            ends[kind] = e
        else:
            m = regex.match(text, at)
            if m is None:
                continue
            s, e = m.span(whole_v)
            kind = _value_class(text, s)
            # (Maybe cut at the bound; a list that reached its "]" is whole.)
            if e - s >= _VALUE_BOUND and not (kind in _CLOSERS and text[e - 1] == _CLOSERS[kind]):
                more = _run_of(kind).match(text, e)
                if more is not None:
                    e = more.end()
            if at >= reach:  # (every run found before ends before this one)
                ends = None
                start_kind = kind
            else:
                if ends is None:
                    ends = {start_kind: reach}
                ends[kind] = e
        if e > reach:  # noqa: PLR1730 (faster than max() here)
            reach = e
        if (s < last_start or e > last_end) and not _redacted_already(text, s, e):
            spans.append((s, e))
            last_start, last_end = s, e


def _value_class(text: str, start: int) -> str:
    """The class of the key=value pattern's value at ``start``: the quote before it,
    "[" for a list, "(" for a tuple, "" for a bare value."""
    kind = text[start - 1]
    if kind in _QUOTED_RUN:
        return kind
    first = text[start]
    if first == "[":
        return "[" if _LIST_HEAD.match(text, start) else ""
    return "(" if first == "(" and _TUPLE_HEAD.match(text, start) else ""


def _run_of(kind: str) -> re.Pattern[str]:
    """The whole run of a value of class ``kind`` (_value_class)."""
    quoted = _QUOTED_RUN.get(kind)
    if quoted is not None:
        return quoted
    return _CLOSED_RUNS.get(kind, _BARE_RUN)


def _redacted_already(text: str, start: int, end: int) -> bool:
    """Whether the value at ``text[start:end]`` is the marker (redacted before: the
    bare value class stops before its "]"), not a value that only starts with it
    ("[REDACTED]hunter2" has a secret after it)."""
    return end - start <= len(MARKER) and text.startswith(MARKER, start)


def _digits(
    text: str, zeros: re.Pattern[bytes], digits: re.Pattern[str], spans: list[Span]
) -> None:
    """card, us_ssn and phone_plain: one scan, then the checks a regex cannot make.

    Long text is scanned with its digits written "0" (_ZERO_BRANCHES), as bytes
    (encoding and translating ASCII costs little); short text (few digits to
    try) and text with letters or digits outside ASCII (which bytes would not
    show as such; str.translate is slow on it) by the \\d form.
    """
    if len(text) < _ZEROS_FROM:
        zeroed = b""
    elif text.isascii():
        zeroed = text.encode().translate(_ZEROS)
    elif _NON_ASCII_WORD.search(text) is None:
        # Each character outside ASCII ("€", "…") written "?": like it, neither a
        # word character nor a digit, nor any other the patterns name.
        zeroed = text.encode("ascii", "replace").translate(_ZEROS)
    else:
        zeroed = b""
    if not zeroed:
        for m in digits.finditer(text):
            kind = m.lastgroup
            s, e = m.span()
            if kind == "card":
                if not _is_card(text[s:e].translate(_CARD_SEPARATORS)):
                    continue
            elif kind == "us_ssn" and not _is_ssn(text[s:e]):
                continue
            spans.append((s, e))
        return
    # (Group numbers, not names: this loop runs for each number in the text.)
    card = zeros.groupindex.get("card", -1)
    ssn = zeros.groupindex.get("us_ssn", -1)
    at = zeroed.find(_LONG_RUN)
    for found in zeros.finditer(zeroed if at < 0 else _without_long_runs(zeroed, at)):
        group = found.lastindex
        if group == card:
            s, e = found.span()
            # (No network's numbers start with these: a timestamp in ms, say.)
            if text[s] in "01789":
                continue
            # (Its digits are 0-9: the text has no others.)
            if _is_card_number(text[s:e].encode().translate(None, b" .-")):
                spans.append((s, e))
        elif group == ssn:
            s, e = found.span()
            if _is_ssn(text[s:e]):
                spans.append((s, e))
        else:
            spans.append(found.span())


def _long_values(
    text: str,
    spans: list[Span],
    first: int,
    run_on: tuple[int, re.Pattern[str]],
    longs: list[tuple[int, int, re.Pattern[str]]],
) -> None:
    """Add to ``longs`` (end, index, its value's class) the spans from ``first`` on
    that are long enough to have stopped at their pattern's bound (see _RUN_ON)."""
    bound, run = run_on
    for index in range(first, len(spans)):
        s, e = spans[index]
        if e - s >= bound:
            longs.append((e, index, run))


def _run_on(text: str, spans: list[Span], longs: list[tuple[int, int, re.Pattern[str]]]) -> None:
    """Run each long span on over the rest of its value (``longs``: _long_values').

    In the order of their ends, one scan for each run of a class: a span that ends
    inside the run found before ends where it does (all of it is the class), so no
    character is read twice for one class however many keys repeat in one value.
    """
    reach: dict[re.Pattern[str], int] = {}
    for e, index, run in sorted(longs, key=lambda long: long[0]):
        end = reach.get(run, -1)
        if e > end:
            more = run.match(text, e)
            end = reach[run] = e if more is None else more.end()
        spans[index] = (spans[index][0], end)


def _lowered(text: str) -> str:
    """``text`` lower-cased, if the _LOWER_FORMS can run on that: every character
    in its place, an ASCII one lower-cased, others still not ASCII, and none that
    a case-insensitive ASCII letter matches (dotless i, dotted I, the Kelvin sign,
    long s); else ""."""
    low = text.lower()
    if text.isascii():
        return low
    if (
        "\u0131" in text or "\u017f" in text or "\u212a" in text or "\u0130" in text
        or text.encode("ascii", "replace").lower() != low.encode("ascii", "replace")
    ):  # fmt: skip
        return ""
    return low


def _without_long_runs(zeroed: bytes, at: int) -> bytearray:
    """``zeroed`` with each run of 20 digits or more (the first at ``at``) written
    "x": no digit pattern starts, ends or looks inside one (they hold at most 19
    digits in a row and look one character past their ends), and the scan need not
    try each of its digits."""
    out = bytearray(zeroed)
    while at >= 0:
        end = _ZERO_RUN.match(zeroed, at).end()  # type: ignore[union-attr]
        out[at:end] = b"x" * (end - at)
        at = zeroed.find(_LONG_RUN, end)
    return out


def _emails(text: str, backwards: str, regex: re.Pattern[str], spans: list[Span]) -> None:
    """Each email address: its domain matched from the "@", its local part read back."""
    local_part = _LOCAL_PART_REVERSED.match
    end = len(text)
    for m in regex.finditer(text):
        at = m.start()
        local = local_part(backwards, end - at)
        if local is not None:
            spans.append((end - local.end(), m.end()))


def _option_names_secret(name: str, names_secret: Callable[[str], bool]) -> bool:
    """Whether a long option's name says its value is a secret (cli_option): it ends
    with one of the longer names ("--api-key", "--db-password"; not "--auth-local"),
    or it is a short one whole ("--pass pw", "--pwd pw"; not "--pass-through")."""
    return name.lower() in _SECRET_OPTIONS or names_secret(name)


#: Short names that name a secret as a whole long option (see _option_names_secret).
_SECRET_OPTIONS = frozenset({"pass", "pw", "pwd"})

#: A 40-character AWS secret access key before its key id, read back on the reversed
#: text from the key id's "A": up to 128 characters and one that is not base64 (or
#: a "/"), then the key (aws_secret's, reversed): both cases and a digit, "/" or "+".
_AWS_SECRET_REVERSED = (
    r"(?P<v>(?=[A-Za-z0-9/+]{0,39}[a-z])(?=[A-Za-z0-9/+]{0,39}[A-Z])"
    r"(?=[A-Za-z0-9/+]{0,39}[0-9/+])[A-Za-z0-9/+]{40})(?![A-Za-z0-9/+])"
)
_AWS_SECRET_BEFORE_REVERSED = re.compile(
    r"(?:[^\r\n]{0,128}?[^A-Za-z0-9/+=\r\n]|/)" + _AWS_SECRET_REVERSED
)
#: Its second form alone: the key, a "/", the key id ("wJalr.../AKIA...").
_AWS_SECRET_SLASH_REVERSED = re.compile("/" + _AWS_SECRET_REVERSED)


def _secret_before(backwards: str, at: int) -> Span | None:
    """The span of an AWS secret access key logged before the key id at ``at``: the
    rule as written, each key id read back alone (tests/_redact_reference.py's;
    ``_secrets_before`` finds the same keys reading less)."""
    end = len(backwards)
    found = _AWS_SECRET_BEFORE_REVERSED.match(backwards, end - at)
    if found is None:
        return None
    return end - found.end("v"), end - found.start("v")


def _secrets_before(text: str, backwards: str, regex: re.Pattern[str], spans: list[Span]) -> None:
    """Each AWS secret access key logged before its key id (aws_secret_before): the
    keys ``_secret_before`` finds, each key id read back only as far as the one before.

    Reading back 128 characters from every key id of a run of them ("AKIA... AKIA...")
    read the same text again for each (a 128 KB line: 58 ms, now 43). A key that ends
    before the key id before (``after``) is one that key id could reach too, and the
    first form finds the nearest: it found it already (``near``), unless this key id
    cannot reach it (past 128 characters or a line break), when only the second form
    ("wJalr.../AKIA...") is left to find."""
    end = len(backwards)
    after = 0
    near: Span | None = None  # what the first form found for the key id before
    for m in regex.finditer(text):
        at = m.start()
        # (Read back to the start of a key ending at ``after``, and the character before
        # it, which says whether the key is whole: what lies further is cut off.)
        found = _AWS_SECRET_BEFORE_REVERSED.match(
            backwards, end - at, end - max(after - _AWS_SECRET_LENGTH - 1, 0)
        )
        span = None if found is None else (end - found.end("v"), end - found.start("v"))
        if span is not None and span[1] >= after and text[span[1]] != "/":
            spans.append(span)  # the first form: a separator after the key
            near = span
        elif (
            near is not None
            and at - near[1] <= _AWS_SECRET_REACH
            and _LINE_BREAK.search(text, after, at) is None
        ):
            pass  # the first form finds ``near`` again
        else:
            near = None
            slash = (
                at and text[at - 1] == "/" and _AWS_SECRET_SLASH_REVERSED.match(backwards, end - at)
            )
            if slash:
                spans.append((end - slash.end("v"), end - slash.start("v")))
        after = at


#: _AWS_SECRET_BEFORE_REVERSED's numbers: a key's length, and how far back from its
#: key id the separator after it may be (128 characters, then the separator).
_AWS_SECRET_LENGTH = 40
_AWS_SECRET_REACH = 129
_LINE_BREAK = re.compile(r"[\r\n]")


def _block_key(
    text: str,
    backwards: str,
    colon: int,
    is_secret: Callable[[str], bool],
    quoted_only: Callable[[str], bool],
) -> int:
    """Where the key before the ":" at ``text[colon]`` starts, if it names a secret
    (judged as at a plain separator: a bare short name does not count) and starts
    its line; else -1."""
    read = _SEPARATOR_KEY_REVERSED.match(backwards, len(text) - 1 - colon)
    if read is None:
        return -1
    name = _key_name(read[2][::-1])
    if not is_secret(name) or name.endswith(_NOT_KEYS) or (not read[1] and quoted_only(name)):
        return -1
    # A YAML key starts its line (after its indentation and any "- " of a list; a
    # quoted one at its quote): not code's "if signature:" or "for token in tokens:"
    # and the block under it.
    line_start = _LINE_START_REVERSED.match(backwards, read.end())
    if line_start is None:
        return -1
    return len(text) - read.end() - len(line_start[1])


_BLOCKS_CHECKED_ONE_BY_ONE = 16
#: yaml_block as the engine runs it: from each line break (a literal the regex engine
#: skips ahead to; "^" is tried at every character, five times slower), and at the
#: text's start.
_BLOCK_AFTER_BREAK = re.compile(rf"\n{_BLOCK_HEAD}{_BLOCK_TAIL}")
_BLOCK_FIRST_LINE = re.compile(_BLOCK_HEAD + _BLOCK_TAIL)
# What may stand before a YAML key on its line, read back: indentation and list
# items' "- ", then the line's start.
_LINE_START_REVERSED = re.compile(r"""(["']?)(?:[ \t]|-(?=[ \t\n]|\Z))*(?:\n|\Z)""")
# A line under a YAML key: its indentation, and the rest of it.
_BLOCK_LINE = re.compile(r"\r?\n([ \t]*)([^\r\n]*)")


def _block_span(text: str, key_start: int, after: int) -> Span | None:
    """The lines after ``text[after]`` (a line break) indented deeper than the key at
    ``key_start`` (blank lines among them too), from the first one's text to the
    last one's end; None when there is none."""
    column = key_start - text.rfind("\n", 0, key_start) - 1
    start = end = -1
    line = _BLOCK_LINE.match(text, after)
    while line is not None:
        if line[2]:
            if len(line[1]) <= column:
                break
            if start < 0:
                start = line.start(2)
            end = line.end()
        line = _BLOCK_LINE.match(text, line.end())
    return None if start < 0 else (start, end)


def _connect_passwords(
    text: str, backwards: str, regex: re.Pattern[str], spans: list[Span]
) -> None:
    """Each user/password@database's password: matched from the "/", its user read
    back (``_ORACLE_USER_REVERSED``)."""
    user = _ORACLE_USER_REVERSED.match
    end = len(text)
    for m in regex.finditer(text):
        if user(backwards, end - m.start()) is not None:
            spans.append(m.span("v"))


#: An Oracle user name before its "/", read back on the reversed text: 1 to 30
#: characters, a letter first, after none that could continue a path, a URL or a
#: host name (the connect_credentials pattern).
_ORACLE_USER_REVERSED = re.compile(r"[A-Za-z0-9_$#]{0,29}[A-Za-z](?![A-Za-z0-9_$#@/.\\%+-])")

#: The key before a URL-encoded separator, read back on the reversed text: an encoded
#: quote or closing bracket ("%22", "%5D"), the key, and the "%" of an escape right
#: before it, if any (its two hex digits are then no part of the key).
_ENCODED_KEY_REVERSED = re.compile(r"(22%)?(?:D5%)?([A-Za-z0-9_.-]{1,64})(%?)")


def _encoded_twice(text: str, at: int) -> bool:
    """Whether the encoded separator at ``text[at]`` is encoded twice ("%253D")."""
    return text[at + 1] == "2"


def _encoded_colon(text: str, at: int) -> bool:
    """Whether the encoded separator at ``text[at]`` is a ":" ("%3A", "%253A")."""
    return text[at + (4 if _encoded_twice(text, at) else 2)] in "Aa"


def _encoded_key(text: str, at: int, read: re.Match[str]) -> str:
    """The key before the encoded separator at ``text[at]``, from its read-back
    (``_ENCODED_KEY_REVERSED``): without the hex digits of an escape before it
    ("%3Fpassword%3D", "%5Bpin%5D%3D"), nor, when the separator is encoded twice,
    that escape's own ("%253Fpassword%253D")."""
    name: str = read[2][::-1]
    if read[3] and len(name) > 2:
        cut = 4 if name[:2] == "25" and len(name) > 4 and _encoded_twice(text, at) else 2
        name = name[cut:]
    return name


# Keys before a separator, read back on the reversed text (_SEPARATOR_KEY_REVERSED
# with only the key captured, one regex for each separator: a literal first is
# found faster than a class): findall gives them without a Python step each.
_COLON_KEY_REVERSED = re.compile(
    rf"{_COLON_REVERSED}{_SPACE_BRACKET_REVERSED}{_QUOTE_REVERSED}({_KEY_REVERSED})"
)
_EQUALS_KEY_REVERSED = re.compile(rf"={_SPACE_BRACKET_REVERSED}{_QUOTE_REVERSED}({_KEY_REVERSED})")
# Text at least this long, with at most this many distinct keys naming secrets, can
# have their places found forwards from each key (a regex compiled for it, kept).
_FORWARD_FROM = 2048
_FORWARD_KEYS = 16
_COMPILE_AFTER = 3
_FINDERS_LIMIT = 256


# Literals a pattern's every match holds (one of them): without any in the text,
# its regex is not run at all (cheaper than a regex call on a short message).
_NEEDS: dict[str, tuple[str, ...]] = {
    "secret_kv": (":", "="),
    "aws_key": ("A",),
    "url_credentials": ("://",),
    "jwt": ("eyJ",),
    "private_key": ("-----BEGIN",),
    "connect_credentials": ("@",),
    "cli_credentials": ("-u", "-proxy-user"),
    "cli_password": ("-pw", "-pass", "-U"),
    "aws_secret_option": ("_access_key", "_ACCESS_KEY"),
    "aws_secret_before": ("AKIA", "ASIA"),
    "yaml_block": ("\n",),  # (fewer messages have a line break than a ":")
    "cli_option": ("--",),
    "mysql_password": ("mysql", "mariadb"),
    "webhook_url": ("hooks.slack.com/", "/webhook"),
    "url_token": ("://",),
    "aws_secret": ("AKIA", "ASIA"),
    "auth_call": ("Auth(",),
    "encoded_kv": ("%3", "%253"),
    "service_token": ("_",),
    "slack_token": ("xox",),
    "provider_key": ("sk-", "hf_", "glpat-", "npm_", "pypi-", "_v1_", "AIza", "SG."),
    "email": ("@",),
    "phone": ("(",),
    "phone_plus": ("+",),
}


_SEPARATORS = re.compile(r"[-_.\s]+")
_CACHE_LIMIT = 4096
# Where "token" is a language model's, judged on a key's words (key_words): a
# tokenizer ("tokenizer", "tokenization"), a usage dict ("token_usage", LangChain's) and
# a dict of count details ("prompt_tokens_details", OpenAI's) name no credential; a
# count ("prompt_tokens", "total_tokens", Gemini's "promptTokenCount", OpenTelemetry's
# "gen_ai.usage.input_tokens") names none while its value is a number (_counts_tokens).
# Whole words only: "token_secret", "detokenized" and "tokenized_card" stay secrets; and
# only with words counts are named with: "mfa_tokens" and "access_token_details" too.
_TOKENIZER_WORDS = frozenset({"tokenizer", "tokenizers", "tokenization"})
# The words a count of tokens is named with (the SDKs', LangChain's, OpenTelemetry's
# GenAI conventions'), its "token"/"tokens"/"count"/"details" among them.
_COUNT_WORDS = frozenset({
    "token", "tokens", "count", "counts", "details",
    "prompt", "completion", "completions", "total", "input", "output", "max", "min", "new",
    "num", "n", "number", "used", "per", "second", "sec", "cache", "cached", "read",
    "creation", "write", "reasoning", "audio", "text", "image", "video", "context",
    "generated", "remaining", "accepted", "rejected", "prediction", "gen", "ai", "usage",
    "request", "response", "llm", "candidates", "thoughts", "tool", "use", "content",
    "limit", "billed", "eval", "embedding", "estimated", "avg", "sum", "batch", "model",
})  # fmt: skip
_COUNT_TYPES = frozenset({int, float, type(None)})
# A count's whole value in text, as the key=value pattern finds it, bare ("120",
# "1,234", "512." ending a sentence, "None"); not "1//0gLx..." nor "123456789:AA...".
_COUNT_VALUE = re.compile(r"-?[0-9][0-9,]*(?:\.[0-9]+)?\.?|None|null")


def _without_token_words(words: list[str], counts: bool) -> tuple[str, bool]:
    """A key's words joined as names are matched (separators out), with those that
    name a language model's tokens, not a credential, blanked (and its counts, with
    ``counts``); and whether a count was among them.

    A count or a dict of count details only where every other word of the key is one
    counts are named with (_COUNT_WORDS: "prompt_tokens", "max_new_tokens"):
    "mfa_tokens", "card_tokens" and "access_token_details" hold credentials."""
    of_counts = all(w in _COUNT_WORDS or w.isdigit() for w in words)
    out: list[str] = []
    counted = False
    i, n = 0, len(words)
    while i < n:
        word = words[i]
        after = words[i + 1] if i + 1 < n else ""
        if word in _TOKENIZER_WORDS:
            out.append(" ")
        elif (word == "token" and after == "usage" and i == 0) or (
            of_counts and word in ("token", "tokens") and after == "details"
        ):
            out.append(" ")
            i += 1
        elif of_counts and (word == "tokens" or (word == "token" and after in ("count", "counts"))):
            counted = True
            out.append(" " if counts else word + after if word == "token" else word)
            i += word == "token"
        else:
            out.append(word)
        i += 1
    return "".join(out), counted


#: Text patterns run on at most this many characters past ``max_line_length``: a
#: secret that straddles the cut is still whole for them.
_CUT_MARGIN = 256
_CUT = "… [cut by logdna_client before redaction]"


def expand_patterns(patterns: Iterable[str]) -> list[str]:
    """Pattern names with the group names ("phi", "phone") expanded, duplicates dropped."""
    out: list[str] = []
    for pattern in patterns:
        members = PRESET_GROUPS.get(pattern)
        if members is None or (pattern in members and len(members) == 1):
            if pattern not in out:
                out.append(pattern)
            continue
        for name in members:
            inner = [name] if name == pattern else expand_patterns([name])
            out += [n for n in inner if n not in out]
    return out


class Redactor:
    """Replaces secret values in meta and pattern matches in text.

    Args:
        extra_keys: more key names, matched like ``DEFAULT_SECRET_KEYS``.
        patterns: regular expressions and preset names for text (and string meta values).
        defaults: the default key names and ``CREDENTIAL_PATTERNS`` (``redact=False``
            turns both off).
        max_chars: text longer than this is cut before the patterns run (the line
            builder cuts it to ``max_line_length`` anyway): every pattern is linear,
            and this bounds the input too.
        describe: what the serializer ships for a meta value it cannot encode (the
            line builder's fallback): the text patterns run on that text.
    """

    __slots__ = ("_cache", "_counts", "_describe", "_extra_re", "_key_end_re", "_key_re",
                 "_max_chars", "_plain_keys", "_text_re", "_triggered_only", "_words")  # fmt: skip

    def __init__(self, extra_keys: Iterable[str] = (), patterns: Iterable[str] = (),
                 *, defaults: bool = True, max_chars: int = 1 << 20,
                 describe: Callable[[Any], object] = safe_str) -> None:  # fmt: skip
        names = list(DEFAULT_SECRET_KEYS) if defaults else []
        # A name needs a letter: keys without one are never secrets (the C handle
        # relies on it to pass "request 42: ..." by without asking).
        extra = [_SEPARATORS.sub("", k.lower()) for k in extra_keys if any(c.isalpha() for c in k)]
        names += extra
        self._key_re = re.compile("|".join(map(re.escape, names))) if names else None
        # The names given here count whole: "prompt_tokens" given is no count of tokens.
        self._extra_re = re.compile("|".join(map(re.escape, extra))) if extra else None
        #: Secret key -> whether it names one only as a count of tokens (_counts_tokens).
        self._counts: dict[str, bool] | None = {} if defaults else None
        # (A number after the name, "token01", "password_2", numbers the key.)
        self._key_end_re = (
            re.compile("(?:" + "|".join(map(re.escape, names)) + r")s?\d*\Z") if names else None
        )
        self._words = frozenset(SECRET_WORDS) if defaults else frozenset()
        chosen = expand_patterns([*CREDENTIAL_PATTERNS, *patterns] if defaults else patterns)
        self._text_re = (
            _Patterns(chosen, self.is_secret, self._names_secret, self._counts_tokens)
            if chosen
            else None
        )
        # With only the default credential patterns, text without a trigger cannot
        # match: one cheap test (has_trigger) instead of the patterns.
        self._triggered_only = bool(chosen) and set(chosen) <= set(CREDENTIAL_PATTERNS)
        self._max_chars = max_chars + _CUT_MARGIN
        self._describe = describe
        self._cache: dict[str, bool] = {}
        # Keys known not to be secrets: lets flat meta skip the walk entirely.
        self._plain_keys: set[str] = set()

    @property
    def active(self) -> bool:
        """Whether this redactor can change anything at all."""
        return bool(self._key_re or self._words or self._text_re)

    @property
    def plain_keys(self) -> set[str]:
        """Keys found not to be secrets so far: the live set (it grows; it is
        emptied, never replaced, when the cache is full). ``plain_meta`` asks it;
        the C handle is handed it (as the line builder's ``meta_safe_keys``)."""
        return self._plain_keys

    @property
    def cache(self) -> dict[str, bool]:
        """Answers so far, key -> whether it names a secret: the live dict (emptied,
        never replaced, when full). The C handle reads it (see _speedups.c)."""
        return self._cache

    @property
    def redacts_text(self) -> bool:
        return self._text_re is not None

    @property
    def cheap_text(self) -> bool:
        """Whether text can be checked cheaply first (``may_hold_secret``): only the
        default credential patterns run. The fast paths stay open then."""
        return self._triggered_only

    def may_hold_secret(self, text: str) -> bool:
        """Whether the text patterns could change ``text`` (False means certainly not)."""
        if self._text_re is None:
            return False
        return not self._triggered_only or has_trigger(text)

    def is_secret(self, key: str) -> bool:
        """Whether a meta key names a secret."""
        if type(key) is not str:
            # A str subclass is asked as plain text: its own __eq__ and __hash__ never
            # run in these caches' lookups (the C handle's included), nor live in them.
            key = str.__str__(key)
        hit = self._cache.get(key)
        if hit is None:
            flat = _SEPARATORS.sub("", key.lower())
            if (
                "token" in flat
                and self._counts is not None
                and not (self._extra_re and self._extra_re.search(flat))
            ):
                # (A tokenizer, a usage dict: unless the application named the key.)
                flat = _without_token_words(key_words(key), counts=False)[0]
            hit = bool(
                (self._key_re and self._key_re.search(flat))
                or (self._words and self._has_secret_word(key))
            )
            if len(self._cache) >= _CACHE_LIMIT:
                self._cache.clear()
                self._plain_keys.clear()
            self._cache[key] = hit
            if not hit:
                self._plain_keys.add(key)
        return hit

    def _counts_tokens(self, key: str) -> bool:
        """Whether secret ``key`` names a secret only as a count of a language model's
        tokens (a word "tokens", or "token" and "count"; see _without_token_words): a
        number under it ships, anything else does not."""
        counts = self._counts
        if counts is None or self._key_re is None:
            return False
        hit = counts.get(key)
        if hit is None:
            rest, counted = _without_token_words(key_words(key), counts=True)
            hit = (
                counted
                and not self._key_re.search(rest)
                and not (self._words and self._has_secret_word(key))
                and not (self._extra_re and self._extra_re.search(_SEPARATORS.sub("", key.lower())))
            )
            if len(counts) >= _CACHE_LIMIT:
                counts.clear()
            counts[key] = hit
        return hit

    def _names_secret(self, key: str) -> bool:
        """Whether ``key`` ends with one of the longer names (not only a short word),
        or with one and a number."""
        return bool(self._key_end_re and self._key_end_re.search(_SEPARATORS.sub("", key.lower())))

    def _has_secret_word(self, key: str) -> bool:
        words = key_words(key)
        if not self._words.isdisjoint(words):
            return True
        if not words:
            return False
        return words[-1] in SECRET_LAST_WORDS or (len(words) == 1 and words[0] in SECRET_WHOLE_KEYS)

    def text(self, value: str) -> str:
        """The text with every configured pattern replaced by the marker.

        Text longer than ``max_chars`` and a margin comes back cut to ``max_chars``
        (the caller cuts it to the line cap anyway): the patterns run on bounded
        input, the margin included, so a secret the cut splits is replaced whole.
        """
        if self._text_re is None:
            return value
        if len(value) > self._max_chars:
            return self._apply(value[: self._max_chars], self._max_chars - _CUT_MARGIN)
        return self._apply(value)

    def text_triggered(self, value: str) -> str:
        """``text`` for text that ``may_hold_secret`` said yes to (no second check)."""
        patterns = self._text_re
        if patterns is None:
            return value
        if len(value) > self._max_chars:
            return patterns.sub(MARKER, value[: self._max_chars], self._max_chars - _CUT_MARGIN)
        return patterns.sub(MARKER, value)

    def _apply(self, value: str, keep: int | None = None) -> str:
        """``value`` redacted; only its first ``keep`` characters when given (see
        ``_Patterns.sub``)."""
        patterns = self._text_re
        if patterns is None or (self._triggered_only and not has_trigger(value)):
            return value if keep is None else value[:keep]
        return patterns.sub(MARKER, value, keep)

    def meta(self, value: Any) -> Any:
        """A copy of ``value`` with secrets replaced; ``value`` itself when nothing changed.

        Never mutates the caller's objects (they may be shared with other
        handlers) and never raises. Anything the serializer would show as a
        mapping (dicts, other ``Mapping`` types, dataclass instances) is walked
        at any depth up to a limit; deeper parts, cycles and containers that
        cannot be read are replaced by a marker rather than shipped unchecked.
        """
        if type(value) is dict and self.plain_meta(value):
            return value
        try:
            result = self._walk(value, set(), 0)
        except Exception:  # a hostile container: ship nothing of it rather than secrets
            return _UNREADABLE
        return value if result is _OTHER else result

    def plain_meta(self, meta: dict[Any, Any]) -> bool:
        """Whether the walk would leave flat ``meta`` as it is, told cheaply: its keys
        are all ``plain_keys``, its values scalars or lists of scalars, and none of
        its strings one the text patterns may change or the walk would cut.

        The one rule of every shortcut past the walk: ``meta`` takes it, and so the
        line builder's ``meta_json``; _speedups.c's ``add_meta`` mirrors it, item by
        item, for scalar values (anything else it leaves to Python). A tuple is
        walked: it may be a header pair, ``("Authorization", "Bearer ...")``, whose
        value the walk replaces though no key of the dict names a secret.
        """
        if self._text_re is not None and not self._triggered_only:
            return False  # (custom patterns: no cheap test tells what they match)
        try:
            # (Each key's type first: a set lookup runs a key's own __hash__ and
            # __eq__, and a str subclass or any other object can answer "user" to
            # them while it ships as "password".)
            if not (_STR.issuperset(map(type, meta)) and self._plain_keys.issuperset(meta)):
                return False
            values: list[Any] | Any = meta.values()
            if not _SCALARS.issuperset(map(type, values)):
                flat: list[Any] = []
                for value in values:
                    if type(value) is list and _SCALARS.issuperset(map(type, value)):
                        flat.extend(value)
                    elif type(value) in _SCALARS:
                        flat.append(value)
                    else:
                        return False
                values = flat
            if self._text_re is None:
                return True
            strings = [value for value in values if type(value) is str]
            return not strings or not (
                self.may_hold_secret("\0".join(strings)) or max(map(len, strings)) > self._max_chars
            )
        except Exception:  # the dict changed under us
            return False

    def _key_is_secret(self, key: object, objects: bool = True) -> bool:
        """Whether a mapping key names a secret: str and bytes keys, an Enum key by
        its value and name (orjson ships its value), a tuple key by any part, and
        any other object by the text it ships as (the line builder's ``safe_str``).
        ``objects=False``: that last kind is not asked (the caller judges the text
        of the whole key, which holds it: its __str__ runs once)."""
        if isinstance(key, str):
            return self.is_secret(key)
        if isinstance(key, bytes | bytearray):
            return self.is_secret(bytes(key).decode("latin-1"))
        if isinstance(key, Enum):
            return self._key_is_secret(key.value, objects) or self.is_secret(key.name)
        if isinstance(key, tuple | frozenset):
            return any(self._key_is_secret(part, objects) for part in key)
        if key is None or isinstance(key, int | float):
            return False  # (no letters: they ship as numbers, "true", "null")
        return objects and self.is_secret(safe_str(key))

    def _header_pair(self, item: Any) -> Any:
        """A (name, value) pair (an ASGI or raw header, a form field) whose name is a
        secret's, with its value replaced; None for anything else."""
        if (
            isinstance(item, tuple | list)
            and len(item) == 2
            and isinstance(item[0], str | bytes | bytearray)
            and self._key_is_secret(item[0])
        ):
            return [item[0], MARKER]
        return None

    def _meta_text(self, value: str) -> str:
        """A string in meta, patterns applied: one longer than the text cap is cut,
        with a marker (the patterns only ever run on bounded input: the cut and a
        margin)."""
        if len(value) > self._max_chars:
            # Cut after the patterns ran on a margin past the cut: one the cut would
            # end (a URL's "@" past it) still finds its secret whole.
            return self._apply(value[: self._max_chars + _CUT_MARGIN], self._max_chars) + _CUT
        return self._apply(value)

    def _described(self, value: object) -> Any:
        """A value that is no container, as it ships: the text the serializer would
        make of it (its str(): werkzeug's request headers, a model that prints its
        fields), patterns applied; the sentinel for "unchanged" when it ships as
        itself. The text replaces it even unchanged: its __str__ (slow, or one that
        logs) is not called again by the serializer."""
        if self._text_re is None or _native(value):
            return _OTHER
        text = self._describe(value)
        return self._meta_text(text) if type(text) is str else _OTHER

    def _walk(self, value: Any, path: set[int], depth: int) -> Any:
        if isinstance(value, str):
            return self._meta_text(value) if self._text_re else value
        if value is None or isinstance(value, int | float | bool):
            return value
        if isinstance(value, bytes | bytearray):
            if self._text_re is None:
                return value
            # The line builder ships bytes as text; check that text like any other.
            text = bytes_text(value)
            new_text = self._meta_text(text)
            return value if new_text == text else new_text
        if isinstance(value, Enum):
            # orjson ships a member as its value (a dict, say): check that instead.
            inner = value.value
            new_inner = self._walk(inner, path, depth)
            return _OTHER if new_inner is _OTHER or new_inner is inner else new_inner
        if isinstance(value, _FRAGMENT):
            # Embedded by orjson as it is: the JSON value it holds ships, walked here.
            # Unchanged, the fragment itself ships: orjson reads an integer past 64
            # bits as a float, and its digits would be lost.
            inner = _fragment_value(value)
            if inner is _UNREADABLE:  # (that very object: not JSON)
                return inner
            new_inner = self._walk(inner, path, depth)
            return _OTHER if new_inner is _OTHER or new_inner is inner else new_inner
        if type(value) is not dict:
            container = _as_container(value)
            if container is None:
                return self._described(value)
            value = container
        if depth >= MAX_DEPTH:
            return TOO_DEEP
        if id(value) in path:
            # A cycle. Returning the original would smuggle its unredacted
            # items past a copy made higher up; cut it here instead.
            return CYCLE
        path.add(id(value))
        try:
            if isinstance(value, dict):
                pairs = list(value.items())
                changed = False
                for index, (k, v) in enumerate(pairs):
                    if type(k) is str or _writable_key(k):
                        name: Any = k
                        secret = self._key_is_secret(k)
                    else:
                        # The serializer would ship it as its text (safe_str): that
                        # text is made here, once, judged, and shipped in its place. A
                        # __str__ may be slow, log, or answer "user" now and
                        # "password" when the line is written.
                        name = safe_str(k)
                        secret = self.is_secret(name) or self._key_is_secret(k, False)
                    if secret and type(v) in _COUNT_TYPES and type(name) is str:
                        secret = not self._counts_tokens(name)  # ("prompt_tokens": 120)
                    new: Any = MARKER if secret else self._walk(v, path, depth + 1)
                    if new is _OTHER or new is v:
                        if name is k:
                            continue
                        new = v
                    pairs[index] = (name, new)
                    changed = True
                # (Keys whose texts collide: the last one's value, as the line
                # builder's own fallback keeps.)
                return dict(pairs) if changed else value
            items = list(value)
            changed = not isinstance(value, list | tuple)
            pair = self._header_pair(value) if isinstance(value, tuple) else None
            if pair is not None:
                return pair
            for index, item in enumerate(items):
                pair = self._header_pair(item)
                new = pair if pair is not None else self._walk(item, path, depth + 1)
                if new is not _OTHER and new is not item:
                    items[index] = new
                    changed = True
            return items if changed else value
        finally:
            path.discard(id(value))


_OTHER: Any = object()
_SCALARS = frozenset({str, int, float, bool, type(None)})
_STR = frozenset({str})


_UNREADABLE = "[REDACTED: unreadable]"
#: Meta nested deeper than this is cut, by this walk and by the line builder alike.
MAX_DEPTH = 32
TOO_DEEP = "<too deep>"
CYCLE = "<cycle>"


_FRAGMENT: Any = getattr(orjson, "Fragment", ())  # (orjson 3.9 and later)


def _fragment_value(fragment: object) -> Any:
    """The JSON value an ``orjson.Fragment`` holds (its bytes are not readable
    otherwise); a marker when they are not JSON."""
    try:
        return orjson.loads(orjson.dumps(fragment))
    except (TypeError, ValueError):  # not JSON; text orjson cannot write (a surrogate)
        return _UNREADABLE


def _writable_key(key: object) -> bool:
    """Whether orjson writes ``key`` as a mapping key itself (with OPT_NON_STR_KEYS,
    as the line builder asks it to); any other key ships as its text (safe_str).
    orjson takes str and int subclasses as keys but not float ones."""
    if isinstance(key, Enum):
        return _writable_key(key.value)
    if key is None or isinstance(key, str | int) or type(key) is float:
        return True
    return type(key) in _NATIVE


def _native(value: object) -> bool:
    """Whether orjson ships ``value`` as itself (not through the line builder's
    fallback): the non-container types it knows beyond the JSON scalars. Those
    types exactly: a subclass of one goes to the fallback (its str())."""
    return type(value) in _NATIVE


_NATIVE = frozenset({datetime.datetime, datetime.date, datetime.time, uuid.UUID})


def _as_container(value: Any) -> Any:
    """A dict or list view of a container the serializer would expand, else None.

    orjson serializes dataclass instances as objects, and the line builder
    turns other ``Mapping`` types, named tuples and sets into objects and
    arrays: their keys and strings must be checked like a dict's.
    """
    if isinstance(value, tuple) and is_named_tuple(value):
        return named_tuple_fields(value)
    if isinstance(value, list | tuple):
        return value
    if isinstance(value, Mapping):
        return dict(value.items())
    if isinstance(value, set | frozenset):
        return list(value)
    if is_dataclass(value) and not isinstance(value, type):
        return {f.name: getattr(value, f.name) for f in fields(value)}
    return None


def is_named_tuple(value: tuple[Any, ...]) -> bool:
    """Whether a tuple is a named tuple (collections.namedtuple, typing.NamedTuple)."""
    return isinstance(getattr(type(value), "_fields", None), tuple)


def named_tuple_fields(value: tuple[Any, ...]) -> dict[Any, Any]:
    """A named tuple as the object it ships as: field names to values."""
    return dict(zip(type(value)._fields, value, strict=False))  # type: ignore[attr-defined]
