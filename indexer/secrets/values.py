"""Judges candidate secrets: placeholders, template variables, code, prose and low-entropy strings are kept.

`indexer.secrets.detector` finds candidates; these functions decide whether a candidate is worth redacting.
Precision matters as much as recall: a redacted `password = "changeme"` in a tutorial helps nobody."""
from __future__ import annotations

import base64
import binascii
import functools
import itertools
import json
import math
import re
from collections import Counter
from urllib.parse import unquote

PASSWORD_WORDS = frozenset({"password", "passwd", "pwd", "pass", "passphrase", "passcode", "passwort", "motdepasse"})
# Long password words also end a fused name: PGPASSWORD, MYSQLPASSWORD, rootpassword (not "bypass", "compass").
PASSWORD_SUFFIXES = ("password", "passwd", "passphrase", "passcode")
SECRET_WORDS = frozenset({"secret", "secrets", "token", "apikey", "apitoken", "apisecret", "credential",
                          "credentials", "secretkey", "accesskey", "privatekey", "clientsecret", "authtoken",
                          "accesstoken", "refreshtoken", "sessionkey", "signingkey", "encryptionkey"})
# Two parts that together name a secret: api_key, accessKey, PRIVATE-KEY...
SECRET_PAIRS = frozenset({("api", "key"), ("access", "key"), ("private", "key"), ("secret", "key"),
                          ("signing", "key"), ("encryption", "key"), ("master", "key"), ("account", "key"),
                          ("auth", "key"), ("session", "key"), ("license", "key"), ("app", "key")})
# A name ending in one of these holds something about a secret (where it is, what it is), not the secret.
NOT_SECRET_LAST = frozenset({
    "url", "uri", "urls", "path", "paths", "file", "filename", "files", "dir", "directory", "name", "names",
    "type", "types", "length", "len", "size", "count", "field", "fields", "env", "var", "variable", "header",
    "headers", "prefix", "suffix", "pattern", "regex", "re", "label", "hint", "policy", "ttl", "expiry",
    "expires", "expiration", "timeout", "endpoint", "format", "fmt", "id", "ids", "index", "idx", "mode",
    "kind", "method", "enabled", "enable", "required", "hash", "hashed", "digest", "sha", "checksum", "algorithm",
    "algo", "provider", "source", "store", "manager", "class", "factory", "service", "validator", "min", "max",
    "limit", "rotation", "version", "placeholder", "prompt", "message", "msg", "error", "errors", "description",
    "desc", "help", "title", "text", "key", "keys", "param", "parameter", "option", "flag", "arn", "ref",
    "location", "command", "cmd", "script", "template", "widget", "input", "form", "view", "page", "button",
    "reset", "change", "changed", "confirm", "confirmation", "strength", "rules", "rule", "check",
    "storage", "cache", "lifetime", "age", "used", "usage", "created", "updated", "at", "date", "time", "stdin",
    "program", "helper"})

PLACEHOLDER_MARKERS = ("example", "sample", "placeholder", "changeme", "change_me", "change-me", "changeit",
                       "your", "dummy", "fake", "redacted", "replace", "insert", "todo", "fixme", "xxxx", "***",
                       "...", "\u2026", "<", ">", "123456", "abcdef", "qwerty", "notreal", "not-real", "not_real")
# Extra markers for named assignments (test code is full of `password="testpass1"`); not for prefixed tokens.
ASSIGNMENT_MARKERS = ("test", "secret", "password", "passwd", "token", "mock", "demo", "local", "insecure")
WEAK_VALUES = frozenset({
    "password", "passwd", "secret", "admin", "root", "test", "testing", "guest", "default", "none", "null", "nil",
    "true", "false", "undefined", "empty", "blank", "pass", "qwerty", "letmein", "foobar", "foo", "bar", "baz",
    "hunter2", "token", "apikey", "key", "value", "string", "str", "required", "optional", "hidden", "masked",
    "notasecret", "abc123", "postgres", "mysql", "redis", "rabbitmq", "user", "username", "demo", "sa"})

_TEMPLATE = re.compile(
    r"\$\{|\{\{|\}\}|#\{|\$\(|%\(|<%|%>|\{%|(?<![A-Za-z0-9%])%[sdr](?![A-Za-z0-9])|\{\d*\}|\{[A-Za-z_][\w.]*\}"
    r"|^\$[A-Za-z_]|^%[A-Za-z_]+%$|^@[A-Za-z_]+@$|^__\w+__$|^\[[^\]]*\]$|^:[a-z_]+$")
_DELEET = str.maketrans("@4310$5!7", "aaeiossit")
_REPEATS = re.compile(r"(.)\1{4,}|(.{3,12}?)\2{2,}|(..)\3{3,}")  # xxxxx, wrongwrongwrong, abcabcabc, abababab
_IDENTIFIER_PATH = re.compile(r"[A-Za-z_$][\w$]*(?:(?:\.|::|->)[A-Za-z_$][\w$]*)+")  # obj.attr, Mod::Const
# A part of such a path reads as a name: snake_case, UPPER_CASE or camelCase humps of two or more letters,
# digits only at the end (`settings.DB_PASSWORD`, `appConfig.dbPass2`); `YMGjh5.pOgGv` is a password.
_NAME_PART = re.compile(r"[$_]*(?:[a-z][a-z0-9_]*|[A-Z][A-Z0-9_]*|[A-Za-z][a-z]+(?:[A-Z][a-z]+)*[0-9]*)")
_PATH_SEPARATORS = re.compile(r"\.|::|->")
_LETTERS_ONLY = re.compile(r"[A-Za-z_\-]+")
_SLUG = re.compile(r"[a-z]+(?:[-_./:][a-z]+)+")  # pydantic-mypy-metadata, prod/db/credentials: names of things
_KWARG = re.compile(r"[a-z_]{3,}=(?:[A-Za-z_]+|\d+)")  # `reconnect=False` in a sentence is code
_CONSTANT = re.compile(r"[A-Z][A-Z0-9]*(?:_[A-Z0-9]+)+")
_NUMBER = re.compile(r"[-+]?[\d_.,:]+[a-z]{0,2}")
_PATH_LIKE = re.compile(r"^(?:/|\./|\.\./|~/|[A-Za-z]:\\)|://|^(?:arn|file|env|vault|secret|ref|projects):"
                        r"|\.(?:pem|key|json|txt|ya?ml|crt|p12|cfg|conf|ini|env|toml|properties)$", re.IGNORECASE)
_CONNECTION_KEYS = re.compile(r"(?i)(?:^|[;\"'\s])(?:server|data source|host|hostname|user id|uid|user|username"
                              r"|database|initial catalog|provider|driver|dsn|port)\s*=")


def shannon_entropy(value: str) -> float:
    """Bits per character of the value's own character distribution."""
    if not value:
        return 0.0
    n = len(value)
    return -sum(c / n * math.log2(c / n) for c in Counter(value).values())


def name_parts(name: str) -> list[str]:
    """`dbPassword2` → [db, password]; `X-API-KEY` → [x, api, key]; digits at a part's end dropped."""
    name = re.sub(r"([a-z0-9])([A-Z])", r"\1_\2", name.strip("\"':@$"))
    parts = (p.rstrip("0123456789") for p in re.split(r"[^A-Za-z0-9]+", name.lower()))
    return [p for p in parts if p]


# `KAGGLE_KEY`, `MAPBOX_KEY`: an environment variable named <service>_KEY holds that service's credential,
# unless the word before KEY says it is another kind of key.
_ENV_KEY = re.compile(r"[A-Z][A-Z0-9]*(?:_[A-Z0-9]+)*_KEY")
NOT_SECRET_KEYS = frozenset({
    "gpg", "pgp", "public", "pub", "ssh", "primary", "foreign", "sort", "cache", "partition", "routing", "idempotency",
    "dedup", "group", "shard", "hash", "lookup", "map", "index", "row", "object", "bucket", "redis", "kv", "config",
    "registry", "metric", "publishable", "site", "unique", "composite", "natural", "surrogate", "join", "hot", "short"})


@functools.lru_cache(maxsize=4096)
def assignment_kind(name: str) -> str | None:
    """`password` or `token` when the name says it holds a credential, else None."""
    parts = name_parts(name)
    if _ENV_KEY.fullmatch(name.strip("\"':@$")) and len(parts) >= 2 and parts[-2] not in NOT_SECRET_KEYS:
        return "token"
    if not parts or (parts[-1] in NOT_SECRET_LAST and not (len(parts) >= 2 and (parts[-2], parts[-1]) in SECRET_PAIRS)):
        return None
    if any(p in PASSWORD_WORDS or p.endswith(PASSWORD_SUFFIXES) for p in parts):
        return "password"
    if any(p in SECRET_WORDS for p in parts) or any(pair in SECRET_PAIRS for pair in itertools.pairwise(parts)):
        return "token"
    return None


def _normalised(text: str) -> str:
    return re.sub(r"[^a-z0-9]", "", text.lower())


def is_placeholder(value: str, name: str = "", assignment: bool = False) -> bool:
    """Template variables, documentation placeholders, weak defaults and the name repeated as its value."""
    lowered = value.lower()
    if _TEMPLATE.search(value) or _REPEATS.search(value) or len(set(value)) <= 2:
        return True
    if any(m in lowered for m in PLACEHOLDER_MARKERS):
        return True
    if assignment and any(m in lowered for m in ASSIGNMENT_MARKERS):
        return True
    norm = _normalised(value)
    core = lowered.rstrip("0123456789!?.#*")
    plain = _normalised(core.translate(_DELEET))  # P@ssw0rd1! → password
    half = norm[:len(norm) // 2]
    if norm in WEAK_VALUES or (plain in WEAK_VALUES and _trivial_suffix(lowered[len(core):])) \
            or (half in WEAK_VALUES and norm == half * 2):
        return True
    return bool(name) and norm in (_normalised(name), "".join(name_parts(name)))


def _trivial_suffix(suffix: str) -> bool:
    """What turns a weak word into a documentation default (`password1!`, `Passw0rd123`), not into a
    password someone picked (`P@ssw0rd!2024`): at most three characters, or a run like 12345."""
    return len(suffix) <= 3 or (suffix.isdigit() and suffix in "1234567890")


def _identifier_path(value: str) -> bool:
    return _IDENTIFIER_PATH.fullmatch(value) is not None \
        and all(_NAME_PART.fullmatch(part) for part in _PATH_SEPARATORS.split(value))


def _code_like(value: str, bare: bool) -> bool:
    """Identifiers, attribute paths, constants, numbers, paths and URLs: names of secrets, not secrets."""
    if _identifier_path(value) or _CONSTANT.fullmatch(value) or _NUMBER.fullmatch(value):
        return True
    if _PATH_LIKE.search(value):
        return True
    # Bare YAML tags (!vault), anchors (&x), aliases (*x) and block markers are syntax, not values; a bare
    # word or identifier is a name (a long mixed-case run of letters like base64 is not).
    return bare and (_word(value) or value[0] in "!&*|>")


def _word(value: str) -> bool:
    if not _LETTERS_ONLY.fullmatch(value):
        return False
    return len(value) < 16 or value.islower() or value.isupper() or _NAME_PART.fullmatch(value) is not None


def _classes(value: str) -> int:
    return sum((any(c.islower() for c in value), any(c.isupper() for c in value), any(c.isdigit() for c in value),
                any(not c.isalnum() for c in value)))


@functools.lru_cache(maxsize=4096)
def plausible_password(value: str, name: str = "", bare: bool = False, min_length: int = 6) -> bool:
    """A literal password: long enough, no whitespace, not a placeholder, not code."""
    value = value.strip()
    if not min_length <= len(value) <= 500 or any(c.isspace() for c in value) or ("\\" in value and bare):
        return False
    if is_placeholder(value, name, assignment=bool(name)) or _code_like(value, bare):
        return False
    return shannon_entropy(value) >= 2.0


def typed_password(value: str) -> bool:
    """A password given on a command line (`-p…`, `user:…`): plausible, and not a plain word or number
    (`-u nobody:nogroup` names a group, `-p 8080:80` ports)."""
    return plausible_password(value, name="password") and _classes(value) >= 2 and not value.isalpha()


def stated_secret(value: str) -> bool:
    """A credential written in a sentence ("the new password is …"): at least eight characters mixing
    three classes, or a long random-looking string; words, numbers and placeholders are prose."""
    if len(value) < 8 or _KWARG.fullmatch(value) or not plausible_password(value, name="password"):
        return False
    classes = _classes(value)
    return classes >= 3 or (classes == 2 and any(c.isdigit() for c in value) and len(value) >= 16
                            and shannon_entropy(value) >= 3.0)


@functools.lru_cache(maxsize=4096)
def plausible_token(value: str, name: str = "", bare: bool = False) -> bool:
    """A machine credential: for named assignments at least 16 characters of high entropy with a digit or
    symbol (or very high entropy); for prefixed formats (name == "") only the placeholder checks."""
    value = value.strip()
    if not value or any(c.isspace() for c in value) or is_placeholder(value, name, assignment=bool(name)):
        return False
    entropy = shannon_entropy(value)
    if not name:
        return entropy >= 3.0
    if len(value) < 16 or len(value) > 1000 or _code_like(value, bare) or _SLUG.fullmatch(value):
        return False
    mixed = _classes(value) >= 2 and any(not c.isalpha() for c in value)
    return (entropy >= 3.0 and mixed) or (entropy >= 4.0 and len(value) >= 24)


def plausible_url_password(password: str, user: str) -> bool:
    """`scheme://user:PASSWORD@host`: not a template or placeholder, not the user name again."""
    decoded = unquote(password)
    if len(decoded) < 3 or decoded == unquote(user) or _NUMBER.fullmatch(decoded):
        return False
    if unquote(user).lower() in ("anonymous", "ftp") and "@" in decoded:
        return False  # anonymous FTP: the "password" is an e-mail address by convention
    return not is_placeholder(decoded, "password")


def connection_string_line(match: re.Match[str], text: str) -> bool:
    """`Password=` inside `key=value;` pairs that name a server, user or database (ADO, ODBC, JDBC...)."""
    begin = text.rfind("\n", 0, match.start()) + 1
    end = text.find("\n", match.end())
    line = text[begin:len(text) if end < 0 else end]
    return ";" in line and bool(_CONNECTION_KEYS.search(line))


def _b64decode(value: str, urlsafe: bool = False) -> bytes | None:
    padded = value + "=" * (-len(value) % 4)
    try:
        return base64.urlsafe_b64decode(padded) if urlsafe else base64.b64decode(padded, validate=True)
    except (binascii.Error, ValueError):
        return None


def plausible_basic_auth(value: str) -> bool:
    """`Basic <base64 of user:password>` with a real-looking password."""
    raw = _b64decode(value)
    try:
        text = raw.decode("utf-8") if raw else ""
    except UnicodeDecodeError:
        return False
    user, sep, password = text.partition(":")
    if not sep or not user or not password or not text.isprintable():
        return False
    return not is_placeholder(password, "password") and password != user


def jwt_header_ok(token: str) -> bool:
    """The first part decodes to a JSON object naming an algorithm: a real JWT, not a random `eyJ` string."""
    raw = _b64decode(token.split(".", 1)[0], urlsafe=True)
    try:
        header = json.loads(raw) if raw else None
    except (UnicodeDecodeError, ValueError):
        return False
    return isinstance(header, dict) and "alg" in header and "example" not in token.lower()


def pem_body_ok(body: str) -> bool:
    """A key block's body holds real key material (at least 64 base64 characters), not `...` or `xxx`."""
    if "..." in body or "\u2026" in body or "xxxx" in body.lower() or "<" in body:
        return False
    lines = body.replace("\\n", "\n").splitlines()
    material = "".join(line.strip() for line in lines if ":" not in line)
    payload = re.sub(r"[^A-Za-z0-9+/=]", "", material)
    return len(payload) >= 64 and shannon_entropy(payload) >= 4.0
