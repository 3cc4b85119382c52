"""Settings, declared as data: read from CAIRN_* environment variables and an optional TOML file.

Only the app factory, the CLI entry point and the Celery app build a Settings; everything else
receives the values it needs."""
from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict, TomlConfigSettingsSource

DEFAULT_MODEL = "sentence-transformers/all-MiniLM-L6-v2"


def _default_data_dir() -> Path:
    base = os.environ.get("XDG_DATA_HOME") or os.path.join(os.path.expanduser("~"), ".local", "share")
    return Path(base) / "cairn"


def _default_model_cache() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "cairn" / "models"


def _usable_cpus() -> int:
    """The cores this process may run on (its affinity, e.g. a container's cpuset), not the host's."""
    try:
        return len(os.sched_getaffinity(0)) or 1
    except (AttributeError, OSError):  # not on Linux
        return os.cpu_count() or 1


class Settings(BaseSettings):
    """Every setting Cairn reads. Each field is documented in README.md (a test checks it)."""

    model_config = SettingsConfigDict(env_prefix="CAIRN_", extra="ignore")

    data_dir: Path = Field(default_factory=_default_data_dir,
                           description="Where the embedded index, catalog and clones live.")
    config_file: Path | None = Field(default=None, description="Optional TOML file with these settings.")
    database_url: str = Field(default="", description="SQLAlchemy URL of the catalog; empty = SQLite in data_dir.")
    vector_backend: str = Field(default="edge", description="`edge` (Qdrant Edge, embedded) or `qdrant` (server).")
    qdrant_url: str = Field(default="", description="Qdrant server URL for vector_backend=qdrant (`:memory:` = local mode).")
    qdrant_api_key: str = Field(default="", description="API key for the Qdrant server, if it needs one.")
    qdrant_connect_attempts: int = Field(default=30, ge=1, description="Tries to reach the Qdrant server when "
                                         "a process opens the index, before it gives up with an error.")
    qdrant_connect_delay_seconds: float = Field(default=2.0, ge=0, le=300, description="Seconds between two "
                                                "tries to reach the Qdrant server.")
    collection: str = Field(default="cairn_chunks", description="Qdrant collection name (server backend).")
    embedding_model: str = Field(default=DEFAULT_MODEL,
                                 description="A fastembed model name or a local directory holding model.onnx.")
    model_cache_dir: Path = Field(default_factory=_default_model_cache,
                                  description="Where models prepared offline (exported to ONNX) are kept.")
    embedding_quantize: str = Field(default="", pattern="^(|int8)$",
                                    description="`int8`: embed with a dynamically quantized copy of the model.")
    embed_batch_size: int = Field(default=64, ge=1, description="Chunks per embedding batch.")
    embed_threads: int = Field(default=0, ge=0, description="ONNX Runtime threads; 0 = all cores.")
    vector_oversampling: float = Field(default=0.0, ge=0, description="Qdrant Edge: rescore this many times the "
                                       "requested neighbours with the on-disk float vectors (0 = int8 scores only).")
    vector_process: bool | None = Field(default=None, description="Qdrant Edge: own the vector index in a "
                                        "child process, so vector searches and HNSW builds never hold the serving "
                                        "process's GIL (empty = on for `cairn serve`, off for one-shot commands).")
    vector_search_timeout_ms: int = Field(default=1000, ge=1, description="With the vector process: a search "
                                          "whose vector half takes longer answers from BM25 alone and lists "
                                          "`dense` under `partial`.")
    reranker: str = Field(default="features", description="`features` (no weights) or `cross-encoder`.")
    cross_encoder_model: str = Field(default="", description="fastembed cross-encoder name or ONNX directory.")
    max_file_bytes: int = Field(default=1_000_000, ge=1, description="Files larger than this are skipped "
                                "(any source's documents: files, tickets and pages; recorded as too_large).")
    history_commits: int = Field(default=5000, ge=0, description="Git sources: the newest this many commits "
                                 "reachable from the indexed ref are indexed as `commit` documents (0 = none).")
    max_chunk_chars: int = Field(default=16_000, ge=1000, description="Chunks with more characters than this "
                                 "are split (a very long line is cut across several chunks).")
    index_workers: int = Field(default_factory=lambda: min(_usable_cpus(), 4), ge=0, description="Processes "
                               "that screen and chunk a sync's next batches while the current one is written "
                               "(default: the cores, at most 4; 0 = all in the syncing process).")
    parse_timeout_seconds: float = Field(default=2.0, gt=0, description="Per document: tree-sitter parsing and "
                                         "symbol layout past this fall back to line chunks.")
    shutdown_grace_seconds: int = Field(default=30, ge=1, description="On SIGTERM `cairn serve` waits this long "
                                        "for requests in flight before closing them (the current batch always finishes).")
    max_chunk_lines: int = Field(default=80, ge=5, description="Chunks longer than this are split.")
    min_chunk_lines: int = Field(default=8, ge=1, description="Neighbouring symbols smaller than this merge.")
    max_hits_per_file: int = Field(default=3, ge=1, description="At most this many chunks of one file per result list.")
    candidates: int = Field(default=50, ge=1, description="Candidates each engine returns before fusion.")
    history_weight: float = Field(default=0.0, ge=0, le=2, description="Search: the chunks of a candidate file "
                                  "changed by one of the indexed commits most like the query gain up to this "
                                  "(ranking scores are about 0-3; 0 = off).")
    learned_ranking: bool = Field(default=False, description="Search: rerank each source's candidates with the "
                                  "feature weights `cairn ranker fit` learned from its commits, where kept (off "
                                  "until the dev-set ablation shows a gain; features reranker only).")
    relevance_floor: float = Field(default=0.4, ge=0, le=1, description="Queries whose relevance evidence (both "
                                   "engines', in [0, 1]) stays below this are answered with nothing; 0 = off.")
    host: str = Field(default="127.0.0.1", description="Address `cairn serve` binds.")
    port: int = Field(default=8000, description="Port `cairn serve` binds.")
    keep_alive_seconds: int = Field(default=75, ge=1, description="How long `cairn serve` keeps an idle HTTP "
                                    "connection open; longer than clients' and proxies' idle timeouts, so they close "
                                    "first and never send a request on a connection the server is closing.")
    public_url: str = Field(default="", description="The URL GitLab, Jira and Confluence reach this server at "
                            "(webhook URLs are built from it); empty = http://HOST:PORT of `cairn serve`.")
    url: str = Field(default="", description="URL of a running Cairn server for the CLI to talk to.")
    token: str = Field(default="", description="API token the CLI sends to a running server.")
    celery_broker_url: str = Field(default="", description="Celery broker; empty = run tasks in-process.")
    celery_visibility_timeout: int = Field(
        default=3600, ge=1, description="Seconds before Redis redelivers a task whose worker died without acking it.")
    queue_batch_docs: int = Field(default=32, ge=1, description="Documents per batch a distributed sync sends to `embed`.")
    quarantine_after: int = Field(default=3, ge=1, description="Attempts before a document that keeps failing is quarantined.")
    index_queue_consumer: bool = Field(
        default=True, description="With a broker, `cairn serve` applies the `index` queue (false: never; with "
        "Qdrant Edge the node is then an API replica of the index owner, with a Qdrant server `-Q index` workers apply it).")
    index_lease_seconds: int = Field(default=30, ge=3, description="Distributed with Qdrant Edge: the index "
                                     "owner renews its lease in the catalog every third of this; another "
                                     "`cairn serve` sharing its data dir takes over this long after it stops.")
    node_url: str = Field(default="", description="The URL other `cairn serve` nodes reach this one at (an API "
                          "replica forwards requests to the index owner's); empty = http://HOST:PORT, with this "
                          "machine's name for a wildcard HOST.")
    task_stall_seconds: int = Field(default=60, ge=5, description="Distributed: a Celery task whose heartbeat "
                                    "(every sixth of this) is older than this died with its worker and is "
                                    "redelivered at once, whatever the broker's visibility timeout.")
    sync_retry_seconds: int = Field(default=15, ge=1, description="A sync of a busy source is deferred this long, then tried again.")
    context_token_budget: int = Field(default=6000, ge=100, description="Token budget of one `/v1/context` answer.")
    rate_limit_per_minute: int = Field(default=600, ge=0, description="Requests per minute per token (0 = no limit).")
    max_body_bytes: int = Field(default=1_000_000, ge=1024, description="Larger request bodies get 413.")
    audit_query_text: bool = Field(default=False, description="Store query text in the audit log.")
    backup_dir: Path | None = Field(default=None, description="Directory under which POST /v1/admin/backup may "
                                    "write backups; unset = backups only through the local `cairn backup`.")
    secret_allowlist: list[str] = Field(default_factory=list, description="Regexes for false positives of the "
                                        "secret scanner: a match on the value or its line keeps it (JSON list).")
    secret_allowlist_paths: list[str] = Field(default_factory=list, description="Path globs indexed without "
                                              "secret screening (no redaction, no secret-file skip), e.g. "
                                              "`tests/fixtures/**`.")
    # -- jobs and schedules
    sync_interval_seconds: int = Field(default=3600, ge=0, description="Default interval between scheduled "
                                       "syncs of a source (its own interval overrides it; 0 = not scheduled).")
    scheduler_tick_seconds: float = Field(default=60.0, ge=0, description="Embedded node: how often due syncs "
                                          "are looked for (0 = no scheduler in the API process).")
    job_retention_days: int = Field(default=30, ge=1, description="Finished jobs older than this are pruned.")
    audit_retention_days: int = Field(default=0, ge=0, description="Audit rows older than this are pruned "
                                      "(0 = kept forever).")
    reconcile_interval_seconds: int = Field(default=86400, ge=0, description="Embedded node: how often the "
                                            "stores are reconciled with the catalog (0 = never).")
    permission_sync_interval_seconds: int = Field(default=300, ge=0, description="How often each source whose "
                                                  "documents carry the source's own permissions gets a permissions "
                                                  "pass (ACL changes and deletions only, no content; 0 = never).")
    permission_max_staleness: int = Field(default=3600, gt=0, description="Seconds after which a source's "
                                          "access counts as stale when neither a sync nor a permissions pass "
                                          "succeeded: its restricted documents are not served until one does.")
    # -- identity: OIDC sign-in and OAuth bearer tokens from the organization's IdP (docs/identity.md)
    oidc_issuer: str = Field(default="", description="The OpenID provider's issuer URL (discovery at "
                             "ISSUER/.well-known/openid-configuration); empty = no OIDC sign-in, no JWT bearer tokens.")
    oidc_client_id: str = Field(default="", description="Cairn's client id at the OpenID provider.")
    oidc_client_secret_file: Path | None = Field(default=None, description="File holding the client secret "
                                                 "(never the secret itself in the configuration).")
    oidc_client_secret_env: str = Field(default="", description="NAME of an environment variable holding "
                                        "the client secret (neither set = a public client: PKCE only).")
    oidc_scopes: str = Field(default="openid email profile", description="Scopes Cairn asks for at sign-in "
                             "(add `groups` for IdPs that need it, e.g. Okta).")
    oidc_groups_claim: str = Field(default="groups", description="The ID token, userinfo or access token "
                                   "claim listing the user's groups.")
    oidc_clock_skew_seconds: int = Field(default=60, ge=0, le=600, description="Tolerance for the IdP's "
                                         "clock in exp, iat and nbf checks.")
    admin_groups: list[str] = Field(default_factory=list, description="IdP groups whose members are Cairn "
                                    "admins (JSON list).")
    session_max_age_seconds: int = Field(default=28800, ge=60, description="A web UI session ends this long "
                                         "after sign-in (signing out ends it at once).")
    personal_token_max_days: int = Field(default=365, ge=1, le=3650, description="The longest lifetime a "
                                         "personal access token made on the Tokens page may have (days).")
    scim_token_file: Path | None = Field(default=None, description="File holding the bearer secret SCIM "
                                         "clients send (/scim/v2); with neither this nor CAIRN_SCIM_TOKEN_ENV, "
                                         "SCIM is off (404).")
    scim_token_env: str = Field(default="", description="NAME of an environment variable holding the SCIM "
                                "bearer secret (instead of CAIRN_SCIM_TOKEN_FILE).")
    identity_cache_seconds: float = Field(default=30, ge=0, le=600, description="How long a person's linked "
                                          "accounts and synced memberships are reused before being read again "
                                          "(0 = read on every request); deactivation applies at once regardless.")

    def for_serving(self) -> Settings:
        """These settings for a long-lived server (`cairn serve`, `cairn demo`): an unset
        `vector_process` turns on there (one-shot commands keep the vector index in-process)."""
        return self if self.vector_process is not None else self.model_copy(update={"vector_process": True})

    @field_validator("secret_allowlist")
    @classmethod
    def _compile_allowlist(cls, patterns: list[str]) -> list[str]:
        for pattern in patterns:
            try:
                re.compile(pattern)
            except re.error as exc:
                raise ValueError(f"secret_allowlist: {pattern!r} is not a regular expression: {exc}") from exc
        return patterns

    @classmethod
    def settings_customise_sources(cls, settings_cls: type[BaseSettings], init_settings: PydanticBaseSettingsSource,
                                   env_settings: PydanticBaseSettingsSource, dotenv_settings: PydanticBaseSettingsSource,
                                   file_secret_settings: PydanticBaseSettingsSource) -> tuple[Any, ...]:
        sources: list[Any] = [init_settings, env_settings]
        path = os.environ.get("CAIRN_CONFIG_FILE")
        if path:
            sources.append(TomlConfigSettingsSource(settings_cls, toml_file=path))
        return tuple(sources)

    @property
    def catalog_url(self) -> str:
        return self.database_url or f"sqlite:///{self.data_dir / 'catalog.sqlite3'}"
