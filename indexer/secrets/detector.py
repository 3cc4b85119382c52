"""Finds credentials in text and replaces them with `[REDACTED:rule]` markers, keeping every line in place.

The rules here are Cairn's own: token formats with a fixed prefix (GitHub, GitLab, Slack, cloud keys...),
private key blocks, passwords inside URLs and connection strings, and values assigned to names that say
"secret" in any syntax (code, JSON, YAML, INI, XML, JSON-escaped notebook cells); `indexer.secrets.contexts`
adds the credentials found by their place (command-line flags, auth calls, sentences). What counts as a
value worth redacting is in `indexer.secrets.values`. Their recall and precision are measured on a labelled
corpus (tests/indexer/test_redaction_corpus.py).
A marker never carries the secret nor anything derived from it (no hash, no length)."""
from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

from indexer.secrets.contexts import CONTEXT_RULES, AuthCallRule, StatedRule
from indexer.secrets.rules import Check, LineEnds, PatternRule, literal_hits, pattern_rule, token_check
from indexer.secrets.values import (
    assignment_kind,
    connection_string_line,
    jwt_header_ok,
    pem_body_ok,
    plausible_basic_auth,
    plausible_password,
    plausible_token,
    plausible_url_password,
)

MARKER_PATTERN = re.compile(r"\[REDACTED:([a-z0-9-]{1,40})\]")


def marker(rule: str) -> str:
    return f"[REDACTED:{rule}]"


@dataclass(frozen=True)
class Finding:
    """One redacted secret: which rule, where (1-based line of its first character). Never its value."""

    rule: str
    line: int
    start: int
    end: int


@dataclass(frozen=True)
class Redaction:
    """Text with its secrets replaced, and what was replaced."""

    text: str
    findings: tuple[Finding, ...] = ()

    def counts(self) -> dict[str, int]:
        return dict(Counter(f.rule for f in self.findings))


_rule = pattern_rule


_WORD = r"A-Za-z0-9_\-"


def _token_rule(name: str, lead: str, rest: str, hints: Sequence[str], check: Check = token_check) -> PatternRule:
    """A token starting with the literal `lead`, neither continuing nor continued by a word. The
    lookbehind sits after the literal so the regex engine still skips ahead to the literal."""
    pattern = rf"(?P<secret>{re.escape(lead)}(?<![{_WORD}].{{{len(lead)}}}){rest})(?![{_WORD}])"
    return _rule(name, pattern, hints, check)


class PrivateKeyRule:
    """The body of a private key block (PEM/OpenSSH/PGP/PKCS#8), up to its END line; also inside string
    literals with `\n` escapes (JSON key files), and cut short without an END line."""

    name = "private-key"
    MAX_CHARS = 20_000
    _BEGIN = re.compile(r"-----BEGIN (?:[A-Z0-9]+ ){0,3}PRIVATE KEY(?: BLOCK)?-----")
    _LINES = re.compile(r"(?:[ \t]*(?:[A-Za-z0-9+/=]{16,}+|[A-Za-z][A-Za-z-]{1,30}: [^\r\n]{1,200}+)[ \t]*(?:\r?\n|$))+")

    def find(self, text: str, lowered: str) -> Iterator[tuple[int, int]]:
        if "private key" not in lowered:
            return
        pos = searched = 0  # text[start:searched] is known to hold no END line
        while (begin := self._BEGIN.search(text, pos)) is not None:
            start = _skip_newline(text, begin.end())
            end = text.find("-----END ", max(start, searched), start + self.MAX_CHARS)
            if end < 0:
                searched = start + self.MAX_CHARS
                lines = self._LINES.match(text, start)
                end = lines.end() if lines else start
            pos = max(end, begin.end())
            end = _trim_newline(text, start, end)
            if end > start and pem_body_ok(text[start:end]):
                yield start, end


def _skip_newline(text: str, at: int) -> int:
    for newline in ("\r\n", "\n", "\\n"):
        if text.startswith(newline, at):
            return at + len(newline)
    return at


def _trim_newline(text: str, start: int, end: int) -> int:
    for newline in ("\r\n", "\n", "\\n"):
        if end - len(newline) >= start and text.startswith(newline, end - len(newline)):
            return end - len(newline)
    return end


PREFIXED_RULES: tuple[PatternRule | PrivateKeyRule, ...] = (
    PrivateKeyRule(),
    *(_token_rule("aws-access-key-id", prefix, r"[A-Z0-9]{16}", [prefix.lower()]) for prefix in ("AKIA", "ASIA", "ABIA", "ACCA")),
    _rule("aws-secret-key", r"aws[\w.\-]{0,20}?(?:secret|_sk\b)[\w.\-]{0,20}+(?:\\?[\"'])?[ \t]*+(?::=|=>|=|:)[ \t]*+"
                            r"(?:\\?[\"'])?(?P<secret>[a-z0-9/+]{40})(?![a-z0-9/+=])", ["aws"], lowered=True),
    _rule("azure-storage-key", r"(?:accountkey|sharedaccesskey|sharedkey)[ \t]*+=[ \t]*+"
                               r"(?P<secret>[a-z0-9+/]{30,200}+={0,2})", ["accountkey", "sharedaccesskey", "sharedkey"],
          lowered=True),
    _rule("azure-sas-signature", r"[?&;]sig=(?P<secret>[A-Za-z0-9%+/]{30,300}+(?:%3D|=){0,2})", ["sig="]),
    _token_rule("google-api-key", "AIza", r"[0-9A-Za-z_\-]{35}", ["aiza"]),
    _token_rule("github-token", "gh", r"[pousr]_[A-Za-z0-9]{36,251}+", ["gh"]),
    _token_rule("github-token", "github_pat_", r"[A-Za-z0-9_]{30,251}+", ["github_pat_"]),
    _token_rule("gitlab-token", "gl", r"(?:pat|dt|rtr|rt|ptt|cbt|soat|ffct|oas|imt|agent|ft|wt)-[A-Za-z0-9_\-]{20,255}+",
["gl"]),
    _token_rule("gitlab-token", "GR1348941", r"[A-Za-z0-9_\-]{20,255}+", ["gr1348941"]),
    _token_rule("slack-token", "xox", r"[abposre]-[A-Za-z0-9\-]{10,255}+", ["xox"]),
    _token_rule("slack-token", "xapp-", r"\d-[A-Za-z0-9\-]{20,255}+", ["xapp-"]),
    _rule("slack-webhook", r"hooks\.slack\.com/(?:services|workflows|triggers)/(?P<secret>[A-Za-z0-9_/+\-]{20,200}+)",
          ["hooks.slack.com"]),
    _token_rule("stripe-key", "sk_", r"(?:live|test)_[A-Za-z0-9]{16,247}+", ["sk_"]),
    _token_rule("stripe-key", "rk_", r"(?:live|test)_[A-Za-z0-9]{16,247}+", ["rk_"]),
    _token_rule("stripe-key", "whsec_", r"[A-Za-z0-9]{24,255}+", ["whsec_"]),
    _token_rule("npm-token", "npm_", r"[A-Za-z0-9]{36}", ["npm_"]),
    _token_rule("pypi-token", "pypi-AgE", r"[A-Za-z0-9_\-]{50,1000}+", ["pypi-age"]),
    _token_rule("openai-key", "sk-", r"(?:proj-|svcacct-|admin-)?[A-Za-z0-9_\-]{16,200}?T3BlbkFJ[A-Za-z0-9_\-]{16,200}+",
                ["t3blbkfj"]),
    _token_rule("anthropic-key", "sk-ant-", r"[a-z]{1,10}\d\d-[A-Za-z0-9_\-]{60,300}+", ["sk-ant-"]),
    _token_rule("huggingface-token", "hf_", r"[A-Za-z]{34}", ["hf_"]),
    _token_rule("sendgrid-key", "SG.", r"[A-Za-z0-9_\-]{22}\.[A-Za-z0-9_\-]{43}", ["sg."]),
    _token_rule("digitalocean-token", "do", r"[por]_v1_[a-f0-9]{64}", ["_v1_"]),
    _token_rule("shopify-token", "shp", r"(?:at|ss|ca|pa)_[a-fA-F0-9]{32}", ["shp"]),
    _token_rule("docker-token", "dckr_pat_", r"[A-Za-z0-9_\-]{27,255}+", ["dckr_pat_"]),
    _token_rule("atlassian-token", "ATATT3", r"[A-Za-z0-9_\-=]{150,400}+", ["atatt3"]),
    _token_rule("mailgun-key", "key-", r"[0-9a-f]{32}", ["key-"]),
    _token_rule("vault-token", "hv", r"[sb]\.[A-Za-z0-9_\-]{90,400}+", ["hv"]),
    _token_rule("grafana-token", "glsa_", r"[A-Za-z0-9]{32}_[a-f0-9]{8}", ["glsa_"]),
    _token_rule("google-client-secret", "GOCSPX-", r"[A-Za-z0-9_\-]{28}", ["gocspx-"]),
    _token_rule("sonar-token", "sq", r"[uap]_[a-f0-9]{40}", ["sq"]),
    _token_rule("databricks-token", "dapi", r"[a-f0-9]{32}(?:-\d)?", ["dapi"]),
    _rule("azure-client-secret", r"(?<![A-Za-z0-9_~.\-])(?P<secret>[A-Za-z0-9_~.\-]{3}\dQ~[A-Za-z0-9_~.\-]{31,34})"
                                 r"(?![A-Za-z0-9_~.\-])", ["q~"], one_line=True),
    _token_rule("jwt", "eyJ", r"[A-Za-z0-9_\-]{10,4096}+\.eyJ[A-Za-z0-9_\-]{4,8192}+\.[A-Za-z0-9_\-]{16,4096}+", ["eyj"],
                lambda s, m, t: jwt_header_ok(s)),
)

CREDENTIAL_RULES: tuple[PatternRule, ...] = (
    _rule("url-password", r"://(?P<user>[^\s:/?#@'\"`<>()\[\]{}]{0,128}+):"
                          r"(?P<secret>[^\s/?#@'\"`<>]{1,256}+)@[A-Za-z0-9\[\]._\-]",
          ["://"], lambda s, m, t: plausible_url_password(s, m.group("user"))),
    _rule("connection-string-password", r"p(?<![\w.]p)(?:assword|wd)[ \t]*+=[ \t]*+"
                                        r"(?P<secret>[^;\"'\s<>{}=]{1,200}+={0,2})(?=[ \t]*(?:;|\"|'|$))",
          ["password", "pwd"],
          lambda s, m, t: connection_string_line(m, t) and plausible_password(s, min_length=3), lowered=True),
    _rule("npm-auth", r"_(?<![\w]_)(?:authtoken|auth|password)[ \t]*+=[ \t]*+[\"']?(?P<secret>[^\s\"']{8,500}+)",
          ["_auth", "_password"], lambda s, m, t: plausible_password(s), lowered=True),
    _rule("basic-auth", r"Basic(?<![A-Za-z0-9_]Basic)[ \t]++(?P<secret>[A-Za-z0-9+/]{8,2000}+={0,2})(?![A-Za-z0-9+/=])",
          ["basic "], lambda s, m, t: plausible_basic_auth(s)),
    _rule("bearer-token", r"Bearer(?<![A-Za-z0-9_]Bearer)[ \t]++(?P<secret>[A-Za-z0-9\-._~+/]{20,4096}+=*+)"
                          r"(?![A-Za-z0-9\-._~+/=])", ["bearer"]),
)

# `name = "value"`, `name: value`, `"name": "value"`, `NAME=value`, `name := "value"`, `:name => 'value'`...
# Names are judged by `assignment_kind`; a bare value must end the statement (`x = f(...)` is code).
_QUOTED = r"""(?P<q>\\?["'`])(?P<quoted>(?:(?!(?P=q))(?:\\.|[^\\\n])){1,500}+)(?P=q)"""  # \" inside JSON too
_ASSIGNMENT = re.compile(
    r"""(?:(?P<sub>\[[ \t]*)|(?<![\w.@/\-]))(?P<q0>(?:\\?["'])?)(?P<name>[A-Za-z_][\w.\-]{0,79})(?P=q0)(?(sub)[ \t]*\])"""
    r"""(?:[ \t]*:[ \t]*[A-Za-z_][\w\[\], .|]{0,40}?(?=[ \t]*=[^=]))?"""  # a type annotation
    r"""[ \t]*+(?::=|=>|=(?!=)|:(?![:=/])|\|\||\?\?)[ \t]*+"""
    rf"""(?:{_QUOTED}|(?P<bare>[^\s'"`,;&()\[\]{{}}<>\\]{{1,500}}+)(?=[\s,;&)\]}}<#"'\\]|$))"""
)
_XML_ELEMENT = re.compile(r"<(?P<name>[A-Za-z_][\w.\-]{0,60}+)>(?P<quoted>[^<\n]{1,500}+)</(?P=name)>")
# ("DB_PASSWORD", "…") as in os.Setenv, props.put, define, getenv defaults; <add key="ApiKey" value="…" />
# (the pair opens a call: a list, a set or a tuple of names is not a pair)
_KEYED_PAIR = re.compile(rf"""(?<=\w\()[ \t]*(?P<q0>\\?["'])(?P<name>[A-Za-z_][\w.\-]{{0,79}}+)(?P=q0)[ \t]*,[ \t]*{_QUOTED}"""
                         r"""(?=[ \t]*[,)])""")
_XML_KEY_VALUE = re.compile(r"""(?:key|name)=(?P<q0>["'])(?P<name>[A-Za-z_][\w.\-:]{0,79}+)(?P=q0)[ \t]+"""
                            r"""value=(?P<q>["'])(?P<quoted>[^"'\n]{1,500}+)(?P=q)""")
# Where an assignment can be: a keyword in the lower-cased text (far faster than IGNORECASE), the rest
# of the name, then an operator (or `>` closing an XML tag, or the comma of a pair). Only those lines are parsed.
_CANDIDATE_WORDS = ("pass", "pwd", "secret", "token", "key", "credential")
_CANDIDATE = re.compile(r"""[\w.\-]{0,40}+(?:\\?["'])?\]?[ \t]*+[=:>,|?]""")  # after the word


_NAME_CHARS = frozenset("abcdefghijklmnopqrstuvwxyz0123456789_.-")
_OPENERS = "\"'\\[< \t"  # before a name: a quote (escaped in JSON), a subscript, an XML tag, a call's space


class AssignmentRule:
    """High-entropy (or password-like) literals assigned to names that say password/secret/token/key."""

    name = "secret-assignment"

    def find(self, text: str, lowered: str) -> Iterator[tuple[int, int]]:
        names: set[int] = set()  # `secret_key =` holds two words; its name is parsed once
        line_end = LineEnds(text)
        for word, at in literal_hits(lowered, _CANDIDATE_WORDS):
            hit = _CANDIDATE.match(lowered, at + len(word))
            if hit is None:
                continue
            name = at
            while name > max(0, at - 80) and lowered[name - 1] in _NAME_CHARS:
                name -= 1
            if name in names:
                continue
            names.add(name)
            anchor = name
            while anchor > 0 and name - anchor < 3 and lowered[anchor - 1] in _OPENERS:
                anchor -= 1
            end = line_end(hit.end())
            for pattern in self._patterns(lowered, hit, name, anchor):
                yield from self._at(pattern, text, anchor, name, end)

    @staticmethod
    def _patterns(lowered: str, hit: re.Match[str], name: int, anchor: int) -> tuple[re.Pattern[str], ...]:
        """The forms this hit can be: a pair ends in a comma, an element opens with `<`, `key="…" value=`."""
        if hit.group().endswith(","):
            return (_KEYED_PAIR,)
        if lowered.startswith("key=", name):
            return (_XML_KEY_VALUE,)
        return (_XML_ELEMENT,) if "<" in lowered[anchor:name] else (_ASSIGNMENT,)

    @staticmethod
    def _at(pattern: re.Pattern[str], text: str, anchor: int, name: int, end: int) -> Iterator[tuple[int, int]]:
        """The assignment whose name starts at `name` (written from `anchor`, its opening quote or bracket)."""
        for pos in range(anchor, name + 1):
            match = pattern.match(text, pos, end)
            if match is None:
                continue
            group = "quoted" if match.group("quoted") is not None else "bare"
            name_text, value = match.group("name"), match.group(group)
            kind = assignment_kind(name_text)
            bare = group == "bare"
            if kind is not None and (plausible_password(value, name=name_text, bare=bare) if kind == "password"
                                     else plausible_token(value, name=name_text, bare=bare)):
                yield match.span(group)
            return


_ASCII_LOWER = {c: c + 32 for c in range(ord("A"), ord("Z") + 1)}


class SecretDetector:
    """Runs every rule over a text; `allow` regexes keep a match when they match its value or its line."""

    def __init__(self, allow: Sequence[str] = ()) -> None:
        self.rules: tuple[PatternRule | PrivateKeyRule | AssignmentRule | AuthCallRule | StatedRule, ...] = (
            *PREFIXED_RULES, *CREDENTIAL_RULES, AssignmentRule(), *CONTEXT_RULES)
        try:
            self.allow = tuple(re.compile(p) for p in allow)
        except re.error as exc:
            raise ValueError(f"invalid secret allowlist pattern: {exc}") from exc

    def findings(self, text: str) -> list[Finding]:
        """Non-overlapping findings in text order (the longer, then the earlier rule wins an overlap)."""
        lowered = text.lower()
        if len(lowered) != len(text):  # a few characters lower-case to two; offsets must line up
            lowered = text.translate(_ASCII_LOWER)
        spans = [(start, -(end - start), order, end) for order, rule in enumerate(self.rules)
                 for start, end in rule.find(text, lowered)]
        kept: list[Finding] = []
        limit, line, counted = -1, 1, 0
        for start, _, order, end in sorted(spans):
            if start < limit or self._allowed(text, start, end):
                continue
            line, counted = line + text.count("\n", counted, start), start
            kept.append(Finding(self.rules[order].name, line, start, end))
            limit = end
        return kept

    def _allowed(self, text: str, start: int, end: int) -> bool:
        if not self.allow:
            return False
        stop = text.find("\n", end)
        line = text[text.rfind("\n", 0, start) + 1:len(text) if stop < 0 else stop]
        return any(p.search(text[start:end]) or p.search(line) for p in self.allow)

    def redact(self, text: str) -> Redaction:
        """The text with every finding replaced by its marker plus the newlines it spanned."""
        found = self.findings(text)
        if not found:
            return Redaction(text)
        parts: list[str] = []
        cursor = 0
        for f in found:
            parts += [text[cursor:f.start], marker(f.rule), "\n" * text.count("\n", f.start, f.end)]
            cursor = f.end
        parts.append(text[cursor:])
        return Redaction("".join(parts), tuple(found))
