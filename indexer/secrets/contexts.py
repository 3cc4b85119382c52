"""Credentials found by what surrounds them, not by their shape: command-line flags that take a password,
`user:password` arguments, credentials passed to auth calls, and sentences that state a password.

A password has no format: `-pRt7kWm3qZx` after `mysql`, the second string of `auth=("admin", "…")` or the
word after "the new password is" are secrets only because of where they stand. Each rule names that place
precisely, and the value must still look typed by someone (`values.typed_password`, `values.stated_secret`):
`-u nobody:nogroup`, `-p 8080:80` and "the password is stored offline" stay as they are."""
from __future__ import annotations

import re
from collections.abc import Iterator
from functools import partial

from indexer.secrets.rules import VALUE, LineEnds, PatternRule, literal_hits, pattern_rule
from indexer.secrets.values import (
    assignment_kind,
    plausible_password,
    plausible_token,
    plausible_url_password,
    stated_secret,
    typed_password,
)

_line_rule = partial(pattern_rule, one_line=True)


def _typed(secret: str, match: re.Match[str], text: str) -> bool:
    return typed_password(secret)


def _named_flag(secret: str, match: re.Match[str], text: str) -> bool:
    """`--password=…`, `--api-token …`: the flag's name says what the value is."""
    kind = assignment_kind(match.group("flag"))
    if kind == "password":
        return typed_password(secret)
    return kind == "token" and plausible_token(secret, name=match.group("flag"))


def _user_password(secret: str, match: re.Match[str], text: str) -> bool:
    user = match.group("user")
    return not user.isdigit() and secret != user and typed_password(secret)


def _env_line(secret: str, match: re.Match[str], text: str) -> bool:
    """Dockerfile `ENV NAME value` (ENV first on its line): judged like `NAME=value`."""
    if text[text.rfind("\n", 0, match.start()) + 1:match.start()].strip():
        return False
    name = match.group("name")
    kind = assignment_kind(name)
    if kind == "password":
        return plausible_password(secret, name=name, bare=True)
    return kind == "token" and plausible_token(secret, name=name, bare=True)


def _dsn(secret: str, match: re.Match[str], text: str) -> bool:
    return plausible_url_password(secret, match.group("user"))


def _tool_flag(tools: str, flag: str, hints: tuple[str, ...]) -> PatternRule:
    """`tool … FLAG value` on one shell line (the value may follow the flag with or without a space)."""
    return _line_rule("cli-password", rf"(?<![\w./-])(?:{tools})(?![\w-])[^\n|;&]{{0,300}}?[ \t]{flag}[ \t]*{VALUE}", hints,
                      _typed, anchor=tools)


_MYSQL = r"mysql|mysqldump|mysqladmin|mysqlimport|mysqlshow|mysqlcheck|mysqlpump|mysqlsh|mariadb|mariadb-dump"
_LOGIN = r"(?:docker|podman|buildah|nerdctl|oras|skopeo|crane|helm[ \t]+registry|az)[ \t]+login"
# A sentence's value: it holds something besides letters before its end (the text is lower-cased: "changed",
# "stored" are words), it does not start with an opening mark nor end with the punctuation ending a sentence.
_STATED = (r"""[`'"*]{0,2}(?=[a-z]{0,200}+(?:[^a-z\s.,;:!?)`'"*<>]|[.,;:!?*]{1,20}+[^\s.,;:!?)`'"*<>]))"""
           r"""(?P<secret>[^\s`'"*<>\\()\[\]{}][^\s`'"<>\\()\[\]{}]{4,198}?[^\s`'"*<>\\()\[\]{},.;:!?])"""
           r"""(?=[.,;:!?)`'"*]*(?:[\s<\\]|$))""")
_USER_FLAG = r"-u|--user|--proxy-user"

CLI_RULES: tuple[PatternRule, ...] = (
    # mysql -pSECRET (the password sticks to -p; `-p` alone prompts, `-P` is the port)
    _tool_flag(_MYSQL, "-p(?=[^ \t])", ("mysql", "mariadb")),
    _tool_flag("sshpass", "-p", ("sshpass",)),
    _tool_flag("redis-cli", "-a", ("redis-cli",)),
    _tool_flag(r"ldap(?:search|modify|add|delete|passwd|whoami|compare)", "-w", ("ldap",)),
    _tool_flag("sqlcmd|bcp|osql", "-P", ("sqlcmd", "bcp", "osql")),
    _tool_flag(_LOGIN, "-p", (" login",)),
    _line_rule("cli-password", rf"(?<![\w-])htpasswd[ \t]+-[a-zA-Z]*b[a-zA-Z]*(?:[ \t]+-\S+)*[ \t]+\S+[ \t]+\S+[ \t]+{VALUE}",
               ("htpasswd",), _typed, anchor="htpasswd"),
    _line_rule("cli-password", rf"(?<![\w-])-(?:pass|passin|passout|password|k)[ \t]+pass:{VALUE}", ("pass:",), _typed,
               anchor=r"-(?:pass|passin|passout|password|k)[ \t]+pass:"),
    # --password=…, --http-password …, --api-token … (a name that says credential; never --password-stdin)
    _line_rule("cli-password", rf"(?<![\w-])--(?P<flag>[a-z][a-z0-9-]{{1,40}}+)(?:=|[ \t]+){VALUE}", ("--",), _named_flag,
               anchor=r"--[a-z0-9-]{0,40}?(?:pass|pwd|token|secret|key|cred)"),
    # curl -u user:SECRET, --user=user:SECRET, --proxy-user …
    _line_rule("cli-password", rf"""(?<![\w-])(?:{_USER_FLAG})(?:=|[ \t]*)(?P<q>['"]?)"""
                               r"""(?P<user>[^\s:'"$`]{1,100}+):(?P<secret>[^\s'"`]{1,200}+)(?P=q)(?![^\s'"`])""",
               ("-u",), _user_password, anchor=_USER_FLAG),
    # echo 'SECRET' | docker login --password-stdin
    _line_rule("cli-password", rf"(?<![\w-])(?:echo|printf)[ \t]+(?:-n[ \t]+)?{VALUE}[ \t]*\|[^|\n]{{0,200}}?--password-stdin",
               ("password-stdin",), _typed, anchor="echo|printf"),
)

OTHER_RULES: tuple[PatternRule, ...] = (
    # Dockerfile `ENV NAME value` (the legacy form without `=`)
    _line_rule("secret-assignment", rf"ENV[ \t]+(?P<name>[A-Za-z_][\w.\-]{{0,79}}+)[ \t]+{VALUE}[ \t]*\\?$", ("env ",),
               _env_line, anchor="env[ \t]"),
    # Go's MySQL driver: user:SECRET@tcp(host)/db
    _line_rule("url-password", r"""(?<![\w.\-])(?P<user>[\w.\-]{1,64}+):(?P<secret>[^\s@/'"`:]{1,200}+)@(?:tcp|unix)\(""",
               ("@tcp(", "@unix("), _dsn),
)

# auth=("user", "…"), HTTPBasicAuth("user", "…"), SetBasicAuth, PlainAuth("", "user", "…", host),
# smtp.login("user", "…"), getConnection(url, "user", "…"), new NetworkCredential("user", "…")
_CALL_NAMES = ("auth", "login", "credential", "getconnection")  # the end of the called name
_CALL = re.compile(r"s?[ \t]*(?:=[ \t]*)?[(\[][ \t]*")  # what follows it: `(`, or `=(` for auth=(…)
_ARG = re.compile(r"""(?:(?P<kw>[A-Za-z_]\w{0,40})[ \t]*=[ \t]*)?(?P<q>\\?["'])(?P<value>(?:(?!(?P=q))(?:\\.|[^\\\n])){0,300}+)"""
                  r"""(?P=q)[ \t]*(?P<sep>[,)\]])[ \t]*""")


def _credential_keyword(keyword: str, value: str) -> bool:
    """`login(key="…")`, `Client(token="…")`: in a call that authenticates, `key` and `secret` name the credential."""
    kind = "token" if keyword.lower() in ("key", "secret") else assignment_kind(keyword)
    if kind == "password":
        return typed_password(value)
    return kind == "token" and plausible_token(value, name=keyword)


class AuthCallRule:
    """The password among the string arguments of a call that authenticates: after the user name, once
    an empty identity or a URL in front is skipped; or a `key=`/`token=` keyword argument of it."""

    name = "auth-call"

    def find(self, text: str, lowered: str) -> Iterator[tuple[int, int]]:
        for name, at in literal_hits(lowered, _CALL_NAMES):
            call = _CALL.match(lowered, at + len(name))
            if call is not None:
                yield from self._arguments(text, call.end())

    @staticmethod
    def _arguments(text: str, pos: int) -> Iterator[tuple[int, int]]:
        positional: list[re.Match[str]] = []
        while (arg := _ARG.match(text, pos)) is not None:
            keyword = arg.group("kw")
            if keyword is None:
                positional.append(arg)
            elif _credential_keyword(keyword, arg.group("value")):
                yield arg.span("value")
            if arg.group("sep") != ",":
                break
            pos = arg.end()
        values = [a for a in positional if a.group("value") and "://" not in a.group("value")
                  and not a.group("value").lower().startswith("jdbc:")]
        if len(values) >= 2 and values[1].group("value") != values[0].group("value") \
                and typed_password(values[1].group("value")):
            yield values[1].span("value")


_PASSWORDS = "password|passwd|passphrase|passcode|pwd|pass|pw"
_TAIL = r"(?:[ \t,]+[^\s:=]{1,25}){0,5}?"  # "for the staging DB", "was changed"
_CONNECTOR = r"(?:[ \t]+(?:is|was|are|to|now)|[ \t]*[*_]{0,2}:[*_]{0,2})[ \t]+"  # `=` is an assignment's
_STATED_FORMS = (
    # "the new password is …", "Password: …", "Temporary password for the staging DB: …", "the API key is …"
    re.compile(rf"(?:{_PASSWORDS}|token|secret|key)(?![\w-]){_TAIL}{_CONNECTOR}{_STATED}"),
    # "log in as admin with password …", "user bob / pass …" ("pass" alone is a verb: "pass cascade=True")
    re.compile(rf"(?:password|passwd|passphrase|passcode|pwd|pw|(?<=/ )pass|(?<=/)pass)(?![\w-])[ \t]+{_STATED}"),
    # "Credentials: `admin` / `…`" (a slash with a space: not a URL's)
    re.compile(rf"""(?:credentials|creds|login)(?![\w-])[^\n]{{0,20}}?[ \t]*[`'"]?[\w.@-]{{1,64}}+[`'"]?"""
               rf"""(?:[ \t]+/[ \t]*|[ \t]*/[ \t]+){_STATED}"""),
)
_WORD_FORMS, _PAIR_FORMS = _STATED_FORMS[:2], _STATED_FORMS[2:]
_PAIR_WORDS = frozenset({"credentials", "creds", "login"})
_KEYWORDS = ("pass", "pw", "token", "secret", "key", "cred", "login")
_KEYWORD = re.compile(rf"(?:{_PASSWORDS}|token|secret|key|credentials|creds|login)(?![\w-])")
# "key" alone is a primary key, a cache key, a commit; with one of these in front it is a credential.
_QUALIFIER = re.compile(r"(?:api|access|auth|bearer|bot|deploy|secret|signing|private|master|shared|client|license)[ _-]?\Z")
_WORD_CHARS = frozenset("abcdefghijklmnopqrstuvwxyz0123456789_-")


class StatedRule:
    """A credential written in a sentence, found from its keyword (one scan for all three forms)."""

    name = "stated-secret"

    def find(self, text: str, lowered: str) -> Iterator[tuple[int, int]]:
        line_end = LineEnds(lowered)
        for _, at in literal_hits(lowered, _KEYWORDS):
            hit = _KEYWORD.match(lowered, at)
            if hit is None:
                continue  # part of a longer word: tokenizer, keys, secrets
            start = at
            if hit.group() == "key":
                qualifier = _QUALIFIER.search(lowered, max(0, at - 9), at)
                if qualifier is None:
                    continue
                start = qualifier.start()
            if start and lowered[start - 1] in _WORD_CHARS:
                continue  # inside a word: bypass, monkey, client_secret
            end = line_end(hit.end())
            for form in _PAIR_FORMS if hit.group() in _PAIR_WORDS else _WORD_FORMS:
                match = form.match(lowered, at, end)
                if match is not None and stated_secret(text[match.start("secret"):match.end("secret")]):
                    yield match.span("secret")
                    break


CONTEXT_RULES: tuple[PatternRule | AuthCallRule | StatedRule, ...] = (*CLI_RULES, *OTHER_RULES, AuthCallRule(), StatedRule())
