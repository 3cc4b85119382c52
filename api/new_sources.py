"""Adding a source: a definition from `POST /v1/sources` or `cairn sources add` validated into its connector's
config (the models of connectors/config.py, which a sources file goes through too) and written to the catalog.
One code path for the API and the CLI; a credential is only ever referenced (token_env / token_file)."""
from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from connectors.config import ConfluenceSource, GitLabSource, JiraSource, SourceConfigError, parse_source
from connectors.webhooks import SECRET_KEY
from indexer.catalog import Catalog
from workers.maintenance import set_interval
from workers.window import parse_duration

RemoteSource = GitLabSource | JiraSource | ConfluenceSource
UNSET: Any = object()  # no interval asked for: the default one applies

# The API and the CLI say `access` for who may read a source (as GET and PATCH /v1/sources show it), the
# sources file `default_access`; a Jira project's or Confluence space's own readers are `project_access` /
# `space_access` there, the file's `access` map.
KEY_ACCESS = {"jira": "project_access", "confluence": "space_access"}
EMPTY: tuple[Any, ...] = ("", [], {}, None)  # left out, so the config's default applies


def _file_names(kind: Any) -> dict[str, str]:
    """API/CLI field → sources-file field, for this kind."""
    return {"access": "default_access"} | ({KEY_ACCESS[kind]: "access"} if kind in KEY_ACCESS else {})


def remote_source(data: Mapping[str, Any]) -> RemoteSource:
    """A GitLab, Jira or Confluence source from the fields given (empty ones left out), validated exactly as a
    sources-file entry is. SourceConfigError says what is wrong, by the caller's field names."""
    kind, name = data.get("kind"), data.get("name")
    if "default_access" in data:
        raise SourceConfigError(f"source {name!r}: default_access: give access (who may read it)",
                                ((("default_access",), "give access (who may read it)"),))
    names = _file_names(kind)
    try:
        return parse_source({names.get(k, k): v for k, v in data.items() if v not in EMPTY})
    except SourceConfigError as exc:
        back = {file: given for given, file in names.items()}
        problems = tuple(((back.get(str(loc[0]), loc[0]), *loc[1:]) if loc else (), msg) for loc, msg in exc.problems)
        text = "; ".join(f"{'.'.join(str(p) for p in loc)}: {msg}" if loc else msg for loc, msg in problems)
        raise SourceConfigError(f"source {name!r}: {text}", problems) from None


def parse_interval(text: str) -> int:
    """`1h`, `30m`, `0` (never) → seconds."""
    try:
        return int(parse_duration(text).total_seconds())
    except ValueError as exc:
        raise SourceConfigError(f"interval: {exc}", ((("interval",), str(exc)),)) from None


def save_source(catalog: Catalog, name: str, kind: str, config: dict[str, Any], access: list[str],
                interval_seconds: int | Any = UNSET) -> None:
    """Write a source to the catalog: a new one, or the same kind again (the CLI and a sources file update in
    place, keeping the webhook secret's hash); another kind under that name is refused."""
    existing = catalog.get_source(name)
    if existing is not None and existing.kind != kind:
        raise SourceConfigError(f"source {name!r} exists with kind {existing.kind!r}; choose another name")
    kept = {SECRET_KEY: existing.config[SECRET_KEY]} if existing and SECRET_KEY in existing.config else {}
    catalog.upsert_source(name, kind, config | kept, access)
    if interval_seconds is not UNSET:
        set_interval(catalog, name, interval_seconds)


def save_remote(catalog: Catalog, config: RemoteSource, interval_seconds: int | Any = UNSET) -> None:
    save_source(catalog, config.name, config.kind, config.catalog_config(), config.default_access, interval_seconds)
