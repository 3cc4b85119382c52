"""The connector contract: a checkpointed sync yielding documents, deletions, skips and per-item failures."""
from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any, Protocol, TypeAlias

from indexer.models import Deletion, Document, Skipped, SyncFailure

# JSON-able state a connector resumes from (a git commit, an "updated since" timestamp, ...).
Checkpoint: TypeAlias = dict[str, Any]
SyncItem: TypeAlias = Document | Deletion | Skipped | SyncFailure


class ConnectorError(RuntimeError):
    """A sync cannot run at all. Messages never contain credentials."""


class SourceNotFound(ConnectorError):
    """The location is not a repository/project/space, or it does not exist."""


class RefNotFound(ConnectorError):
    """The requested branch, tag or commit does not exist in the source."""


class AuthFailed(ConnectorError):
    """The source refused the credentials (or asked for some where none were given)."""


class Unavailable(ConnectorError):
    """The source did not answer in time or failed transiently; retrying later may succeed."""


def document_id(source: str, path: str) -> str:
    """The stable id of a document: `<source>:<path or key>`."""
    return f"{source}:{path}"


class Connector(Protocol):
    """One configured source. A sync is: iterate `sync(...)` to the end, then read `next_checkpoint()`.

    Connectors subclass it explicitly, which gives them the defaults of `access_from_source` and
    `partial_checkpoint`."""

    name: str
    # True: each document's access comes from the source and is part of its version, so the connector
    # notices access changes itself. False: the source row's access applies to every document, and the
    # sync rewrites documents indexed under another access list.
    access_from_source: bool = False

    def sync(self, checkpoint: Checkpoint | None, known: Mapping[str, str]) -> Iterator[SyncItem]:
        """Yield what changed since `checkpoint`. `known` maps doc id → indexed version: items whose
        version is unchanged are not read and not yielded; known ids that are gone yield a Deletion.
        Per-item problems are yielded as SyncFailure; only whole-sync problems raise ConnectorError."""
        ...

    def next_checkpoint(self) -> Checkpoint:
        """The checkpoint to store once the sync was fully consumed."""
        ...

    def list_ids(self) -> set[str]:
        """Ids of every document the source currently has (for pruning deletions)."""
        ...

    def partial_checkpoint(self) -> Checkpoint | None:
        """How far the sync got so far, valid mid-sync (ticket and page sources); None: only the end
        of a sync is a resume point. Read when a batch is cut and stored once that batch is written,
        so a sync killed part-way resumes there (and never past a batch read ahead but not written)."""
        return None
