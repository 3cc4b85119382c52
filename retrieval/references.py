"""Definitions and references of a symbol under the caller's ACL: lexical candidates confirmed by tree-sitter.

The full-text index (through the caller's filter, as grep and search see it) names the chunks holding the
identifier; their documents are parsed and only identifier nodes count (`indexer.chunking.occurrences`),
so mentions in strings and comments are never a definition or a use. References rank definition first,
then uses by proximity to a definition: the same file, the same directory, a file importing its module,
then the rest."""
from __future__ import annotations

import logging
import posixpath
import re
import time
from collections.abc import Collection, Iterator
from dataclasses import dataclass, replace

from indexer.catalog import Catalog
from indexer.chunking import Occurrence, mentions, module_name, occurrences
from indexer.identifiers import code_tokens
from indexer.models import Principal
from indexer.stores import FullTextIndex, LexicalQuery
from retrieval.permissions import Scope, build_filter, readable
from retrieval.query_analysis import QueryError

log = logging.getLogger(__name__)

MAX_SYMBOL_CHARS = 200
MAX_CANDIDATES = 500  # chunks fetched from the index per lookup
MAX_DOCUMENTS = 200  # documents parsed per lookup
TIME_BUDGET_SECONDS = 2.0  # parsing stops here (best lexical candidates first) and the answer says truncated
# Proximity tiers, best first.
DEFINITION, SAME_FILE, SAME_DIRECTORY, IMPORTER, ELSEWHERE = range(5)
# Import statements of the bundled languages, with Go's parenthesised block and CommonJS `require("…")`.
_IMPORTS = re.compile(r"^[ \t]*(?:from|import|use|using|require|include|#include|open)\b[^\n]*(?:\([^)]*\))?"
                      r"|\brequire\(\s*['\"][^'\"]+['\"]\s*\)", re.MULTILINE)


@dataclass(frozen=True)
class Reference:
    """A definition or a use of the symbol: `symbol` is the defined symbol, or the caller holding the use."""

    document_id: str
    source: str
    path: str
    language: str
    url: str
    line: int
    start_line: int
    end_line: int
    symbol: str
    definition: bool
    context: str
    proximity: int = ELSEWHERE


@dataclass
class References:
    references: list[Reference]
    truncated: bool  # more candidates or references exist than were returned


@dataclass(frozen=True)
class _Parsed:
    document_id: str
    source: str
    path: str
    language: str
    url: str
    content: str
    found: list[Occurrence]


def symbol_name(name: str) -> tuple[str, str]:
    """(the name as given, tidied; its last part): `Catalog.get_chunks` → ("Catalog.get_chunks", "get_chunks")."""
    qualified = name.strip()
    last = re.split(r"\.|::|#|->", qualified)[-1].strip()
    if not last or len(qualified) > MAX_SYMBOL_CHARS or not re.fullmatch(r"[\w$]+", last) or not code_tokens(last):
        raise QueryError("give a symbol name such as `render_invoice` or `Catalog.get_chunks`")
    return qualified.replace("::", ".").replace("#", "."), last


def _parsed(catalog: Catalog, fulltext: FullTextIndex, who: Principal, last: str, scope: Scope,
            stale: Collection[str], candidates: int, budget: float = TIME_BUDGET_SECONDS) -> tuple[list[_Parsed], bool]:
    """The readable documents holding `last` (best lexical match first) with its occurrences, and
    whether the candidate cap, the document cap or the time budget cut the list."""
    query = LexicalQuery(terms=((code_tokens(last)[0], 1.0),), identifiers=(last,))
    ids = [s.chunk_id for s in fulltext.search(query, build_filter(who, scope, stale), candidates)]
    rows = catalog.get_chunks(ids)
    # Only documents whose candidate chunks spell the name exactly (the index is case-insensitive and
    # splits identifiers) are read and parsed.
    doc_ids = list(dict.fromkeys(rows[i].doc_id for i in ids if i in rows and mentions(rows[i].content, last)))
    out: list[_Parsed] = []
    deadline = time.monotonic() + budget
    for index, doc_id in enumerate(doc_ids[:MAX_DOCUMENTS]):
        if time.monotonic() > deadline:
            log.info("references of a symbol: time budget spent after %d of %d documents", index, len(doc_ids))
            return out, True
        acl = catalog.document_acl(doc_id)
        doc = catalog.get_document(doc_id) if acl is not None else None
        if acl is None or doc is None or not readable(acl, doc.source, who, stale):
            continue  # changed since the index answered: what the caller may not read is not parsed
        found = occurrences(doc.content, doc.language, doc.path, last)
        if found:
            out.append(_Parsed(doc.id, doc.source, doc.path, doc.language, doc.url, doc.content, found))
    return out, len(ids) >= candidates or len(doc_ids) > MAX_DOCUMENTS


def _references(parsed: _Parsed) -> Iterator[Reference]:
    for o in parsed.found:
        yield Reference(document_id=parsed.document_id, source=parsed.source, path=parsed.path,
                        language=parsed.language, url=parsed.url, line=o.line, start_line=o.start_line,
                        end_line=o.end_line, symbol=o.symbol, definition=o.definition, context=o.context)


def _qualified_first(definitions: list[Reference], qualified: str) -> list[Reference]:
    """Definitions whose symbol ends with the qualified name given (`Catalog.get_chunks`) before the others."""
    def exact(ref: Reference) -> bool:
        return ref.symbol == qualified or ref.symbol.endswith("." + qualified)
    return [d for d in definitions if exact(d)] + [d for d in definitions if not exact(d)]


def find_definitions(catalog: Catalog, fulltext: FullTextIndex, who: Principal, name: str, scope: Scope,
                     stale: Collection[str], limit: int, candidates: int = MAX_CANDIDATES,
                     budget: float = TIME_BUDGET_SECONDS) -> list[Reference]:
    """Definitions of `name` (tree-sitter definition nodes only), those matching a qualified name first;
    parsing stops after `budget` seconds."""
    qualified, last = symbol_name(name)
    parsed, _ = _parsed(catalog, fulltext, who, last, scope, stale, candidates, budget)
    definitions = [r for p in parsed for r in _references(p) if r.definition]
    return _qualified_first(definitions, qualified)[:limit]


def find_references(catalog: Catalog, fulltext: FullTextIndex, who: Principal, name: str, scope: Scope,
                    stale: Collection[str], limit: int, candidates: int = MAX_CANDIDATES) -> References:
    """Definitions then uses of `name`, uses ranked by proximity to a definition. When a qualified name
    (`Invoice.render`) matches some definitions, only those anchor the ranking."""
    qualified, last = symbol_name(name)
    parsed, cut = _parsed(catalog, fulltext, who, last, scope, stale, candidates)
    every = [r for p in parsed for r in _references(p)]
    definitions = [r for r in every if r.definition]
    anchors = [d for d in definitions if d.symbol == qualified or d.symbol.endswith("." + qualified)] or definitions
    importers = _importers(parsed, anchors)
    uses = sorted((replace(r, proximity=_proximity(r, anchors, importers)) for r in every if not r.definition),
                  key=lambda r: (r.proximity, r.source, r.path, r.line))
    ordered = [replace(d, proximity=DEFINITION) for d in _qualified_first(definitions, qualified)] + uses
    return References(ordered[:limit], cut or len(ordered) > limit)


def _proximity(ref: Reference, anchors: list[Reference], importers: set[str]) -> int:
    if any(a.document_id == ref.document_id for a in anchors):
        return SAME_FILE
    folder = posixpath.dirname(ref.path)
    if any(a.source == ref.source and posixpath.dirname(a.path) == folder for a in anchors):
        return SAME_DIRECTORY
    return IMPORTER if ref.document_id in importers else ELSEWHERE


def _importers(parsed: list[_Parsed], anchors: list[Reference]) -> set[str]:
    """Documents with an import statement naming a definition's module or package (its file stem or folder)."""
    targets = {module_name(a.path) for a in anchors} | {posixpath.basename(posixpath.dirname(a.path))
                                                        for a in anchors}
    targets.discard("")
    if not targets:
        return set()
    named = re.compile(r"\b(?:" + "|".join(map(re.escape, sorted(targets))) + r")\b")
    return {p.document_id for p in parsed
            if any(named.search(m.group(0)) for m in _IMPORTS.finditer(p.content))}
