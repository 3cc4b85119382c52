"""The shape every regex rule of the detector shares: a pattern, the group that is the secret, a check.

Kept apart from `detector` so the rule families (`detector`'s token formats, `contexts`' command lines,
calls and sentences) can each build rules without importing one another."""
from __future__ import annotations

import re
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass

from indexer.secrets.values import plausible_token

Check = Callable[[str, re.Match[str], str], bool]  # (secret, match, whole text) → redact?
# A rule's secret is its group `secret`, or whichever of these matched (a value single-quoted,
# double-quoted or bare: one regex group per way of writing it).
VALUE_GROUPS = ("secret", "sq", "dq", "bare")
# A value on a command line or in a sentence, quoted or not; never spans a line.
VALUE = r"""(?:'(?P<sq>[^'\n]{1,200}+)'|"(?P<dq>[^"\n]{1,200}+)"|(?P<bare>(?!-)[^\s'"`;|&<>(){}\[\]\\]{1,200}+))"""


@dataclass(frozen=True)
class PatternRule:
    """A regex whose secret group is the credential; `hints` (lower case) must occur in the text first.

    `lowered`: the regex runs on the lower-cased text (same offsets), instead of a slow IGNORECASE.
    Every quantifier is bounded and possessive where it can be, so no input makes a rule quadratic."""

    name: str
    pattern: re.Pattern[str]
    hints: tuple[str, ...]
    check: Check
    lowered: bool = False
    lines: re.Pattern[str] | None = None  # set for one-line rules: only lines holding a hint are searched
    anchor: re.Pattern[str] | None = None  # set when a match starts where this does: tried only there

    def find(self, text: str, lowered: str) -> Iterator[tuple[int, int]]:
        if self.hints and not any(h in lowered for h in self.hints):
            return
        groups = [g for g in VALUE_GROUPS if g in self.pattern.groupindex]
        subject = lowered if self.lowered else text
        for match in self._matches(subject, text, lowered):
            group = next((g for g in groups if match.group(g) is not None), None)
            if group is None:
                continue
            start, stop = match.span(group)
            if stop > start and self.check(text[start:stop], match, text):
                yield start, stop

    def _matches(self, subject: str, text: str, lowered: str) -> Iterator[re.Match[str]]:
        if self.anchor is not None:  # a regex cannot skip ahead to an alternation of words; `anchor` can
            line_end = LineEnds(lowered)
            for hit in self.anchor.finditer(lowered):
                match = self.pattern.match(subject, hit.start(), line_end(hit.end()))
                if match is not None:
                    yield match
            return
        for begin, end in self._ranges(text, lowered):
            yield from self.pattern.finditer(subject, begin, end)

    def _ranges(self, text: str, lowered: str) -> Iterator[tuple[int, int]]:
        """The whole text, or (for a one-line rule) each line with a hint, once: a rule whose regex cannot
        start with a literal would otherwise try every position of every file."""
        if self.lines is None:
            yield 0, len(text)
            return
        pos = 0
        while (hit := self.lines.search(lowered, pos)) is not None:
            begin = lowered.rfind("\n", 0, hit.start()) + 1
            end = lowered.find("\n", hit.end())
            end = len(lowered) if end < 0 else end
            yield begin, end
            pos = end + 1


class LineEnds:
    """The end of the line holding a position, each line's found once: searching for it from every hit
    would make one long line (a minified file, a hostile input) quadratic."""

    def __init__(self, text: str) -> None:
        self.text = text
        self.start = self.end = -1  # text[start:end] holds no newline

    def __call__(self, pos: int) -> int:
        if not self.start <= pos <= self.end:
            found = self.text.find("\n", pos)
            self.start, self.end = pos, len(self.text) if found < 0 else found
        return self.end


def literal_hits(lowered: str, words: tuple[str, ...]) -> Iterator[tuple[str, int]]:
    """Every position of each word (str.find scans far faster than a regex alternation of words)."""
    for word in words:
        at = lowered.find(word)
        while at >= 0:
            yield word, at
            at = lowered.find(word, at + len(word))


def token_check(secret: str, match: re.Match[str], text: str) -> bool:
    """The default check: a token by its shape (not a placeholder, entropy enough)."""
    return plausible_token(secret)


def pattern_rule(name: str, pattern: str, hints: Sequence[str], check: Check = token_check,
                 lowered: bool = False, one_line: bool = False, lines: str = "", anchor: str = "") -> PatternRule:
    """`one_line`: search only the lines holding a hint (or a match of `lines`, a narrower regex for them).
    `anchor`: a regex (run on the lower-cased text) for where a match starts; the rule is tried only there,
    up to the end of that line."""
    scope = re.compile(lines or "|".join(re.escape(h) for h in hints)) if one_line else None
    return PatternRule(name, re.compile(pattern), tuple(hints), check, lowered, scope,
                       re.compile(anchor) if anchor else None)
