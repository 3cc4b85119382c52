"""Commit history under the caller's ACL: the indexed commits touching a path or matching text, newest first,
with that path's diff hunks read from the repository within a token budget (screened for secrets)."""
from __future__ import annotations

import logging
import re
from collections.abc import Collection, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime

from connectors.base import ConnectorError
from connectors.git_history import COMMIT_KIND, CommitText, HistoryReader, commit_id, parse, split_patch
from connectors.git_repos import GitRepoConnector
from connectors.registry import build_connector
from indexer.catalog import Catalog
from indexer.catalog.schema import DocumentRecord, SourceRecord
from indexer.models import Access, AccessError, Document, Principal, Skipped
from indexer.secrets.screen import SecretScreen
from indexer.settings import Settings
from indexer.stores import FullTextIndex
from retrieval.grep import grep
from retrieval.packing import estimate_tokens
from retrieval.permissions import Scope, readable

log = logging.getLogger(__name__)

TEXT_CANDIDATES = 500  # matching lines read from the index for a text query
PATH_OVERFETCH = 50  # commits listed beyond `limit` for a path, for those older than the indexed history
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


class HistoryError(ValueError):
    """A history or related request that cannot be answered as asked (bad path, nothing to look for)."""


@dataclass(frozen=True)
class CommitHit:
    """One indexed commit the caller may read, and (for a path) that path's diff in it."""

    document_id: str
    source: str
    sha: str
    date: str
    author: str
    message: str
    url: str
    references: tuple[str, ...]
    paths: tuple[str, ...]
    hunks: str = ""

    @property
    def subject(self) -> str:
        return self.message.split("\n", 1)[0]


@dataclass
class HistoryResult:
    commits: list[CommitHit]
    truncated: bool = False  # diff hunks were cut or left out to stay within the token budget


def _when(hit: CommitHit) -> datetime:
    try:
        return datetime.fromisoformat(hit.date)
    except ValueError:
        return datetime.min.replace(tzinfo=UTC)


def newest_first(hits: Sequence[CommitHit]) -> list[CommitHit]:
    return sorted(hits, key=lambda h: (_when(h), h.sha), reverse=True)


def clean_path(path: str) -> str:
    """A repository path or folder as git takes it (no leading or trailing `/`); refuses what is not one."""
    path = path.strip().strip("/")
    if not path or _CONTROL.search(path) or any(p in ("", ".", "..") for p in path.split("/")):
        raise HistoryError(f"bad path {path!r}: give a repository path such as `src/app.py` or a folder `src/`")
    return path


@dataclass
class HistoryIndex:
    """The catalog's commit documents, the full-text index, and the sources' repositories, read as one caller."""

    catalog: Catalog
    fulltext: FullTextIndex
    settings: Settings
    screen: SecretScreen
    _readers: dict[str, HistoryReader] = field(default_factory=dict)  # per source, for one request

    # -- documents the caller may read --------------------------------------------------------

    def document(self, who: Principal, doc_id: str, stale: Collection[str]) -> DocumentRecord | None:
        """The stored document if the caller may read it (the document route's rule), else None."""
        acl = self.catalog.document_acl(doc_id)
        if acl is None:
            return None
        doc = self.catalog.get_document(doc_id)
        return doc if doc is not None and readable(acl, doc.source, who, stale) else None

    def commit(self, who: Principal, doc_id: str, stale: Collection[str]) -> CommitHit | None:
        doc = self.document(who, doc_id, stale)
        return commit_hit(doc) if doc is not None and doc.kind == COMMIT_KIND else None

    def sources(self, who: Principal, names: Sequence[str], stale: Collection[str], kind: str = "") -> list[SourceRecord]:
        """Sources (of `kind`) the caller may read, by the source's own access, limited to `names` if given."""
        out = []
        for row in self.catalog.list_sources():
            try:
                acl = Access.of(*row.access).acl()
            except AccessError:
                continue
            if (not names or row.name in names) and (not kind or row.kind == kind) and readable(acl, row.name, who, stale):
                out.append(row)
        return out

    def commits_by_sha(self, who: Principal, sha: str, stale: Collection[str]) -> list[CommitHit]:
        """The indexed commits a full or abbreviated sha names, in the git sources the caller may read."""
        hits = []
        for row in self.sources(who, (), stale, kind="git"):
            try:
                full = self._reader(row).resolve(sha)
            except ConnectorError:
                continue
            hit = self.commit(who, commit_id(row.name, full), stale) if full else None
            if hit is not None:
                hits.append(hit)
        return hits

    # -- the history of a path or of a text --------------------------------------------------

    def history(self, who: Principal, path: str, text: str, names: Sequence[str], limit: int,
                max_tokens: int, stale: Collection[str]) -> HistoryResult:
        """Commits touching `path` and/or whose message matches `text`, newest first; with a path, its hunks."""
        if not path.strip() and not text.strip():
            raise HistoryError("give a `path` (a file or a folder) or a `text` to find in commit messages")
        if not path.strip():
            return HistoryResult(self.by_text(who, text, names, limit, stale))
        where = clean_path(path)
        hits = self.by_path(who, where, names, TEXT_CANDIDATES if text.strip() else limit, stale)
        if text.strip():
            needle = text.strip().casefold()
            hits = [h for h in hits if needle in h.message.casefold()][:limit]
        return self.with_hunks(hits, where, max_tokens)

    def by_text(self, who: Principal, text: str, names: Sequence[str], limit: int,
                stale: Collection[str]) -> list[CommitHit]:
        """Indexed commits whose text (message, references, paths) contains `text` (any case), newest first."""
        found = grep(self.catalog, self.fulltext, who, text.strip(), Scope(sources=tuple(names), kinds=(COMMIT_KIND,)),
                     case_sensitive=False, limit=TEXT_CANDIDATES, stale=stale)
        hits = [self.commit(who, doc_id, stale) for doc_id in dict.fromkeys(m.document_id for m in found.matches)]
        return newest_first([h for h in hits if h is not None])[:limit]

    def by_path(self, who: Principal, path: str, names: Sequence[str], limit: int,
                stale: Collection[str]) -> list[CommitHit]:
        """Indexed commits that changed `path` (a file, or anything under a folder), newest first, listed by git
        from each readable git source's indexed commit (never a later one)."""
        hits: list[CommitHit] = []
        for row in self.sources(who, names, stale, kind="git"):
            indexed = (row.checkpoint or {}).get("commit")
            if not indexed:
                continue
            try:
                shas = self._reader(row).touching(indexed, path, limit + PATH_OVERFETCH)
            except ConnectorError as exc:
                log.warning("history of source %s unreadable: %s", row.name, type(exc).__name__)
                continue
            found = (self.commit(who, commit_id(row.name, sha), stale) for sha in shas)
            hits += [h for h in found if h is not None][:limit]
        return newest_first(hits)[:limit]

    def with_hunks(self, hits: Sequence[CommitHit], path: str, max_tokens: int) -> HistoryResult:
        """Each commit with its diff of `path`, newest first, while the hunks fit `max_tokens`."""
        left, out, cut = max_tokens, [], False
        for hit in hits:
            if left <= 0:
                out.append(hit)
                cut = True
                continue
            try:
                patch = self._screened_patch(hit, path)
            except ConnectorError as exc:
                log.warning("diff of %s unreadable: %s", hit.document_id, type(exc).__name__)
                patch = ""
            shown = fit(patch, left)
            cut = cut or len(shown) < len(patch)
            left -= estimate_tokens(shown) if shown else 0
            if shown != patch:
                left = 0
            out.append(replace(hit, hunks=shown))
        return HistoryResult(out, cut)

    def _screened_patch(self, hit: CommitHit, path: str) -> str:
        """The commit's patch of `path`, each file's part through the secret screen: secret files withheld,
        credentials redacted (the same screen every indexed document passes)."""
        row = self.catalog.get_source(hit.source)
        if row is None:
            return ""
        patch = self._reader(row).diff(hit.sha, path)
        parts = []
        for name, part in split_patch(patch):
            doc = Document(id=f"{hit.source}:{name}", source=hit.source, path=name, content=part, version="",
                           access=Access())
            screened, _ = self.screen.check(doc)
            # the skip's path, not `name`: a credential in the file's name is redacted there
            parts.append(f"(the diff of {screened.path} is withheld: {screened.reason.value})"
                         if isinstance(screened, Skipped) else screened.content)
        return "\n".join(parts)

    def _reader(self, row: SourceRecord) -> HistoryReader:
        """The source's repository as the sync left it (never cloned or fetched here)."""
        if row.name not in self._readers:
            connector = build_connector(row, self.settings)
            if not isinstance(connector, GitRepoConnector):
                raise ConnectorError(f"source {row.name!r} is not a git repository")
            self._readers[row.name] = connector.history_reader(connector.history_git_dir())
        return self._readers[row.name]


def commit_hit(doc: DocumentRecord) -> CommitHit | None:
    """A stored commit document as a CommitHit (None if its text is not a commit's)."""
    return commit_of(doc.id, doc.source, doc.url, doc.content)


def commit_of(doc_id: str, source: str, url: str, content: str) -> CommitHit | None:
    """A commit document's stored text as a CommitHit (None if the text is not a commit's)."""
    text: CommitText | None = parse(content)
    if text is None:
        return None
    return CommitHit(document_id=doc_id, source=source, sha=text.sha, date=text.date, author=text.author,
                     message=text.message, url=url, references=text.references, paths=text.paths)


def fit(text: str, max_tokens: int) -> str:
    """The longest prefix of whole lines of `text` within `max_tokens`."""
    if estimate_tokens(text) <= max_tokens:
        return text
    kept, used = [], 0
    for line in text.split("\n"):
        cost = estimate_tokens(line) + 1
        if used + cost > max_tokens:
            break
        kept.append(line)
        used += cost
    return "\n".join(kept)
