"""The vocabulary every package shares: Access, Principal, Document, Chunk, skips and deletions."""
from __future__ import annotations

import hashlib
import re
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import Enum
from functools import cached_property

PUBLIC = "public"
# Every chunk's ACL also names this principal, so admins can read everything through the same
# engine filter as everybody else (there is no "skip ACL" switch anywhere).
ADMINS = "role:admin"

KINDS = ("code", "doc", "text", "issue", "merge_request", "page", "commit")


class AccessError(ValueError):
    """An access principal that is not one of the forms parse_principal accepts."""


# Namespaced principals name an account or group *of one identity realm*, so the same person is
# recognized across systems: `gitlab:user:<numeric id>`, `gitlab:group:<full_path>`,
# `atlassian:user:<Cloud accountId>`, `atlassian:group:<name>`, `jira:user:<Data Center user key>`,
# `confluence:user:<Data Center userKey>` (each Data Center product keys its users its own way),
# `idp:user:<OIDC sub>`, `idp:group:<IdP group>`. A realm is a lower-case word; an organization with two
# GitLab instances gives the second its own realm (e.g. `gitlab-eu`) so numeric ids cannot collide.
# `user:<name>` and `group:<name>` remain Cairn's own namespace (hand-made tokens, --access on git sources).
REALM_RE = re.compile(r"^[a-z][a-z0-9_-]{0,31}$")
RESERVED_REALMS = frozenset({"user", "group", "role", "public"})
REALM_KINDS = ("user", "group", "role")  # role: e.g. a Jira project role, `atlassian:role:<project>/<role>`


def realm_principal(realm: str, kind: str, name: str) -> str:
    """`<realm>:<kind>:<name>`, validated (raises AccessError)."""
    return parse_principal(f"{realm}:{kind}:{name}")


def parse_principal(text: str) -> str:
    """Normalise and validate one principal string: `public`, `user:NAME`, `group:NAME` or a namespaced
    `<realm>:user:ID`, `<realm>:group:NAME`, `<realm>:role:NAME`."""
    text = text.strip()
    if text == PUBLIC:
        return text
    kind, sep, name = text.partition(":")
    if sep and kind in ("user", "group") and name.strip():
        return f"{kind}:{name.strip()}"
    sub, sep2, rest = name.partition(":")
    if sep and sep2 and REALM_RE.match(kind) and kind not in RESERVED_REALMS and sub in REALM_KINDS \
            and rest.strip():
        return f"{kind}:{sub}:{rest.strip()}"
    raise AccessError(f"bad principal {text!r}: expected public, user:NAME, group:NAME or "
                      "<realm>:user:ID / <realm>:group:NAME (e.g. gitlab:group:platform/infra)")


@dataclass(frozen=True)
class Access:
    """Who may read a document: a set of principals. Empty means nobody but admins."""

    principals: frozenset[str] = frozenset()

    @classmethod
    def of(cls, *principals: str) -> Access:
        return cls(frozenset(parse_principal(p) for p in principals))

    def acl(self) -> list[str]:
        """The principals written on every chunk (sorted, admins always included)."""
        return sorted(self.principals | {ADMINS})

    def digest(self) -> str:
        return hashlib.sha256("\n".join(self.acl()).encode()).hexdigest()[:16]


@dataclass(frozen=True)
class Principal:
    """Who is asking. Two kinds:

    - a **service account** (a token made with `cairn tokens create`): `user` and `groups` are Cairn's own
      names and it holds `user:<user>` and `group:<g>`, matched against `--access` lists as they are;
    - a **person** the organization's IdP knows (`subject` = their OIDC `sub`): `user` is only a display
      name. They hold `public` and `linked`: the namespaced principals resolved when the request arrived
      (their `idp:` principals, their linked account in each realm and its synced memberships; see
      indexer/identity). Never `user:`/`group:`: an IdP name that happens to equal a Cairn name grants
      nothing (fail closed).

    Admins of either kind additionally hold the admin role."""

    user: str
    groups: frozenset[str] = frozenset()
    admin: bool = False
    linked: frozenset[str] = frozenset()
    subject: str | None = None

    @property
    def person(self) -> bool:
        return self.subject is not None

    def principals(self) -> list[str]:
        """The principals a chunk's ACL must share with this caller (never empty)."""
        out = {PUBLIC} | set(self.linked)
        if not self.person:
            out |= {f"user:{self.user}"} | {f"group:{g}" for g in self.groups}
        if self.admin:
            out.add(ADMINS)
        return sorted(out)


class SkipReason(str, Enum):  # noqa: UP042 - StrEnum would change str() and format() of members
    """Why a file was not indexed; recorded in the catalog for admins."""

    BINARY = "binary"
    TOO_LARGE = "too_large"
    GENERATED = "generated"
    MINIFIED = "minified"
    VENDORED = "vendored"
    SYMLINK = "symlink"
    SUBMODULE = "submodule"
    MISSING_OBJECT = "missing_object"
    UNSAFE_PATH = "unsafe_path"
    UNDECODABLE = "undecodable"
    SECRET_FILE = "secret_file"  # .env, private keys, key stores... (indexer/secrets/files.py)
    SECRET_PATH = "secret_path"  # a credential in the path itself; recorded under the redacted path


@dataclass(frozen=True)
class Document:
    """One unit a connector yields: a file, an issue, a merge request or a page."""

    id: str  # stable across syncs: "<source>:<path or key>"
    source: str
    path: str  # repository-relative path, or a key such as "PROJ-12"
    content: str
    version: str  # git blob hash, or the source's updated timestamp
    access: Access
    kind: str = "code"
    language: str = ""
    title: str = ""
    url: str = ""  # link to the original; for files a template base without line anchors
    metadata: Mapping[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        # Search filters by kind inside the engines (plain search asks for every kind but `commit`): a
        # document of a kind outside the vocabulary would be indexed yet never found. Refused loudly instead.
        if self.kind not in KINDS:
            raise ValueError(f"document {self.id!r}: unknown kind {self.kind!r} (one of {', '.join(KINDS)})")


@dataclass(frozen=True)
class Deletion:
    """A document that no longer exists at the source."""

    doc_id: str


@dataclass(frozen=True)
class AccessChange:
    """What a permissions pass found for one indexed document: who may read it now (read without content)."""

    doc_id: str
    access: Access


@dataclass(frozen=True)
class Skipped:
    """A file the connector saw and deliberately did not index."""

    source: str
    path: str
    reason: SkipReason
    detail: str = ""


@dataclass(frozen=True)
class SyncFailure:
    """One item that failed; recorded and retried on the next sync, never fatal to the sync."""

    source: str
    item: str
    error: str


@dataclass(frozen=True)
class Chunk:
    """A piece of a document as it is indexed: text, position, symbol and the embedded header."""

    doc_id: str
    source: str
    path: str
    ordinal: int
    start_line: int  # 1-based, inclusive
    end_line: int
    content: str
    header: str = ""  # path + enclosing signatures; embedded together with the content
    symbol: str = ""  # e.g. "module.Class.method"
    kind: str = "code"
    language: str = ""
    acl: tuple[str, ...] = ()
    occurrence: int = 0  # how many earlier chunks of this document have identical text

    def embed_text(self) -> str:
        return f"{self.header}\n{self.content}" if self.header else self.content

    # cached_property writes the instance __dict__ directly, so it works on a frozen dataclass; the
    # hashes are read several times per chunk on the indexing path (ids, dedup, catalog, cache keys).
    @cached_property
    def content_hash(self) -> str:
        """Hash of exactly what is embedded: the embedding cache key (with the model)."""
        return hashlib.sha256(self.embed_text().encode("utf-8", "surrogatepass")).hexdigest()

    @cached_property
    def id(self) -> str:
        """Derived from the document, the chunk's content and the ACL, so rewrites are idempotent.

        The occurrence (not the ordinal) is included so two identical chunks in one document stay
        distinct while inserting a chunk above another leaves the other's id unchanged."""
        key = f"{self.doc_id}\0{self.content_hash}\0{'|'.join(self.acl)}\0{self.occurrence}"
        return str(uuid.UUID(bytes=hashlib.sha256(key.encode("utf-8", "surrogatepass")).digest()[:16]))


def path_prefixes(path: str) -> list[str]:
    """Every directory prefix of a path plus the path itself: `a/b.py` → [`a/`, `a/b.py`].

    Both engines filter "under this path" with an exact match on this list."""
    parts = path.split("/")
    out = ["/".join(parts[: i + 1]) + "/" for i in range(len(parts) - 1)]
    out.append(path)
    return out


def normalise_prefix(prefix: str) -> list[str]:
    """The values a path-prefix filter matches: the path itself and it as a directory."""
    prefix = prefix.strip().strip("/")
    return [prefix, prefix + "/"] if prefix else []


# The index format version: bump it when stored chunks would differ for the same input.
#
# Changelog (newest first):
#   5 — commits (kind `commit`) in their own tantivy index (`fulltext/history/`), so the code's BM25
#       statistics no longer count thousands of commit messages (indexer/stores/fulltext.py). Chunks are
#       unchanged: the background rebuild re-embeds nothing.
#   4 — redaction measured on a labelled corpus (tests/indexer/redaction_corpus) and extended: passwords on
#       command lines (mysql -p…, sshpass -p, curl -u user:…, --password=…), in auth calls and in
#       sentences, JSON-escaped and fused-name assignments, more token formats; files with a credential in
#       their path skipped (`secret_path`). The background rebuild re-screens every document (only chunks
#       whose text changed are embedded again); documents' stored text, and the rows of files now
#       skipped, are rewritten by the next full sync (`cairn reindex --all --full`).
#   3 — full-text layout: one shared tantivy index for all sources (`fulltext/shared/`) instead of one
#       per source; BM25 statistics become global. Chunks are unchanged, so the background rebuild
#       re-embeds nothing (every vector comes from the embedding cache).
#   2 — secrets redacted before chunking (indexer/secrets/screen.py), secret files skipped, chunks cut at
#       max_chunk_chars, parse deadline with line fallback. The background rebuild redacts the chunks;
#       documents' stored text is rewritten by the next full sync (`cairn reindex --all --full`).
#   1 — first format: tree-sitter symbol chunks with path/signature headers, all-MiniLM-L6-v2,
#       tantivy fields content (identifiers expanded into parts)/symbol/path, Qdrant payload acl/source/path_prefix/kind/language.
#
# A mismatch between this number (or the embedding model, or the chunk size settings) and what built the
# serving index generation starts a background build of a new generation while the old one keeps
# serving; it is swapped in when complete (indexer/generations/state.py, indexer/generations/build.py).
INDEX_VERSION = 5
