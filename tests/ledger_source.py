"""An in-test source whose documents take their access from the source: a real Connector subclass with a
permissions pass, over an in-memory "server" the tests change (restrictions, deletions, failures)."""
from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field

from connectors.base import AccessItem, Checkpoint, Connector, SyncItem, Unavailable
from indexer.models import Access, AccessChange, Deletion, Document, SyncFailure

FORECAST = "Quarterly revenue forecast: the acquisition of Nimbus closes in March, budget frozen."
HANDBOOK = "Onboarding handbook: laptops are ordered through the helpdesk portal on day one."
ROADMAP = "Platform roadmap: migrate the ledger service to event sourcing before the audit."


@dataclass
class Item:
    content: str
    access: Access
    version: str = "1"


@dataclass
class Server:
    """What the source holds, and how its permissions listing behaves."""

    items: dict[str, Item] = field(default_factory=dict)
    unreadable: set[str] = field(default_factory=set)  # keys whose ACL state cannot be read
    down: bool = False  # the permissions listing fails as a whole
    content_reads: int = 0


class LedgerConnector(Connector):
    """A ticket-like source whose documents take their access from the source."""

    access_from_source = True

    def __init__(self, name: str, server: Server) -> None:
        self.name = name
        self.server = server

    def _id(self, key: str) -> str:
        return f"{self.name}:{key}"

    def sync(self, checkpoint: Checkpoint | None, known: Mapping[str, str]) -> Iterator[SyncItem]:
        for key, item in self.server.items.items():
            if known.get(self._id(key)) != item.version:
                self.server.content_reads += 1
                yield Document(id=self._id(key), source=self.name, path=key, content=item.content,
                               version=item.version, access=item.access, kind="issue", title=key)
        gone = set(known) - {self._id(k) for k in self.server.items}
        yield from (Deletion(doc_id) for doc_id in sorted(gone))

    def next_checkpoint(self) -> Checkpoint:
        return {}

    def list_ids(self) -> set[str]:
        return {self._id(k) for k in self.server.items}

    def access_pass(self, known: Mapping[str, str]) -> Iterator[AccessItem]:
        if self.server.down:
            raise Unavailable("ledger answered 503 to the permissions listing")
        for doc_id, digest in known.items():
            key = doc_id.split(":", 1)[1]
            item = self.server.items.get(key)
            if item is None:
                yield Deletion(doc_id)
            elif key in self.server.unreadable:
                yield SyncFailure(self.name, doc_id, "403 reading the restrictions")
            elif item.access.digest() != digest:
                yield AccessChange(doc_id, item.access)

    def refresh(self, doc_ids: Sequence[str]) -> Iterator[SyncItem]:
        raise AssertionError("a permissions pass never reads items again")
