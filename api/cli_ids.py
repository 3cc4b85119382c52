"""Ids at the terminal: tables show the shortest unique prefix, and every command taking an id accepts any
unique prefix of it (an ambiguous one is refused with the candidates)."""
from __future__ import annotations

from collections.abc import Iterable

from api.cli_errors import FAILURE, USAGE, fail

SHORT = 8  # the shortest prefix a table shows (uuid4: 16^8 ids, so collisions in one table are rare)
LISTED = 5  # candidates named when a prefix is ambiguous


def short_ids(ids: Iterable[str], minimum: int = SHORT) -> dict[str, str]:
    """Each id → its shortest prefix (at least `minimum` characters) that no other of these ids shares."""
    unique = sorted(set(ids))
    out = {}
    for i, full in enumerate(unique):
        neighbours = unique[max(i - 1, 0):i] + unique[i + 1:i + 2]  # sorted: only neighbours share the most
        shared = max((_common(full, other) for other in neighbours), default=0)
        out[full] = full[:max(minimum, shared + 1)]
    return out


def _common(a: str, b: str) -> int:
    n = 0
    for x, y in zip(a, b, strict=False):
        if x != y:
            break
        n += 1
    return n


def resolve_id(given: str, candidates: Iterable[str], what: str, listing: str) -> str:
    """The one candidate `given` names: itself, or the only one it is a prefix of. Otherwise a usage error
    that says how to find the id (`listing`: the command that lists them) or lists the candidates."""
    given = given.strip()
    matches = sorted({c for c in candidates if c.startswith(given)}) if given else []
    if given in matches:
        return given
    if len(matches) == 1:
        return matches[0]
    if not matches:
        fail(f"no {what} {given!r}", FAILURE, f"`{listing}` lists them (any unique start of an id will do)")
    named = ", ".join(matches[:LISTED]) + (f" and {len(matches) - LISTED} more" if len(matches) > LISTED else "")
    fail(f"{given!r} is the start of {len(matches)} {what} ids: {named}", USAGE, "give more characters of the id")
