"""Turns a caller (Principal) and a requested scope into the engine filter; fails closed."""
from __future__ import annotations

from dataclasses import dataclass

from indexer.models import KINDS, Principal
from indexer.stores import SearchFilter


class ScopeError(ValueError):
    """A scope value that cannot be honoured (unknown kind, malformed path prefix)."""


@dataclass(frozen=True)
class Scope:
    """What the caller asked to search within; empty means everything they may read."""

    sources: tuple[str, ...] = ()
    path_prefixes: tuple[str, ...] = ()
    languages: tuple[str, ...] = ()
    kinds: tuple[str, ...] = ()


def build_filter(principal: Principal | None, scope: Scope = Scope()) -> SearchFilter:
    """The filter both engines apply. No principal → a filter that matches nothing."""
    for kind in scope.kinds:
        if kind not in KINDS:
            raise ScopeError(f"unknown kind {kind!r}; expected one of {', '.join(KINDS)}")
    for prefix in scope.path_prefixes:
        if ".." in prefix.split("/") or "\0" in prefix:
            raise ScopeError(f"bad path prefix {prefix!r}")
    principals = tuple(principal.principals()) if principal else ()
    return SearchFilter(principals=principals, sources=tuple(scope.sources),
                        path_prefixes=tuple(p for p in scope.path_prefixes if p.strip("/")),
                        languages=tuple(scope.languages), kinds=tuple(scope.kinds))
