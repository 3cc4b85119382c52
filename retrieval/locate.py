"""Locate: the files a task or a bug report needs, by a bounded multi-step retrieval without an LLM.

Steps, each under the caller's filter and within one time budget (a step that would start after the
deadline is skipped and the answer says so):
1. hybrid search over files (the searcher as `search` runs it) and, apart, over tickets, merge requests,
   pages and commits;
2. the traceback frames and paths the text names, resolved to indexed files; for the exceptions it quotes, the
   code holding their message's fixed words (where it was raised) and the definitions of the names in it;
3. the definitions of the identifiers the text names (tree-sitter, `retrieval.references`);
4. the files changed by the commits most like the text, and by the commits linked to the tickets and merge
   requests it names or finds (`retrieval.related`); those tickets' own frames and paths;
5. reference following: the definitions of what the best files' matching chunks call;
then a final rerank of the files by the sum of their weighted evidence. Each file comes back with a line
range and the evidence that chose it."""
from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Protocol

from connectors.git_history import COMMIT_KIND, references
from indexer.catalog import Catalog
from indexer.catalog.schema import DocumentRecord
from indexer.languages import canonical_language
from indexer.models import Principal, path_prefixes
from indexer.stores import FullTextIndex, LexicalQuery
from retrieval.grep import PatternError, grep
from retrieval.history import CommitHit, HistoryIndex, commit_hit
from retrieval.hits import Hit
from retrieval.mentions import calls, frame_lines, lookups, raised, variants
from retrieval.packing import estimate_tokens
from retrieval.permissions import Scope, StaleSources, build_filter, readable
from retrieval.query_analysis import AnalysedQuery, QueryError, analyse
from retrieval.references import find_definitions
from retrieval.related import own_key, related
from retrieval.rerank_features import is_test_path
from retrieval.search import HybridSearcher, SearchResult
from retrieval.similar_commits import similar_commits

log = logging.getLogger(__name__)

DEFAULT_BUDGET_SECONDS = 2.0
FILE_KINDS = ("code", "doc", "text")  # kinds whose documents are files with lines
LINKED_KINDS = ("issue", "merge_request", "page", COMMIT_KIND)
SEARCH_HITS = 50  # file chunks from the hybrid search
LINKED_HITS = 10  # tickets, merge requests, pages and commits from the second search
MAX_LOOKUPS = 8  # identifiers whose definitions are looked up, from the text
MAX_FOLLOWED = 3  # best files whose chunks' calls are followed to their definitions
CALLS_PER_FILE = 3
DEFINITION_CANDIDATES = 60  # chunks read per definition lookup
AMBIGUOUS = 4  # an identifier defined in more files than this says nothing about where to look
MAX_KEYS = 3  # ticket keys followed through `related`
PATH_CANDIDATES = 20  # chunks read per path lookup
CONTEXT_LINES = 12  # lines either side of a traceback frame's line
MAX_SHOWN_LINES = 80  # a file's range is shown from its start up to this many lines (the chunker's largest chunk):
# the strongest evidence can be the definition of a class thousands of lines long (on astropy, 26-38k tokens for one file)
MIN_STEP_SECONDS = 0.05  # a step never starts with less time than this left
SHOWN_PER_KIND = 3  # pieces of evidence of one kind listed per file (the rest are counted)
RAISE_MATCHES = 50  # lines read per message fragment
MORE = {"frame": "traceback frames", "path": "paths named", "definition": "definitions of names in the text",
        "raised": "matches of the error",
        "commit": "similar commits", "ticket": "links from tickets", "reference": "definitions top hits call"}


@dataclass(frozen=True)
class Weights:
    """How much each kind of evidence adds to a file's score (search rank r adds search / (1 + r))."""

    search: float = 1.0
    frame: float = 1.0  # the innermost project frame (where it failed); callers outward weigh frame / (1 + 2i)
    path: float = 0.5  # a path written in the text
    raised: float = 1.0  # raises the quoted error's message, or defines a name in it (as strong as the innermost
    # frame: a traceback passes through the callers of the faulty code, the error names the faulty code itself)
    definition: float = 0.35  # defines an identifier the text names (shared among the files defining it)
    commit: float = 0.25  # changed by the commit most like the text; later ones weigh commit / (1 + i)
    ticket: float = 0.3  # changed by a commit linked to a ticket, or named in a ticket found
    reference: float = 0.15  # defines what a top file's matching chunk calls


@dataclass(frozen=True)
class LocatedFile:
    document_id: str
    source: str
    path: str
    language: str
    url: str
    start_line: int
    end_line: int
    score: float
    symbol: str
    evidence: tuple[str, ...]  # why it was chosen, strongest first
    content: str  # the text of the line range
    tokens: int  # its estimated tokens


@dataclass
class LocateResult:
    files: list[LocatedFile]
    steps: list[str]  # the steps that ran, in order
    truncated: bool  # the budget stopped the retrieval before every step ran
    timings: dict[str, float] = field(default_factory=dict)  # seconds per step

    @property
    def tokens(self) -> int:
        return sum(f.tokens for f in self.files)


@dataclass
class _File:
    document_id: str
    source: str
    path: str
    score: float = 0.0
    evidence: list[tuple[float, str, str]] = field(default_factory=list)  # (weight, kind, why)
    span: tuple[float, int, int, str] | None = None  # (weight, start, end, symbol) of the strongest range
    search_rank: int | None = None
    kinds: dict[str, int] = field(default_factory=dict)  # pieces of evidence per kind

    def add(self, kind: str, weight: float, why: str, start: int = 0, end: int = 0, symbol: str = "") -> None:
        """Evidence of a kind the file has already gained counts half as much as the one before it (a file
        defining five names the text mentions is not five times as likely as one defining one)."""
        weight *= 0.5 ** self.kinds.get(kind, 0)
        self.kinds[kind] = self.kinds.get(kind, 0) + 1
        self.score += weight
        self.evidence.append((weight, kind, why))
        if start > 0 and (self.span is None or weight > self.span[0]):
            self.span = (weight, start, max(start, end), symbol)


class _Deadline:
    def __init__(self, seconds: float, clock: Callable[[], float]) -> None:
        self.clock = clock
        self.end = clock() + seconds

    def left(self) -> float:
        return self.end - self.clock()


class SearchEngine(Protocol):
    """What locate needs of a searcher: `HybridSearcher.search`, however wrapped (metrics, generations)."""

    def search(self, text: str, principal: Principal | None, scope: Scope = ...,
               limit: int = 10) -> SearchResult: ...


class Locator:
    """Locate over one index; stateless between calls (safe to share between request threads)."""

    def __init__(self, searcher: SearchEngine, catalog: Catalog, fulltext: FullTextIndex, stale: StaleSources,
                 history: HistoryIndex | None, weights: Weights | None = None,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.searcher, self.catalog, self.fulltext, self.stale = searcher, catalog, fulltext, stale
        self.history = history
        self.weights = weights or Weights()
        self.clock = clock

    @classmethod
    def over(cls, searcher: HybridSearcher, history: HistoryIndex | None) -> Locator:
        """A locator over a HybridSearcher's own index and stale-source cache."""
        return cls(searcher, searcher.catalog, searcher.fulltext, searcher.stale, history)

    def locate(self, text: str, who: Principal, scope: Scope = Scope(), limit: int = 10,
               budget: float = DEFAULT_BUDGET_SECONDS) -> LocateResult:
        if budget <= 0:
            raise QueryError("the time budget must be more than 0 seconds")
        run = _Run(self, text, who, scope, _Deadline(budget, self.clock))
        return run.go(limit)


class _Run:
    """One locate request: the evidence gathered per file, step by step."""

    def __init__(self, locator: Locator, text: str, who: Principal, scope: Scope, deadline: _Deadline) -> None:
        self.searcher, self.history, self.w = locator.searcher, locator.history, locator.weights
        self.catalog, self.fulltext = locator.catalog, locator.fulltext
        self.text, self.who, self.deadline = text, who, deadline
        self.query: AnalysedQuery = analyse(text)
        self.scope = Scope(sources=scope.sources, path_prefixes=scope.path_prefixes, languages=scope.languages,
                           kinds=tuple(k for k in scope.kinds if k in FILE_KINDS) or FILE_KINDS)
        self.stale = locator.stale.current()
        self.filter = build_filter(who, self.scope, self.stale)  # raises ScopeError for a bad scope, up front
        self.files: dict[str, _File] = {}
        self.docs: dict[str, DocumentRecord | None] = {}
        self.linked: list[Hit] = []
        self.steps: list[str] = []
        self.timings: dict[str, float] = {}
        self.truncated = False

    def go(self, limit: int) -> LocateResult:
        steps: list[tuple[str, Callable[[], None]]] = [
            ("search", self.search), ("frames", self.frames), ("errors", self.errors), ("definitions", self.definitions),
            ("commits", self.commits), ("tickets", self.tickets), ("references", self.follow)]
        for index, (name, step) in enumerate(steps):
            if index and self.deadline.left() < MIN_STEP_SECONDS:
                self.truncated = True
                log.info("locate: time budget spent before the %s step", name)
                break
            t = time.perf_counter()
            step()
            self.timings[name] = time.perf_counter() - t
            self.steps.append(name)
        return LocateResult(self.ranked(limit), self.steps, self.truncated, self.timings)

    # -- the files -------------------------------------------------------------------------------

    def file(self, source: str, path: str) -> _File | None:
        """The entry of an indexed file the caller may read within the scope (None otherwise)."""
        doc_id = f"{source}:{path}"
        if doc_id in self.files:
            return self.files[doc_id]
        doc = self.document(doc_id)
        if doc is None or not self.in_scope(doc):
            return None
        return self.files.setdefault(doc_id, _File(doc_id, source, path))

    def in_scope(self, doc: DocumentRecord) -> bool:
        """The scope as the engines' filter applies it (files reached through commits and tickets skip it)."""
        flt = self.filter
        return (doc.kind in FILE_KINDS and (not flt.sources or doc.source in flt.sources)
                and (not flt.languages or canonical_language(doc.language) in flt.languages)
                and (not flt.path_prefixes or bool(set(flt.prefix_values()) & set(path_prefixes(doc.path)))))

    def document(self, doc_id: str) -> DocumentRecord | None:
        """The stored document if the caller may read it (the document route's rule), its text read only then;
        once per request."""
        if doc_id not in self.docs:
            self.docs[doc_id] = self._document(doc_id)
        return self.docs[doc_id]

    def _document(self, doc_id: str) -> DocumentRecord | None:
        acl = self.catalog.document_acl(doc_id)
        source = self.catalog.sources_of([doc_id]).get(doc_id) if acl is not None else None
        if acl is None or source is None or not readable(acl, source, self.who, self.stale):
            return None
        return self.catalog.get_document(doc_id)

    def resolve(self, path: str) -> list[_File]:
        """Readable indexed files whose path is `path` or ends with it (whole parts), shortest first."""
        wanted = path.strip("/").lower()
        if not wanted or self.deadline.left() <= 0:
            return []
        query = LexicalQuery(terms=(), paths=(path,))
        ids = [s.chunk_id for s in self.fulltext.search(query, self.filter, PATH_CANDIDATES)]
        found: dict[str, tuple[str, str]] = {}
        for row in self.catalog.get_chunks(ids).values():
            have = row.path.lower()
            if have == wanted or have.endswith("/" + wanted) or wanted.endswith("/" + have):
                found.setdefault(row.doc_id, (row.source, row.path))
        files = [self.file(s, p) for s, p in sorted(found.values(), key=lambda sp: (len(sp[1]), sp))]
        return [f for f in files if f is not None]

    # -- the steps -------------------------------------------------------------------------------

    def search(self) -> None:
        """File chunks from the hybrid search (rank r adds search / (1 + r)), and apart the tickets, merge
        requests, pages and commits most like the text (followed by later steps)."""
        result = self.searcher.search(self.text, self.who, self.scope, limit=SEARCH_HITS)
        for hit in result.hits:
            if hit.doc_id not in self.files:
                entry = self.files.setdefault(hit.doc_id, _File(hit.doc_id, hit.source, hit.path))
                entry.search_rank = len(self.files) - 1
                what = f" ({hit.symbol})" if hit.symbol else ""
                entry.add("search", self.w.search / (1 + entry.search_rank), f"search rank {entry.search_rank + 1}{what}",
                          hit.start_line, hit.end_line, hit.symbol)
        if self.deadline.left() > MIN_STEP_SECONDS:
            others = Scope(sources=self.scope.sources, kinds=LINKED_KINDS)
            self.linked = self.searcher.search(self.text, self.who, others, limit=LINKED_HITS).hits

    def frames(self) -> None:
        """Traceback frames (innermost first) and paths written in the text, resolved to indexed files."""
        self.mentioned(self.query, self.text, "", self.w.frame, self.w.path)

    def mentioned(self, query: AnalysedQuery, text: str, where: str, frame_weight: float, path_weight: float) -> None:
        lines = frame_lines(text)
        for i, path in enumerate(query.frame_paths):
            line, func = lines.get(path, (0, ""))
            at = f"{path}:{line}" if line else path
            why = f"matched traceback frame {at}" + (f" (in {func})" if func else "") + where
            for entry in self.resolve(path):
                start, end = (max(1, line - CONTEXT_LINES), line + CONTEXT_LINES) if line else (0, 0)
                entry.add("frame", frame_weight / (1 + 2 * i), why, start, end, func)
        for path in query.paths:
            if path not in query.frame_paths:
                for entry in self.resolve(path):
                    entry.add("path", path_weight, f"path {path} named in the text{where}")

    def errors(self) -> None:
        """For each exception the text quotes (`retrieval.mentions.raised`): the code files (tests apart) holding a
        fixed word run of its message, and the files defining a name in it, each shared among at most AMBIGUOUS."""
        code = Scope(sources=self.scope.sources, path_prefixes=self.scope.path_prefixes, languages=self.scope.languages,
                     kinds=tuple(k for k in self.scope.kinds if k == "code"))  # a raise is in code, if code is asked
        for error in raised(self.text):
            for fragment in error.fragments if code.kinds else ():
                if self.deadline.left() < MIN_STEP_SECONDS:
                    self.truncated = True
                    return
                words, lines = self.raising(fragment, code)
                for (source, path), line in lines.items():
                    if (entry := self.file(source, path)) is not None:
                        entry.add("raised", self.w.raised / len(lines), f"holds “{_short(words)}” of the "
                                  f"{error.name} in the text (line {line})", max(1, line - CONTEXT_LINES),
                                  line + CONTEXT_LINES)
            for ident in error.identifiers[:MAX_LOOKUPS]:  # code by their syntax: no stop-word test (`RST`)
                if self.deadline.left() < MIN_STEP_SECONDS:
                    self.truncated = True
                    return
                self.define(ident, "raised", self.w.raised, f"defines `{ident}` named by the {error.name} in the text")

    def raising(self, fragment: str, code: Scope) -> tuple[str, dict[tuple[str, str], int]]:
        """The code files (tests apart) with a line holding the message's word run, or failing that the run
        without a word at either edge, and that line; none when more than AMBIGUOUS files hold it (or the
        matches ran out before every file was seen: a shorter run is held by more)."""
        for words in variants(fragment):
            try:
                found = grep(self.catalog, self.fulltext, self.who, words, code, limit=RAISE_MATCHES, stale=self.stale)
            except PatternError:
                continue
            lines: dict[tuple[str, str], int] = {}
            for match in found.matches:
                if not is_test_path(match.path):
                    lines.setdefault((match.source, match.path), match.line)
            if len(lines) > AMBIGUOUS or found.truncated:
                return words, {}
            if lines:
                return words, lines
        return fragment, {}

    def definitions(self) -> None:
        """Files defining the identifiers the text names, a weight shared among the files defining each."""
        for ident in lookups(self.query.identifiers, MAX_LOOKUPS):
            if self.deadline.left() < MIN_STEP_SECONDS:
                self.truncated = True
                return
            self.define(ident, "definition", self.w.definition, f"defines `{ident}` named in the text")

    def define(self, ident: str, kind: str, weight: float, why: str) -> bool:
        try:
            found = find_definitions(self.catalog, self.fulltext, self.who, ident, self.scope, self.stale, 20,
                                     candidates=DEFINITION_CANDIDATES, budget=max(self.deadline.left(), 0.01))
        except QueryError:
            return False
        by_file: dict[tuple[str, str], tuple[int, int, str]] = {}
        for d in found:
            by_file.setdefault((d.source, d.path), (d.start_line, d.end_line, d.symbol))
        if not by_file or len(by_file) > AMBIGUOUS:
            return False
        for (source, path), (start, end, symbol) in by_file.items():
            entry = self.file(source, path)
            if entry is not None:
                entry.add(kind, weight / len(by_file), why, start, end, symbol)
        return True

    def commits(self) -> None:
        """Files changed by the commits most like the text (`retrieval.similar_commits`: commits touching many
        files are left out)."""
        ids = dict.fromkeys(h.doc_id for h in self.linked if h.kind == COMMIT_KIND)  # a commit once
        for similar in similar_commits(self.commit(doc_id) for doc_id in ids):
            commit = similar.commit
            for path in commit.paths:
                entry = self.file(commit.source, path)
                if entry is not None:
                    entry.add("commit", self.w.commit * similar.share, f"changed by commit {commit.sha[:12]} "
                              f"“{_short(commit.subject)}” (like the text)")
            if self.deadline.left() <= 0:
                break

    def commit(self, doc_id: str) -> CommitHit | None:
        doc = self.document(doc_id) if self.deadline.left() > 0 else None
        return commit_hit(doc) if doc is not None else None

    def tickets(self) -> None:
        """Tickets and merge requests named in the text or found by the search: the files their linked
        commits changed, and the frames and paths their own text names."""
        keys = list(references(self.text))
        tickets: dict[str, Hit] = {}
        for h in self.linked:
            if h.kind != COMMIT_KIND:
                tickets.setdefault(h.doc_id, h)  # each ticket once, best rank first
        for hit in tickets.values():
            if self.deadline.left() <= 0:
                break
            doc = self.document(hit.doc_id)
            if doc is None:
                continue
            key = own_key(doc) or doc.title or doc.path
            if own_key(doc):
                keys.append(own_key(doc))
            try:
                named = analyse(doc.content)
            except QueryError:
                continue  # a ticket without text names nothing
            self.mentioned(named, doc.content, f" of {hit.kind.replace('_', ' ')} {key}", self.w.ticket, self.w.ticket)
        if self.history is None:
            return
        for key in list(dict.fromkeys(keys))[:MAX_KEYS]:
            if self.deadline.left() < MIN_STEP_SECONDS:
                self.truncated = True
                return
            for item in related(self.history, self.who, key, 30, self.stale).items:
                if item.kind in FILE_KINDS and (entry := self.file(item.source, item.path)) is not None:
                    entry.add("ticket", self.w.ticket, f"{item.via}, linked to {key}")

    def follow(self) -> None:
        """Reference following: what the best files' search chunks call and the text names in words is
        looked up, and the files defining it gain (`referenced by top hit …`)."""
        terms = set(self.query.terms)
        best = sorted((f for f in self.files.values() if f.span is not None), key=lambda f: -f.score)[:MAX_FOLLOWED]
        for entry in best:
            assert entry.span is not None
            _, start, end, _ = entry.span
            chunk = self.lines(entry.document_id, start, end)
            for name in calls(chunk, terms)[:CALLS_PER_FILE]:
                if self.deadline.left() < MIN_STEP_SECONDS:
                    self.truncated = True
                    return
                self.define(name, "reference", self.w.reference, f"defines `{name}`, referenced by top hit {entry.path}")

    # -- the answer ------------------------------------------------------------------------------

    def lines(self, doc_id: str, start: int, end: int) -> str:
        doc = self.document(doc_id)
        return "\n".join(doc.content.split("\n")[start - 1:end]) if doc is not None else ""

    def ranked(self, limit: int) -> list[LocatedFile]:
        chosen = sorted(self.files.values(), key=lambda f: (-f.score, f.search_rank if f.search_rank is not None
                                                            else math.inf, f.document_id))
        out: list[LocatedFile] = []
        for entry in chosen:
            if len(out) >= limit:
                break
            doc = self.document(entry.document_id)
            if doc is None or not self.in_scope(doc):
                continue
            out.append(located(entry, doc))
        return out


def located(entry: _File, doc: DocumentRecord) -> LocatedFile:
    lines = doc.content.split("\n")
    _, start, end, symbol = entry.span or (0.0, 1, min(len(lines), 2 * CONTEXT_LINES), "")
    start = min(start, len(lines))
    end = min(end, len(lines), start + MAX_SHOWN_LINES - 1)
    evidence = shown_evidence(entry.evidence)
    content = "\n".join(lines[start - 1:end])
    return LocatedFile(document_id=doc.id, source=doc.source, path=doc.path, language=doc.language, url=doc.url,
                       start_line=start, end_line=end, score=round(entry.score, 6), symbol=symbol,
                       evidence=evidence, content=content, tokens=estimate_tokens(content))


def shown_evidence(evidence: Sequence[tuple[float, str, str]]) -> tuple[str, ...]:
    """The evidence strongest first, at most SHOWN_PER_KIND pieces of a kind, then how many more of each."""
    shown: list[str] = []
    seen: dict[str, int] = {}
    more: dict[str, int] = {}
    for _, kind, why in sorted(evidence, key=lambda e: -e[0]):
        seen[kind] = seen.get(kind, 0) + 1
        if seen[kind] <= SHOWN_PER_KIND:
            shown.append(why)
        else:
            more[kind] = more.get(kind, 0) + 1
    return tuple(shown + [f"and {n} more {MORE.get(kind, kind)}" for kind, n in more.items()])


def _short(text: str, width: int = 60) -> str:
    return text if len(text) <= width else text[:width - 1] + "…"
