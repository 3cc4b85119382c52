"""Source configuration: the sources YAML file and catalog rows, validated; credentials only by reference."""
from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Annotated, Any, Literal
from urllib.parse import urlsplit

import yaml
from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationError, field_validator, model_validator
from pydantic_core import PydanticCustomError

from connectors.base import AuthFailed
from connectors.http_policy import HttpPolicy
from connectors.webhooks import SECRET_KEY
from indexer.models import REALM_RE, RESERVED_REALMS, AccessError, parse_principal

# The one rule for a source name, wherever a name comes in (API, CLI, sources file): it appears in URLs
# (/v1/sources/{name}), document ids (`<name>:<path>`) and file names, so no `/`, `:` or spaces.
NAME = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$"
NAME_RULE = "1 to 64 letters, digits, '.', '_' or '-', starting with a letter or digit"
_SECRET_KEYS = ("token", "password", "private_token", "api_token", "secret")
_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


class SourceConfigError(ValueError):
    """A sources file or source definition that cannot be used (the message says where and why).

    `problems` holds each problem as (field path, message), the path without the kind, for callers that
    show them field by field (the API's 422)."""

    def __init__(self, message: str, problems: tuple[tuple[tuple[str | int, ...], str], ...] = ()) -> None:
        super().__init__(message)
        self.problems = problems


def refuse_inline_secrets(data: Any) -> None:
    """A definition carrying a credential itself (`token`, `password`, ...) is refused: credentials are only
    ever referenced (an environment variable or a file), so none is stored, shown or logged. For validators."""
    inline = [k for k in _SECRET_KEYS if isinstance(data, dict) and k in data]
    if inline:
        raise PydanticCustomError("inline_credentials", "{keys}: credentials are never written in configuration; "
                                  "put it in an environment variable or a file and reference it with token_env "
                                  "or token_file", {"keys": ", ".join(inline)})


def check_source_name(name: str) -> str:
    """The name, if it follows the rule every entry point shares; SourceConfigError otherwise."""
    if not re.match(NAME, name):
        raise SourceConfigError(f"{name!r} is not a valid source name: use {NAME_RULE}")
    return name


def read_token(source: str, token_env: str, token_file: str) -> str:
    """A source's credential read now (at sync time) from its reference; "" when it has none."""
    if token_env:
        value = os.environ.get(token_env, "").strip()
        if not value:
            raise AuthFailed(f"source {source!r}: environment variable {token_env} is not set")
        return value
    if token_file:
        try:
            value = Path(token_file).expanduser().read_text(encoding="utf-8").strip()
        except OSError as exc:
            raise AuthFailed(f"source {source!r}: cannot read token_file: {exc.strerror}") from None
        if not value:
            raise AuthFailed(f"source {source!r}: token_file is empty")
        return value
    return ""


# -- git sources: a location and a ref, and the token only by reference --------------------------------

CREDENTIALS_IN_URL = ("the location must not contain credentials (user:token@); put the token in an "
                      "environment variable or a file and pass --token-env VAR or --token-file PATH "
                      "(API: token_env / token_file)")
CREDENTIALS_REMOVED = "credentials_removed"  # set by migration 0004g: the URL's token was taken out
# what a source whose token was taken out of its URL says until an admin gives it a reference
CREDENTIALS_REMOVED_HINT = ("the token its clone URL held was removed from the catalog (credentials are never "
                            "stored); put it in an environment variable of the server and workers and run "
                            "`cairn sources set {name} --token-env VAR` (or --token-file PATH)")
GIT_KEYS = ("location", "ref", "username", "token_env", "token_file")


def url_has_credentials(location: str) -> bool:
    """Whether a clone URL carries a secret: any user info in an http(s) URL (a token alone is a valid
    user name to GitHub and GitLab), or a password in any URL. `ssh://git@host/…` and `git@host:…` do not."""
    match = re.match(r"^([A-Za-z][A-Za-z0-9+.-]*)://([^/?#]*)", location.strip())
    if not match or "@" not in match.group(2):
        return False
    userinfo = match.group(2).rpartition("@")[0]
    return match.group(1).lower() in ("http", "https") or ":" in userinfo


def git_config(name: str, location: str, ref: str = "", token_env: str = "", token_file: str = "",
               username: str = "", previous: dict[str, Any] | None = None) -> dict[str, Any]:
    """The catalog config of a git source, validated (SourceConfigError says what is wrong and how to fix it).

    A token is only ever a reference (token_env or token_file), read at sync time and handed to git through
    its environment; a location with credentials in it is refused."""
    location = location.strip()
    if not location:
        raise SourceConfigError(f"source {name!r}: location is empty")
    if url_has_credentials(location):
        raise SourceConfigError(f"source {name!r}: {CREDENTIALS_IN_URL}")
    if token_env and token_file:
        raise SourceConfigError(f"source {name!r}: give token_env or token_file, not both")
    if token_env and not _ENV_NAME.match(token_env):
        raise SourceConfigError(f"source {name!r}: not an environment variable name: {token_env!r}")
    if (token_env or token_file) and not re.match(r"^https?://", location, re.IGNORECASE):
        raise SourceConfigError(f"source {name!r}: a token is used with http(s) clone URLs only "
                                "(ssh uses the server's ssh keys)")
    if re.search(r"[:@/\s]", username):
        raise SourceConfigError(f"source {name!r}: not a user name: {username!r}")
    config = {k: v for k, v in (previous or {}).items() if k not in (*GIT_KEYS, CREDENTIALS_REMOVED)}
    config |= {"location": location, "ref": ref.strip(), "username": username,
               "token_env": token_env, "token_file": token_file}
    before = previous or {}
    if before.get(CREDENTIALS_REMOVED) and not (token_env or token_file) and before.get("location") == location:
        config[CREDENTIALS_REMOVED] = True  # still waiting for a token reference (or another location)
    return config


def _principals(values: list[str]) -> list[str]:
    try:
        return sorted({parse_principal(v) for v in values})
    except AccessError as exc:
        raise ValueError(str(exc)) from None


def _principal_or_empty(value: str) -> str:
    return _principals([value])[0] if value.strip() else ""


def _realm_or_empty(value: str) -> str:
    """An identity realm (`gitlab`, `atlassian`, `gitlab-eu`): a lower-case word; "" = the kind's default."""
    value = value.strip()
    if value and (not REALM_RE.match(value) or value in RESERVED_REALMS):
        raise ValueError(f"bad realm {value!r}: a lower-case word such as gitlab, atlassian or gitlab-eu "
                         f"(not {', '.join(sorted(RESERVED_REALMS))})")
    return value


class SourceBase(BaseModel):
    """Settings every remote source shares: where, which credential, how politely, who may read."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(pattern=NAME)
    url: str
    username: str = Field(default="", description="Login/e-mail for basic auth (Atlassian Cloud); empty: token only.")
    token_env: str = Field(default="", description="Environment variable holding the API token.")
    token_file: str = Field(default="", description="File holding the API token.")
    default_access: list[str] = Field(default_factory=list, description="Principals used when the source gives none.")
    requests_per_second: float = Field(default=0.0, ge=0, description="Request rate limit; 0 = none.")
    timeout_seconds: float = Field(default=60.0, gt=0)
    max_attempts: int = Field(default=6, ge=1, le=20, description="Tries per request (429/5xx/timeouts).")
    retry_backoff_seconds: float = Field(default=0.5, gt=0, description="First retry delay; doubles, with jitter.")
    overlap_minutes: float = Field(default=5.0, ge=0, description="Re-list this much before the cursor.")
    reconcile_minutes: float = Field(default=360.0, ge=0, description="List all ids this often to prune deletions.")
    verify_tls: bool = True

    @model_validator(mode="before")
    @classmethod
    def _no_inline_secrets(cls, data: Any) -> Any:
        refuse_inline_secrets(data)
        return data

    @field_validator("url")
    @classmethod
    def _url(cls, value: str) -> str:
        parts = urlsplit(value.strip())
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"not an http(s) URL: {value!r}")
        if parts.username or parts.password:
            raise ValueError("the URL must not contain credentials; use token_env or token_file")
        return value.strip().rstrip("/")

    @field_validator("token_env")
    @classmethod
    def _env(cls, value: str) -> str:
        if value and not _ENV_NAME.match(value):
            raise ValueError(f"not an environment variable name: {value!r}")
        return value

    @field_validator("default_access")
    @classmethod
    def _access(cls, value: list[str]) -> list[str]:
        return _principals(value)

    @model_validator(mode="after")
    def _one_credential(self) -> SourceBase:
        if self.token_env and self.token_file:
            raise ValueError("give token_env or token_file, not both")
        return self

    def token(self) -> str:
        """The credential, read now (at sync time); never stored, logged or put in an error."""
        return read_token(self.name, self.token_env, self.token_file)

    def http_policy(self) -> HttpPolicy:
        return HttpPolicy(read_timeout=self.timeout_seconds, connect_timeout=min(10.0, self.timeout_seconds),
                          max_attempts=self.max_attempts, requests_per_second=self.requests_per_second,
                          backoff_base=self.retry_backoff_seconds)

    def location(self) -> str:
        return self.url

    def catalog_config(self) -> dict[str, Any]:
        """What the catalog stores: everything but the name and access (own columns); no secrets exist here."""
        data = self.model_dump(mode="json", exclude={"name", "default_access"})
        return {**data, "location": self.location()}


class GitLabSource(SourceBase):
    kind: Literal["gitlab"] = "gitlab"
    group: str = Field(default="", description="Group full path: every project in it (and its subgroups).")
    projects: list[str] = Field(default_factory=list, description="Project paths (or ids) to index.")
    include_subgroups: bool = True
    include_archived: bool = True
    code: bool = True
    issues: bool = True
    merge_requests: bool = True
    ref: str = Field(default="", description="Branch/tag to index; empty = each project's default branch.")
    internal_principal: str = Field(default="", description="Principal for every signed-in org user "
                                    "(internal projects), e.g. idp:group:staff. Empty: members only.")
    realm: str = Field(default="", description="Identity realm of the instance's accounts (principals "
                       "`<realm>:user:<id>`); empty: gitlab. Give a second GitLab instance its own.")
    max_document_chars: int = Field(default=400_000, ge=1000)

    @field_validator("internal_principal")
    @classmethod
    def _internal(cls, value: str) -> str:
        return _principal_or_empty(value)

    @field_validator("realm")
    @classmethod
    def _realm(cls, value: str) -> str:
        return _realm_or_empty(value)

    @property
    def identity_realm(self) -> str:
        return self.realm or "gitlab"

    def identity_system(self) -> str:
        """Whose accounts the realm's ids number: this instance (numeric ids mean nothing elsewhere)."""
        return f"gitlab {self.url}"

    @model_validator(mode="after")
    def _scope(self) -> GitLabSource:
        if bool(self.group) == bool(self.projects):
            raise ValueError("give either group or projects")
        return self

    def location(self) -> str:
        return f"{self.url}/{self.group}" if self.group else self.url


class AtlassianSource(SourceBase):
    deployment: Literal["cloud", "datacenter", ""] = Field(default="", description="Empty: cloud for "
                                                           "*.atlassian.net, else datacenter.")
    permissions: Literal["source", "config"] = Field(default="source", description="`source`: read the "
                                                     "product's permissions, falling back to `access`.")
    access: dict[str, list[str]] = Field(default_factory=dict, description="Project/space key → principals.")
    org_principal: str = Field(default="", description="Principal standing for every signed-in user.")
    realm: str = Field(default="", description="Identity realm of the accounts (principals "
                       "`<realm>:user:<key|accountId>`); empty: atlassian on Cloud, the product (jira, "
                       "confluence) on Data Center.")
    max_document_chars: int = Field(default=400_000, ge=1000)

    @field_validator("org_principal")
    @classmethod
    def _org(cls, value: str) -> str:
        return _principal_or_empty(value)

    @field_validator("realm")
    @classmethod
    def _realm(cls, value: str) -> str:
        return _realm_or_empty(value)

    @property
    def identity_realm(self) -> str:
        """Cloud: `atlassian` (an accountId is one Atlassian account, the same in Jira and Confluence and
        on every site). Data Center: the product's name, because its user keys are the product instance's
        own (Jira's `JIRAUSER10100` and Confluence's `8a7f80...` name the same person differently)."""
        if self.realm:
            return self.realm
        return "atlassian" if self.cloud else str(getattr(self, "kind", "atlassian"))

    def identity_system(self) -> str:
        """Whose accounts and groups the realm's names mean: one Cloud site (accountIds are global, but group
        names are the site's own; Jira and Confluence of one site share them), or this Data Center instance."""
        if self.cloud:
            return f"atlassian cloud {urlsplit(self.url).hostname}"
        return f"{getattr(self, 'kind', 'atlassian')} {self.url}"

    @field_validator("access")
    @classmethod
    def _access_map(cls, value: dict[str, list[str]]) -> dict[str, list[str]]:
        return {key: _principals(principals) for key, principals in value.items()}

    @property
    def cloud(self) -> bool:
        if self.deployment:
            return self.deployment == "cloud"
        return (urlsplit(self.url).hostname or "").endswith(".atlassian.net")

    def configured_access(self, key: str) -> list[str]:
        return self.access.get(key, self.default_access)


class JiraSource(AtlassianSource):
    kind: Literal["jira"] = "jira"
    projects: list[str] = Field(default_factory=list, description="Project keys.")
    jql: str = Field(default="", description="A JQL filter instead of (or narrowing) projects; no ORDER BY.")
    custom_fields: dict[str, str] = Field(default_factory=dict, description="Field id → label to include.")
    security_levels: dict[str, list[str]] = Field(default_factory=dict, description="Issue security level "
                                                  "name → principals (other levels: admins only).")

    @model_validator(mode="after")
    def _scope(self) -> JiraSource:
        if not self.projects and not self.jql:
            raise ValueError("give projects and/or jql")
        if re.search(r"\border\s+by\b", self.jql, re.IGNORECASE):
            raise ValueError("jql must not contain ORDER BY (the connector orders by update time)")
        return self

    def location(self) -> str:
        return f"{self.url} ({', '.join(self.projects) or self.jql})"


class ConfluenceSource(AtlassianSource):
    kind: Literal["confluence"] = "confluence"
    spaces: list[str] = Field(min_length=1, description="Space keys.")
    blogposts: bool = True
    timezone: str = Field(default="UTC", description="Time zone CQL dates are read in (the API user's).")

    def location(self) -> str:
        return f"{self.url} ({', '.join(self.spaces)})"


SourceConfig = Annotated[GitLabSource | JiraSource | ConfluenceSource, Field(discriminator="kind")]
_ADAPTER: TypeAdapter[Any] = TypeAdapter(SourceConfig)
REMOTE_KINDS = ("gitlab", "jira", "confluence")


def _explain(exc: ValidationError, where: str, kind: Any = None) -> SourceConfigError:
    errors = [(e["loc"], e["msg"].removeprefix("Value error, ")) for e in exc.errors()]
    text = "; ".join(f"{'.'.join(str(p) for p in loc) or 'source'}: {msg}" for loc, msg in errors)
    # the discriminated union puts the kind first in every path: a field path is the rest
    problems = tuple((tuple(loc[1:] if loc[:1] == (kind,) else loc), msg) for loc, msg in errors)
    return SourceConfigError(f"{where}: {text}", problems)


def parse_source(data: dict[str, Any], where: str = "source") -> GitLabSource | JiraSource | ConfluenceSource:
    try:
        return _ADAPTER.validate_python(data)
    except ValidationError as exc:
        raise _explain(exc, where, data.get("kind")) from None


def from_catalog(row: Any) -> GitLabSource | JiraSource | ConfluenceSource:
    """The validated config of a catalog source row (the stored `location` is derived, so dropped)."""
    # `location` is derived; the webhook secret's hash is the webhook route's, not the connector's
    data = {k: v for k, v in (row.config or {}).items() if k not in ("location", SECRET_KEY)}
    return parse_source({**data, "name": row.name, "kind": row.kind, "default_access": list(row.access)},
                        where=f"source {row.name!r}")


def load_sources(path: Path) -> list[GitLabSource | JiraSource | ConfluenceSource]:
    """Read a sources YAML file: `sources: [{name, kind, url, ...}, ...]`."""
    try:
        data = yaml.safe_load(Path(path).read_text(encoding="utf-8"))
    except OSError as exc:
        raise SourceConfigError(f"{path}: {exc.strerror}") from None
    except yaml.YAMLError as exc:
        raise SourceConfigError(f"{path}: not valid YAML ({exc})") from None
    items = data.get("sources") if isinstance(data, dict) else None
    if not isinstance(items, list):
        raise SourceConfigError(f"{path}: expected a top-level `sources:` list")
    out = [parse_source(item if isinstance(item, dict) else {}, where=f"{path}: sources[{i}]")
           for i, item in enumerate(items)]
    names = [s.name for s in out]
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        raise SourceConfigError(f"{path}: duplicate source names: {', '.join(duplicates)}")
    return out
