"""Request and response bodies of the REST API (pydantic at the edge)."""
from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Discriminator, Field, Tag, field_validator, model_validator

from connectors.config import NAME as SOURCE_NAME
from connectors.config import NAME_RULE, refuse_inline_secrets
from workers.window import parse_duration

MAX_QUERY_CHARS = 20_000


class SearchRequest(BaseModel):
    query: str = Field(min_length=1, max_length=MAX_QUERY_CHARS)
    limit: int = Field(default=10, ge=1, le=100)
    sources: list[str] = Field(default_factory=list, max_length=100)
    path_prefix: str = Field(default="", max_length=1000)
    languages: list[str] = Field(default_factory=list, max_length=50)
    kinds: list[str] = Field(default_factory=list, max_length=10)


class HitOut(BaseModel):
    id: str
    document_id: str
    source: str
    path: str
    title: str
    url: str
    start_line: int
    end_line: int
    symbol: str
    kind: str
    language: str
    score: float
    snippet: str
    # the chunks this hit shows, `id` first: several when hits of a file at most 3 lines apart were merged
    chunk_ids: list[str] = Field(default_factory=list)


class SearchResponse(BaseModel):
    query_id: str
    hits: list[HitOut]
    timings_ms: dict[str, float]
    # engines missing from this answer: ["dense"] when the vector index did not answer in time (the
    # hits then come from BM25 alone); empty normally
    partial: list[str] = Field(default_factory=list)
    # true when nothing indexed is relevant enough to the query (below CAIRN_RELEVANCE_FLOOR, or an
    # editor's empty-input placeholder such as `null`): the hits are then empty on purpose
    abstained: bool = False


SOURCE_KINDS = ("git", "gitlab", "jira", "confluence")
INTERVAL_HELP = "Sync interval: `1h`, `30m`, `0` (never); left out: the default interval."


class _NewSource(BaseModel):
    """What every new source has: a name, who may read it, a credential by reference only, a schedule."""

    name: str = Field(min_length=1, max_length=64, pattern=SOURCE_NAME, description=f"Source name: {NAME_RULE}.")
    access: list[str] = Field(default_factory=list, max_length=1000, description="Who may read it (empty: admins "
                              "only); for GitLab, Jira and Confluence the readers of an item the source gives none.")
    token_env: str = Field(default="", max_length=200, description="Environment variable (of the server and "
                           "workers) holding the token; read at sync time, never stored.")
    token_file: str = Field(default="", max_length=4096, description="File holding that token instead.")
    username: str = Field(default="", max_length=200, description="User name sent with the token (git: default "
                          "oauth2; Atlassian Cloud: the account's e-mail).")
    interval: str | None = Field(default=None, max_length=32, description=INTERVAL_HELP)

    @model_validator(mode="before")
    @classmethod
    def _no_literal_credentials(cls, data: Any) -> Any:
        refuse_inline_secrets(data)  # a 422 saying to reference it; the value is never echoed
        return data

    @field_validator("interval")
    @classmethod
    def _interval(cls, value: str | None) -> str | None:
        if value is not None:
            parse_duration(value)  # its ValueError says what is wrong: a 422
        return value


class SourceIn(_NewSource):
    """A git repository (`kind` may be left out)."""

    model_config = ConfigDict(extra="forbid")

    kind: Literal["git"] = "git"
    location: str = Field(min_length=1, max_length=2000, description="Repository path or clone URL, without "
                          "credentials (a URL with `user:token@` is refused: give token_env or token_file).")
    ref: str = Field(default="", max_length=255)


class RemoteSourceIn(_NewSource):
    """A GitLab, Jira or Confluence source: the fields of its sources-file entry (docs/connectors.md), validated
    the same way, except that `access` lists who may read it (the file's `default_access`) and a Jira project's
    or Confluence space's own readers are `project_access` / `space_access` (the file's `access`)."""

    model_config = ConfigDict(extra="allow")

    kind: Literal["gitlab", "jira", "confluence"]
    url: str = Field(min_length=1, max_length=2000, description="Base URL of the service, without credentials.")
    project_access: dict[str, list[str]] | None = Field(default=None, description="Jira: project key → readers.")
    space_access: dict[str, list[str]] | None = Field(default=None, description="Confluence: space key → readers.")

    def definition(self) -> dict[str, Any]:
        """The fields given, as `cairn sources add` passes them (api/new_sources.py)."""
        return self.model_dump(exclude_unset=True, exclude={"interval"}) | {"kind": self.kind}


def _kind(value: Any) -> str | None:
    kind = value.get("kind", "git") if isinstance(value, dict) else getattr(value, "kind", "git")
    return kind if kind in SOURCE_KINDS else None


NewSourceIn = Annotated[
    Annotated[SourceIn, Tag("git")] | Annotated[RemoteSourceIn, Tag("gitlab")] | Annotated[RemoteSourceIn, Tag("jira")]
    | Annotated[RemoteSourceIn, Tag("confluence")],
    Discriminator(_kind, custom_error_type="unknown_kind",
                  custom_error_message=f"kind must be one of {', '.join(SOURCE_KINDS)}")]


class SourcePatch(BaseModel):
    """What to change in a source; a field left out stays as it is (validated like `SourceIn`)."""

    access: list[str] | None = Field(default=None, max_length=1000, description="Who may read it (replaces the "
                                     "list; `[]` = admins only). Git sources: applied within seconds, no re-embedding.")
    ref: str | None = Field(default=None, max_length=255, description="Branch, tag or commit (git, GitLab).")
    location: str | None = Field(default=None, min_length=1, max_length=2000,
                                 description="Repository path or clone URL (git); base URL (remote sources).")
    interval: str | None = Field(default=None, max_length=32, description="Sync interval: `1h`, `30m`, `0` "
                                 "(never); null = the default interval.")
    token_env: str | None = Field(default=None, min_length=1, max_length=200,
                                  description="Environment variable holding the token (remote sources; git "
                                  "sources with an http(s) clone URL).")
    token_file: str | None = Field(default=None, min_length=1, max_length=4096,
                                   description="File holding the token (remote sources; git over http(s)).")


class RuleRedactionsOut(BaseModel):
    redactions: int
    files: int


class RedactionsOut(BaseModel):
    """Secrets kept out of a source's index (counts only: never a value, hash or length)."""

    total: int
    files: int
    secret_files: int
    rules: dict[str, RuleRedactionsOut]


class PermissionsOut(BaseModel):
    """How fresh a source's access is (sources whose documents take their access from the source)."""

    last_success_at: str | None  # last successful permissions pass
    last_good_at: str | None  # last successful sync or permissions pass, whichever is later
    age_seconds: float | None  # since last_good_at (null: never)
    stale: bool  # older than CAIRN_PERMISSION_MAX_STALENESS: restricted documents are not served
    error: str  # the last permissions pass's error ("" when it succeeded)


class SourceOut(BaseModel):
    name: str
    kind: str
    state: str
    location: str | None = None  # shown to admins only (a URL or a server path says more than a name)
    ref: str
    access: list[str] | None = None  # shown to admins only
    documents: int
    chunks: int
    last_success_at: str | None
    last_error: str | None
    redactions: RedactionsOut | None = None  # shown to admins only
    permissions: PermissionsOut | None = None  # admins only; null for sources without permissions passes
    interval_seconds: int | None = None  # the source's own sync interval (admins only; null: the default)


class SourceChangeOut(BaseModel):
    """A changed source, what changed, and the jobs that apply it (`access`: ACL rewrite; `index`/`reindex`)."""

    source: SourceOut
    changed: list[str]
    jobs: list[JobOut]


class SourceRemovedOut(BaseModel):
    """What removing a source took out of the stores and the catalog (counts), and the jobs it cancelled."""

    source: str
    removed: dict[str, int]
    cancelled_jobs: list[str]


class ReindexIn(BaseModel):
    full: bool = False
    since: str | None = Field(default=None, max_length=32, description="Re-read what the source changed in "
                              "this window, e.g. `2d` (see `cairn reindex --since`).")


class ReconcileIn(BaseModel):
    source: str | None = Field(default=None, max_length=200, description="Only this source (default: all).")
    repair: bool = True


class ScheduleIn(BaseModel):
    interval: str | None = Field(max_length=32, description="`1h`, `30m`, `0` (never); null = the default.")


class ScheduleOut(BaseModel):
    source: str
    interval_seconds: int
    default: bool


class JobOut(BaseModel):
    """A job as the admin sees it: state, counts, throughput and ETA."""

    id: str
    source: str
    kind: str
    state: str
    counts: dict
    error: str | None
    created_at: str | None
    started_at: str | None
    finished_at: str | None
    params: dict = Field(default_factory=dict)
    phase: str | None = None
    files_seen: int = 0
    files_skipped: int = 0
    skipped_by_reason: dict[str, int] = Field(default_factory=dict)
    files_changed: int = 0
    chunks_embedded: int = 0
    files_deleted: int = 0
    files_failed: int = 0
    pending_chunks: int | None = None
    items_per_second: float | None = None
    chunks_per_second: float | None = None
    eta_seconds: float | None = None
    # Distributed: "stalled: N batches awaiting redelivery since T" while tasks of a dead worker wait.
    stalled: str | None = None
    done: int = 0
    total: int = 0


class DocumentOut(BaseModel):
    id: str
    source: str
    path: str
    title: str
    kind: str
    language: str
    url: str
    version: str
    start_line: int
    end_line: int
    total_lines: int
    content: str


class FeedbackIn(BaseModel):
    query_id: str = Field(min_length=1, max_length=36)
    hit_id: str = Field(min_length=1, max_length=64)
    useful: bool
    comment: str = Field(default="", max_length=2000)


class FeedbackOut(BaseModel):
    id: str
    at: str
    query_id: str
    hit_id: str
    user: str
    useful: bool
    comment: str


class AuditOut(BaseModel):
    id: str
    at: str
    user: str
    admin: bool
    action: str
    target: str
    scope: dict
    result_count: int
    query_id: str | None
    query_text: str | None


class ContextOptions(BaseModel):
    """What a Continue user may put under `params.options` (unknown keys are ignored)."""

    repos: list[str] | str | None = None
    sources: list[str] | str | None = None
    limit: int | None = Field(default=None, ge=1, le=50)
    kinds: list[str] | str | None = None
    languages: list[str] | str | None = None
    path_prefix: str = Field(default="", max_length=1000)


class ContextRequest(BaseModel):
    """Exactly what Continue's `http` context provider POSTs."""

    query: str | None = Field(default="", max_length=MAX_QUERY_CHARS)
    fullInput: str | None = Field(default="", max_length=200_000)  # Continue's field name
    options: ContextOptions | None = None
    workspacePath: str | None = Field(default=None, max_length=4096)  # Continue's field name


class ContextItemUri(BaseModel):
    type: Literal["url", "file"]
    value: str


class ContextItem(BaseModel):
    name: str
    description: str
    content: str
    uri: ContextItemUri | None = None
