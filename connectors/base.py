"""The connector contract: a checkpointed sync yielding documents, deletions, skips and per-item failures."""
from __future__ import annotations

from collections.abc import Collection, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol, TypeAlias

from indexer.models import AccessChange, Deletion, Document, Skipped, SyncFailure

# JSON-able state a connector resumes from (a git commit, an "updated since" timestamp, ...).
Checkpoint: TypeAlias = dict[str, Any]
SyncItem: TypeAlias = Document | Deletion | Skipped | SyncFailure
# What a permissions pass yields: access changes and deletions, never content.
AccessItem: TypeAlias = AccessChange | Deletion | SyncFailure


@dataclass(frozen=True)
class GroupMember:
    """`account` (an id of the connector's identity realm) holds the group or role principal `principal`
    (`<realm>:group:<name>`, `<realm>:role:<name>`); `level`: GitLab's access level, else None."""

    principal: str
    account: str
    level: int | None = None


@dataclass(frozen=True)
class Account:
    """An account of the connector's identity realm: its id as principals name it, and a readable name."""

    account: str
    display: str = ""


MemberItem: TypeAlias = GroupMember | SyncFailure


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

    def access_pass(self, known: Mapping[str, str]) -> Iterator[AccessItem]:
        """The current access of the indexed documents, read cheaply: ids and ACL-relevant state only
        (restrictions, ancestors, trash, project moves and key changes, security levels, visibility,
        memberships), never content, and nothing embedded again.

        `known` maps each indexed doc id to its access digest (`Access.digest()`). Yield an AccessChange
        for a known document whose access is now different, a Deletion for a known document that is gone
        or no longer belongs here (deleted, trashed, moved to another project or key), and a SyncFailure
        for an item or scope whose state could not be read (its documents keep their access; the pass is
        then partial, never a success). Known documents not mentioned keep their access.

        Default: nothing to do, for sources whose documents all carry the source row's access (git
        repositories: that access changes through the source's settings, not at the source)."""
        return iter(())

    # The identity realm the principals this source writes belong to (`gitlab`, `atlassian`, ...; see
    # indexer/models.py); "" for sources writing none (git repositories: their access is the source row's).
    realm: str = ""

    def memberships(self, principals: Collection[str]) -> Iterator[MemberItem]:
        """The members, now, of each group or role principal of this source's realm that its ACLs name
        (read on the permissions schedule, right after `access_pass`): a GroupMember per member, and a
        SyncFailure for a principal whose members could not be read (it then grants nobody until a pass
        reads it: fail closed). Principals of other realms are ignored. Raise ConnectorError when nothing
        can be read at all."""
        return iter(())

    def find_accounts(self, email: str) -> list[Account] | None:
        """The active accounts whose own email address is exactly `email` (lower-case), read through the
        source's API to link Cairn users by their verified email; None: this source cannot look emails up."""
        return None

    # True when `refresh` reads single items again (ticket and page sources); False: a change notice
    # (a webhook) is served by an incremental `sync` instead, which is already targeted (git: the diff).
    refreshes_items: bool = False

    def refresh(self, doc_ids: Sequence[str]) -> Iterator[SyncItem]:
        """Read these documents again now, whatever their version (a webhook named them): a Document
        (or Skipped / SyncFailure) for each that exists, with any restricted parts as their own
        documents, and a Deletion for each that is gone. Only for `refreshes_items` connectors."""
        raise ConnectorError(f"source {self.name!r} reads no single items: run an incremental sync")

    def partial_checkpoint(self) -> Checkpoint | None:
        """How far the sync got so far, valid mid-sync (ticket and page sources); None: only the end
        of a sync is a resume point. Read when a batch is cut and stored once that batch is written,
        so a sync killed part-way resumes there (and never past a batch read ahead but not written)."""
        return None
