"""Tantivy full-text index: one shared index for every source, BM25 over code tokens, ACL and scope
inside the query.

Layout: `root/shared/` holds the index. Indexes written before INDEX_VERSION 3 kept one index per
source (`root/<slug-hash>/`, with the source's name in `source.txt`); such a root is still opened in
that layout (it serves, and takes writes, until the background rebuild replaces its generation).
One index instead of one per source: a query is one search instead of one per source (at twenty
sources and a million chunks 2.3x less CPU; at hundreds of repositories the per-source layout would
spend most of a query opening shards), and BM25 statistics are the same for every source.

Commits (kind `commit`) live in a second index, `root/history/` (INDEX_VERSION 5): thousands of short
commit messages in the code's index changed its BM25 statistics (document frequencies, average length)
and with them the ranking of code that plain search, which leaves commits out, returns (on the 13
psf/requests dev instances acc@5 0.923 without the commits in the index, 0.846 with them). A query that
admits commits reads both indexes and merges by score."""
from __future__ import annotations

import hashlib
import logging
import re
import threading
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import cast

import tantivy

from indexer.identifiers import MAX_TOKEN_BYTES, code_tokens, expand_identifiers
from indexer.models import KINDS, Chunk, path_prefixes
from indexer.stores import LexicalQuery, ScoredId, SearchFilter, StoreError

log = logging.getLogger(__name__)

ANALYZER = "cairn_code"  # simple tokenizer + long-token removal + lowercase, registered on every open
KEYWORD_FIELDS = ("chunk_id", "doc_id", "source", "acl", "kind", "language", "path_prefix")
TEXT_FIELDS = ("content", "symbol", "path")
FACET_FIELDS = ("source", "kind", "language")  # keyword fields whose values the web UI counts
_SOURCE_FILE = "source.txt"  # legacy per-source layout: the shard's source name
_INDEX_DIR = "tantivy"
SHARED_DIR = "shared"  # the one index of the shared layout
HISTORY_DIR = "history"  # the shared layout's index of commits
HISTORY_KIND = "commit"
_UNSAFE = re.compile(r"[^A-Za-z0-9_-]+")
# Writer defaults (bench/indexing.py --writer-threads compares them): heap shared by the indexing
# threads. One thread: a sync commits every batch (~1-2k chunks), so more threads only cut each
# commit into more small segments to merge later, while chunking already keeps the other core busy
# (measured ~13% fewer CPU-seconds per chunk than tantivy's one-per-core default on 2 cores).
WRITER_HEAP_BYTES = 128_000_000
WRITER_THREADS = 1
DELETE_BATCH = 512  # chunk ids per delete query in the shared index


@dataclass(frozen=True)
class FieldBoosts:
    """How much a match in each field counts. Filters never score; only these clauses do."""

    content: float = 1.0
    symbol: float = 2.0
    path: float = 1.5
    identifier: float = 2.0  # whole identifiers as typed, against symbol and path
    phrase: float = 2.0  # exact phrases against content


def build_schema() -> tantivy.Schema:
    builder = tantivy.SchemaBuilder()
    builder.add_text_field("chunk_id", stored=True, tokenizer_name="raw", index_option="basic")
    for name in KEYWORD_FIELDS[1:]:
        builder.add_text_field(name, tokenizer_name="raw", index_option="basic")
    for name in TEXT_FIELDS:
        builder.add_text_field(name, tokenizer_name=ANALYZER, index_option="position")
    return builder.build()


def code_analyzer() -> tantivy.TextAnalyzer:
    """The analyzer for text fields; indexed text is pre-expanded by `expand_identifiers`."""
    return (
        tantivy.TextAnalyzerBuilder(tantivy.Tokenizer.simple())
        .filter(tantivy.Filter.remove_long(MAX_TOKEN_BYTES))
        .filter(tantivy.Filter.lowercase())
        .build()
    )


def shard_dirname(source: str) -> str:
    """A directory name for any source name: a readable slug plus a hash, never a path."""
    slug = _UNSAFE.sub("-", source).strip("-")[:40] or "source"
    return f"{slug}-{hashlib.sha256(source.encode('utf-8', 'surrogatepass')).hexdigest()[:12]}"


def tantivy_document(chunk: Chunk, chunk_id: str, expanded: Mapping[str, str] | None = None) -> tantivy.Document:
    """`expanded`: identifier expansions of the chunk's texts computed elsewhere (a batch-preparing
    worker); any text it lacks is expanded here."""
    def expand(text: str) -> str:
        known = expanded.get(text) if expanded else None
        return expand_identifiers(text) if known is None else known

    doc = tantivy.Document(
        chunk_id=chunk_id,
        doc_id=chunk.doc_id,
        source=chunk.source,
        acl=list(chunk.acl),
        kind=chunk.kind,
        path_prefix=path_prefixes(chunk.path),
        content=expand(chunk.content),
        symbol=expand(chunk.symbol),
        path=expand(chunk.path),
    )
    if chunk.language:
        doc.add_text("language", chunk.language)
    return doc


class _Shard:
    """One tantivy index (the shared one, or a legacy source's) with its lazily opened, process-long writer."""

    def __init__(self, source: str, directory: Path, schema: tantivy.Schema, heap: int, threads: int):
        self.source = source
        self.directory = directory
        index_dir = directory / _INDEX_DIR
        index_dir.mkdir(parents=True, exist_ok=True)
        try:
            self.index = tantivy.Index(schema, path=str(index_dir), reuse=True)
        except (ValueError, OSError) as exc:
            raise StoreError(f"cannot open full-text index {index_dir}: {exc}") from exc
        self.index.register_tokenizer(ANALYZER, code_analyzer())
        self._heap, self._threads = heap, threads
        self._writer: tantivy.IndexWriter | None = None
        self.dirty = False
        self._meta = index_dir / "meta.json"
        self._seen = self._stamp()

    def _stamp(self) -> int:
        try:
            return self._meta.stat().st_mtime_ns
        except FileNotFoundError:
            return 0

    def searcher(self) -> tantivy.Searcher:
        """A searcher over the last commit, including commits made by other processes since the
        last search (tantivy's own reload watcher is not relied on: a stat per search is cheaper)."""
        stamp = self._stamp()
        if stamp != self._seen:
            self.index.reload()
            self._seen = stamp
        return self.index.searcher()

    def writer(self) -> tantivy.IndexWriter:
        if self._writer is None:
            try:
                self._writer = self.index.writer(heap_size=self._heap, num_threads=self._threads)
            except ValueError as exc:
                raise StoreError(
                    f"full-text index of {self.source} at {self.directory} is in use by another "
                    f"process (its writer lock is held); stop that process or write through it: {exc}"
                ) from exc
        return self._writer

    def commit(self) -> None:
        if self._writer is not None and self.dirty:
            self._writer.commit()
            self.index.reload()
            self.dirty = False

    def close(self) -> None:
        self.commit()
        if self._writer is not None:
            self._writer.wait_merging_threads()  # consumes the writer and releases its lock
            self._writer = None


class TantivyIndex:
    """`FullTextIndex` over tantivy: one index under `root/shared/` (or a legacy root's per-source
    indexes), one writer per index per process."""

    def __init__(self, root: Path, boosts: FieldBoosts = FieldBoosts(),
                 writer_heap_bytes: int | None = None, writer_threads: int | None = None):
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)
        self.boosts = boosts
        self.schema = build_schema()
        self._heap = WRITER_HEAP_BYTES if writer_heap_bytes is None else writer_heap_bytes
        self._threads = WRITER_THREADS if writer_threads is None else writer_threads
        self._shards: dict[str, _Shard] = {}
        self._listing: tuple[int, tuple[str, ...]] | None = None  # (root mtime, sources) cache
        self._lock = threading.RLock()
        self._closed = False
        self.legacy = not (self.root / SHARED_DIR).exists() and any(self.root.glob(f"*/{_SOURCE_FILE}"))
        self._shared = None if self.legacy else _Shard(
            "all sources", self.root / SHARED_DIR, self.schema, self._heap, self._threads)
        self._history = None if self.legacy else _Shard(
            "commits", self.root / HISTORY_DIR, self.schema, self._heap, self._threads)

    # -- shards ---------------------------------------------------------------------------------

    @property
    def per_source_writers(self) -> bool:
        return self.legacy

    def _shard(self, source: str, create: bool, kind: str = "") -> _Shard | None:
        with self._lock:
            if self._closed:
                raise StoreError("full-text index is closed")
            if self._shared is not None:
                return self._history if kind == HISTORY_KIND and self._history is not None else self._shared
            shard = self._shards.get(source)
            if shard is not None:
                return shard
            directory = self.root / shard_dirname(source)
            if not (directory / _SOURCE_FILE).exists():
                if not create:
                    return None
                directory.mkdir(parents=True, exist_ok=True)
                (directory / _SOURCE_FILE).write_text(source, encoding="utf-8", errors="surrogatepass")
            shard = _Shard(source, directory, self.schema, self._heap, self._threads)
            self._shards[source] = shard
            return shard

    def _open_shards(self) -> list[_Shard]:
        if self._shared is not None:
            return [s for s in (self._shared, self._history) if s is not None]
        return list(self._shards.values())

    def sources(self) -> list[str]:
        """Every source with chunks in the index (including ones written by other processes)."""
        if self._shared is not None:
            live = tantivy.Query.all_query()
            return sorted({term for shard in self._open_shards()
                           for term, _ in self._searcher(shard).terms_with_prefix("source", "", filter_query=live)})
        # Legacy layout: listed again only when the root directory changed (a shard was added or
        # removed), not on every query: at twenty sources the glob and marker reads cost more than a search.
        stamp = self.root.stat().st_mtime_ns
        with self._lock:
            if self._listing is not None and self._listing[0] == stamp:
                return list(self._listing[1])
        names = [marker.read_text(encoding="utf-8", errors="surrogatepass")
                 for marker in sorted(self.root.glob(f"*/{_SOURCE_FILE}"))]
        with self._lock:
            self._listing = (stamp, tuple(names))
        return names

    def _searcher(self, shard: _Shard) -> tantivy.Searcher:
        if self._closed:
            raise StoreError("full-text index is closed")
        return shard.searcher()

    def _shards_for(self, sources: Iterable[str] | None, kinds: Sequence[str] = ()) -> list[_Shard]:
        """The indexes to read for these sources (None: all of them) and kinds (empty: every kind): the
        index of commits only when commits are admitted."""
        if self._shared is not None:
            if self._history is None or (kinds and HISTORY_KIND not in kinds):
                return [self._shared]
            return [self._shared, self._history]
        shards = (self._shard(s, create=False) for s in (self.sources() if sources is None else sources))
        return [s for s in shards if s is not None]

    # -- writes ---------------------------------------------------------------------------------

    def upsert(self, chunks: Sequence[Chunk], expanded: Mapping[str, str] | None = None) -> None:
        """Replace each chunk by id (delete-then-add), so applying a batch twice changes nothing.
        `expanded`: identifier expansions already computed for some of the chunks' texts."""
        by_source: dict[tuple[str, bool], list[Chunk]] = defaultdict(list)
        for chunk in chunks:
            by_source[chunk.source, chunk.kind == HISTORY_KIND].append(chunk)
        for (source, commits), group in by_source.items():
            shard = self._shard(source, create=True, kind=HISTORY_KIND if commits else "")
            assert shard is not None  # create=True opens one or raises
            with self._lock:
                writer = shard.writer()
                for chunk in group:
                    chunk_id = chunk.id  # a hash over the content: compute it once
                    writer.delete_documents_by_term("chunk_id", chunk_id)
                    writer.add_document(tantivy_document(chunk, chunk_id, expanded))
                shard.dirty = True
        log.debug("full-text upsert: %d chunks in %d sources", len(chunks), len(by_source))

    def delete(self, source: str, chunk_ids: Iterable[str]) -> None:
        ids = list(chunk_ids)
        if self._shared is None:
            shard = self._shard(source, create=False)
            if shard is None:
                return
            with self._lock:
                writer = shard.writer()
                for chunk_id in ids:
                    writer.delete_documents_by_term("chunk_id", chunk_id)
                shard.dirty = True
            return
        if not ids:
            return
        of_source = tantivy.Query.term_query(self.schema, "source", source)
        with self._lock:
            # the shared indexes: only this source's chunks, whatever ids are passed; an id is a commit's or
            # a chunk's, and deleting an absent id costs nothing, so both indexes are asked
            for shard in self._open_shards():
                writer = shard.writer()
                for start in range(0, len(ids), DELETE_BATCH):
                    listed = tantivy.Query.boolean_query(
                        [(tantivy.Occur.Should, tantivy.Query.term_query(self.schema, "chunk_id", cid))
                         for cid in ids[start:start + DELETE_BATCH]])
                    writer.delete_documents_by_query(tantivy.Query.boolean_query(
                        [(tantivy.Occur.Must, of_source), (tantivy.Occur.Must, listed)]))
                shard.dirty = True

    def commit(self) -> None:
        """Commit every writer with pending changes; committed chunks are searchable on return."""
        with self._lock:
            for shard in self._open_shards():
                try:
                    shard.commit()
                except ValueError as exc:
                    raise StoreError(f"commit of full-text index of {shard.source} failed: {exc}") from exc

    def close(self) -> None:
        """Commit pending changes, release writer locks and forget the open indexes."""
        with self._lock:
            if self._closed:
                return
            for shard in self._open_shards():
                shard.close()
            self._shards.clear()
            self._closed = True

    # -- reads ----------------------------------------------------------------------------------

    def search(self, query: LexicalQuery, flt: SearchFilter, limit: int) -> list[ScoredId]:
        """BM25 over the shards in scope, the SearchFilter as non-scoring MUST clauses, merged by score."""
        if flt.matches_nothing or limit <= 0:
            return []
        text = self._text_query(query)
        if text is None:
            return []
        full = tantivy.Query.boolean_query(
            [(tantivy.Occur.Must, text)] + [(tantivy.Occur.Must, f) for f in self._filter_clauses(flt)]
            + [(tantivy.Occur.MustNot, f) for f in self._excluded_clauses(flt)]
        )
        found: list[tuple[float, tantivy.Searcher, tantivy.DocAddress]] = []
        for shard in self._shards_for(flt.sources or None, flt.kinds):
            searcher = self._searcher(shard)
            found += [(float(score), searcher, address) for score, address in _top(searcher, full, limit)]
        # Stored ids are read only for the top `limit` (plus ties at the cut, which the id breaks;
        # in the legacy layout: of all shards merged, not each shard's top `limit`).
        found.sort(key=lambda f: -f[0])
        if len(found) > limit:
            cut = found[limit - 1][0]
            found = [f for f in found if f[0] >= cut]
        merged = [ScoredId(cast(str, searcher.doc(address).get_first("chunk_id")), score) for score, searcher, address in found]
        merged.sort(key=lambda h: (-h.score, h.chunk_id))
        return merged[:limit]

    def facet_counts(self, query: LexicalQuery | None, flt: SearchFilter, field: str) -> dict[str, int]:
        """Per value of the keyword field `field` (`source`, `kind`, `language`), how many chunks match
        `query` (every chunk when None) under the SearchFilter, read from the term dictionary; values
        with no such chunk are absent."""
        if field not in FACET_FIELDS:
            raise ValueError(f"not a facet field: {field!r}; expected one of {', '.join(FACET_FIELDS)}")
        if flt.matches_nothing:
            return {}
        text = tantivy.Query.all_query() if query is None else self._text_query(query)
        if text is None:
            return {}
        full = tantivy.Query.boolean_query(
            [(tantivy.Occur.Must, text)] + [(tantivy.Occur.Must, f) for f in self._filter_clauses(flt)]
            + [(tantivy.Occur.MustNot, f) for f in self._excluded_clauses(flt)]
        )
        counts: dict[str, int] = defaultdict(int)
        for shard in self._shards_for(flt.sources or None, flt.kinds):
            for value, count in self._searcher(shard).terms_with_prefix(field, "", filter_query=full):
                if count:
                    counts[value] += count
        return dict(counts)

    def ids(self, source: str | None = None) -> set[str]:
        """Ids of the live (committed, not deleted) chunks of one source or of all sources."""
        out: set[str] = set()
        live = tantivy.Query.all_query()
        if self._shared is not None and source is not None:
            live = tantivy.Query.term_query(self.schema, "source", source)
        for shard in self._shards_for([source] if source is not None else None):
            searcher = self._searcher(shard)
            out.update(term for term, _ in searcher.terms_with_prefix("chunk_id", "", filter_query=live))
        return out

    def term_statistics(self, tokens: Sequence[str]) -> tuple[int, dict[str, int]]:
        """Chunks in the index and, per token, chunks whose content holds it (summed over shards; commits,
        which plain search leaves out, are not counted in the shared layout)."""
        total, freqs = 0, dict.fromkeys(tokens, 0)
        for shard in self._shards_for(None, tuple(k for k in KINDS if k != HISTORY_KIND)):
            searcher = self._searcher(shard)
            total += searcher.num_docs
            for token in freqs:
                freqs[token] += searcher.doc_freq("content", token)
        return total, freqs

    # -- query construction ---------------------------------------------------------------------

    def _term(self, field: str, token: str, boost: float) -> tantivy.Query:
        return tantivy.Query.boost_query(tantivy.Query.term_query(self.schema, field, token), boost)

    def _sequence(self, field: str, tokens: list[str], boost: float) -> tantivy.Query:
        if len(tokens) == 1:
            return self._term(field, tokens[0], boost)
        words: list[str | tuple[int, str]] = list(tokens)  # the binding also takes (position, word) pairs
        return tantivy.Query.boost_query(tantivy.Query.phrase_query(self.schema, field, words), boost)

    def _text_query(self, query: LexicalQuery) -> tantivy.Query | None:
        """SHOULD clauses (at least one must match): terms over every text field, identifiers,
        phrases and paths, and a MUST clause per required text (its tokens in sequence in the
        content). Terms are re-tokenized so raw identifiers still meet indexed tokens."""
        b = self.boosts
        clauses: list[tantivy.Query] = []
        for token, weight in term_weights(query.terms).items():
            for field, boost in (("content", b.content), ("symbol", b.symbol), ("path", b.path)):
                clauses.append(self._term(field, token, weight * boost))
        for identifier in query.identifiers:
            tokens = code_tokens(identifier)
            if tokens:
                clauses += [self._term(f, tokens[0], b.identifier) for f in ("symbol", "path")]
        for phrase in query.phrases:
            tokens = code_tokens(phrase)
            if tokens:
                clauses.append(self._sequence("content", tokens, b.phrase))
        for path in query.paths:
            tokens = code_tokens(path)
            if tokens:
                clauses.append(self._sequence("path", tokens, b.path))
        if not clauses:
            return None
        should = tantivy.Query.boolean_query([(tantivy.Occur.Should, c) for c in clauses])
        required = [self._sequence("content", tokens, b.phrase) for text in query.required
                    if (tokens := code_tokens(text))]
        if not required:
            return should
        return tantivy.Query.boolean_query([(tantivy.Occur.Must, q) for q in [should, *required]])

    def _filter_clauses(self, flt: SearchFilter) -> list[tantivy.Query]:
        """ACL (any of the caller's principals) and scope, each a zero-score MUST clause.

        "Any of" is a disjunction of term queries rather than a `term_set_query`: the term set
        unions every matching posting list up front (the ACL's `public` alone lists a tenth of the
        index), the disjunction is advanced lazily against the text query; at a million chunks
        that made ACL-filtered BM25 ~1.5x faster with identical results (bench/scale_1m.py)."""
        clauses = []
        for name, values in flt.field_values():
            terms = [tantivy.Query.term_query(self.schema, name, value) for value in values]
            either = terms[0] if len(terms) == 1 else tantivy.Query.boolean_query(
                [(tantivy.Occur.Should, term) for term in terms])
            clauses.append(tantivy.Query.const_score_query(either, 0.0))
        return clauses

    def _excluded_clauses(self, flt: SearchFilter) -> list[tantivy.Query]:
        """Chunks of stale sources whose ACL lacks `public` (a MUST_NOT clause of the query)."""
        excluded = flt.excluded()
        if excluded is None:
            return []
        (field, values), (lacking, value) = excluded
        either = tantivy.Query.boolean_query(
            [(tantivy.Occur.Should, tantivy.Query.term_query(self.schema, field, v)) for v in values])
        return [tantivy.Query.boolean_query([(tantivy.Occur.Must, either),
                                            (tantivy.Occur.MustNot, tantivy.Query.term_query(self.schema, lacking, value))])]


MAX_TIES = 1000  # hits tied at the cut beyond this many are ordered by tantivy's document order


def _top(searcher: tantivy.Searcher, query: tantivy.Query, limit: int) -> list[tuple[float, tantivy.DocAddress]]:
    """The best `limit` hits plus every hit tied with the last of them: tantivy orders equal scores
    by document position, which merges change, so the caller breaks those ties by chunk id instead."""
    want = limit + 1
    while True:
        hits = searcher.search(query, want, count=False).hits
        if len(hits) < want or hits[-1][0] < hits[limit - 1][0] or want > limit + MAX_TIES:
            return hits
        want = limit + 1 + 4 * (want - limit)


def term_weights(terms: Iterable[tuple[str, float]]) -> dict[str, float]:
    """Analysed query terms normalised to index tokens (a term `parse_http_response` becomes its
    joined form and parts); a token seen twice keeps its highest weight."""
    weights: dict[str, float] = {}
    for term, weight in terms:
        for token in code_tokens(term):
            weights[token] = max(weight, weights.get(token, weight))
    return weights
