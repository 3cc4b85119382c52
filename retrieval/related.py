"""What is linked to a ticket, merge request, commit, page or file, under the caller's ACL.

The links are the references commit messages carry (Jira keys, GitLab merge requests) and the mentions of a
key found in indexed tickets, merge requests and pages (through the full-text index, as grep finds them):
a Jira key ↔ the merge requests naming it ↔ their commits ↔ the files those changed ↔ the pages naming the key.
No graph is stored: each request follows the links from the index, a bounded number of steps."""
from __future__ import annotations

import re
from collections.abc import Collection
from dataclasses import dataclass, field

from connectors.git_history import COMMIT_KIND, JIRA_KEY, MR_REF, references
from indexer.catalog.schema import DocumentRecord
from indexer.models import Principal
from indexer.stores import LexicalQuery
from retrieval.history import CommitHit, HistoryError, HistoryIndex, commit_hit, newest_first
from retrieval.permissions import Scope, build_filter

MAX_KEYS = 12  # keys followed per request
MENTION_CHUNKS = 300  # chunks naming a key read from the index
FILES_PER_COMMIT = 10
FILE_COMMITS = 10  # commits of a file followed when the subject is a file
MENTION_KINDS = ("issue", "merge_request", "page", COMMIT_KIND)
KIND_ORDER = ("issue", "merge_request", COMMIT_KIND, "page")
_SHA_PREFIX = re.compile(r"^[0-9a-f]{7,64}$")
_MR_PATH = re.compile(r"^(.+)/-/merge_requests/(\d+)$")


@dataclass(frozen=True)
class LinkedItem:
    kind: str
    document_id: str
    source: str
    path: str
    title: str
    url: str
    via: str  # why it is linked: "is ABC-12", "mentions ABC-12", "changed by 1a2b3c4d5e6f"


@dataclass
class RelatedResult:
    subject: str
    keys: list[str] = field(default_factory=list)  # the tickets and merge requests followed
    items: list[LinkedItem] = field(default_factory=list)


def own_key(doc: DocumentRecord) -> str:
    """The key a ticket or merge request document is known by (`ABC-12`, `group/project!3`), else ""."""
    if JIRA_KEY.fullmatch(doc.path):
        return doc.path
    mr = _MR_PATH.match(doc.path)
    return f"{mr.group(1)}!{mr.group(2)}" if mr else ""


def _mentions(key: str) -> re.Pattern[str]:
    return re.compile(r"(?<![\w!/.-])" + re.escape(key) + r"(?![\w-])")


class Linker:
    """One `related` request: follows keys breadth-first and collects the items, each once."""

    def __init__(self, index: HistoryIndex, who: Principal, stale: Collection[str]) -> None:
        self.index, self.who, self.stale = index, who, stale
        self.keys: dict[str, None] = {}
        self.queue: list[str] = []
        self.commits: dict[str, CommitHit] = {}
        self.items: dict[str, LinkedItem] = {}
        self.subject_id = ""

    def run(self, item: str, limit: int) -> RelatedResult:
        item = item.strip()
        self._start(item)
        while self.queue and len(self.keys) <= MAX_KEYS:
            self._follow(self.queue.pop(0))
        for hit in newest_first(list(self.commits.values())):
            self._add_commit_files(hit)
        ordered = sorted(self.items.values(), key=lambda i: KIND_ORDER.index(i.kind) if i.kind in KIND_ORDER
                         else len(KIND_ORDER))
        return RelatedResult(item, list(self.keys), ordered[:limit])

    # -- the subject ----------------------------------------------------------------------------

    def _start(self, item: str) -> None:
        doc = self.index.document(self.who, item, self.stale) if ":" in item else None
        if doc is not None:
            self.subject_id = doc.id
            self._subject_document(doc)
        elif JIRA_KEY.fullmatch(item) or MR_REF.fullmatch(item):
            self._key(item)
        elif _SHA_PREFIX.match(item):
            hits = self.index.commits_by_sha(self.who, item, self.stale)
            if not hits:
                raise HistoryError(f"no indexed commit {item!r} in the sources you can read")
            for hit in hits:
                self.subject_id = hit.document_id
                self._commit(hit)
        else:
            raise HistoryError("give a Jira key (`ABC-12`), a merge request (`group/project!3`), a commit sha, or "
                               "a document id (`source:path`) you can read")

    def _subject_document(self, doc: DocumentRecord) -> None:
        if doc.kind == COMMIT_KIND:
            hit = commit_hit(doc)
            if hit is not None:
                self._commit(hit)
        elif doc.kind in ("issue", "merge_request", "page"):
            for key in (own_key(doc), *references(doc.content)):
                if key:
                    self._key(key)
        else:  # a file: the commits that changed it, and what they reference
            for hit in self.index.by_path(self.who, doc.path, [doc.source], FILE_COMMITS, self.stale):
                self._commit(hit)

    # -- following links ------------------------------------------------------------------------

    def _key(self, key: str) -> None:
        if key not in self.keys and len(self.keys) < MAX_KEYS:
            self.keys[key] = None
            self.queue.append(key)

    def _commit(self, hit: CommitHit) -> None:
        if hit.document_id in self.commits:
            return
        self.commits[hit.document_id] = hit
        self._add(LinkedItem(COMMIT_KIND, hit.document_id, hit.source, f"commit:{hit.sha}",
                             f"{hit.sha[:12]} {hit.subject}", hit.url, "commit"))
        for key in hit.references:
            self._key(key)

    def _follow(self, key: str) -> None:
        """The documents that are `key` (a ticket, a merge request) and those that name it."""
        for own in self._documents_of(key):
            self._add_document(own, f"is {key}")
        pattern = _mentions(key)
        for doc_id in self._naming(key, pattern):
            doc = self.index.document(self.who, doc_id, self.stale)
            if doc is None or doc.id == self.subject_id:
                continue
            if doc.kind == COMMIT_KIND:
                hit = commit_hit(doc)
                if hit is not None:
                    self._commit(hit)
                continue
            self._add_document(doc, f"mentions {key}")
            if own_key(doc):
                self._key(own_key(doc))

    def _documents_of(self, key: str) -> list[DocumentRecord]:
        mr = MR_REF.fullmatch(key)
        if mr and not mr.group(1):
            return []  # `!3` of an unknown project
        kind, path = ("gitlab", f"{mr.group(1)}/-/merge_requests/{mr.group(2)}") if mr else ("jira", key)
        docs = (self.index.document(self.who, f"{row.name}:{path}", self.stale)
                for row in self.index.sources(self.who, (), self.stale, kind=kind))
        return [d for d in docs if d is not None]

    def _naming(self, key: str, pattern: re.Pattern[str]) -> list[str]:
        """Ids of readable tickets, merge requests, pages and commits whose text names `key`: the key as a
        phrase in the full-text index (under the caller's filter), confirmed on the chunk's text."""
        flt = build_filter(self.who, Scope(kinds=MENTION_KINDS), self.stale)
        ids = [s.chunk_id for s in self.index.fulltext.search(LexicalQuery(terms=(), phrases=(key,)), flt,
                                                              MENTION_CHUNKS)]
        rows = self.index.catalog.get_chunks(ids)
        return list(dict.fromkeys(rows[i].doc_id for i in ids if i in rows and pattern.search(rows[i].content)))

    def _add_commit_files(self, hit: CommitHit) -> None:
        for path in hit.paths[:FILES_PER_COMMIT]:
            doc = self.index.document(self.who, f"{hit.source}:{path}", self.stale)
            if doc is not None:
                self._add_document(doc, f"changed by {hit.sha[:12]}")

    def _add_document(self, doc: DocumentRecord, via: str) -> None:
        self._add(LinkedItem(doc.kind, doc.id, doc.source, doc.path, doc.title or doc.path, doc.url, via))

    def _add(self, item: LinkedItem) -> None:
        if item.document_id != self.subject_id and item.document_id not in self.items:
            self.items[item.document_id] = item


def related(index: HistoryIndex, who: Principal, item: str, limit: int, stale: Collection[str]) -> RelatedResult:
    """The items linked to `item` (a Jira key, `group/project!3`, a commit sha or a document id) that the
    caller may read, tickets first, then merge requests, commits (newest first), pages and files."""
    return Linker(index, who, stale).run(item, limit)
