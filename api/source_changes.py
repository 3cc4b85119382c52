"""Changing a registered source (access, ref, location, schedule, credential reference): validated the
way adding one is, written to the catalog, and what must follow (an ACL rewrite, a sync). One code path
behind `PATCH /v1/sources/{name}`, `cairn sources set` and `cairn index` on an existing source."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from api.errors import BadRequest
from connectors.config import SourceConfigError, from_catalog, git_config, parse_source
from indexer.catalog import Catalog
from indexer.catalog.schema import SourceRecord
from indexer.models import Access
from workers.maintenance import intervals, set_interval
from workers.window import parse_duration

MAX_LOCATION = 2000  # as in `POST /v1/sources` (api/schemas.py SourceIn)
MAX_REF = 255
UNSET: Any = object()  # "not asked to change" (None is a value: the default interval)


@dataclass(frozen=True)
class SourceChange:
    """What to change; a field left UNSET stays as it is."""

    access: list[str] | Any = UNSET
    ref: str | Any = UNSET
    location: str | Any = UNSET
    interval: str | Any | None = UNSET  # "1h", "0" (never), None (the default interval)
    token_env: str | Any = UNSET
    token_file: str | Any = UNSET

    def asked(self) -> dict[str, Any]:
        return {k: v for k, v in self.__dict__.items() if v is not UNSET}


@dataclass
class PlannedChange:
    """A validated change: the source's new row values and what has to run afterwards."""

    name: str
    kind: str
    config: dict[str, Any]
    access: list[str]
    interval_seconds: int | Any | None = UNSET
    changed: list[str] = field(default_factory=list)
    reset_checkpoint: bool = False

    @property
    def rewrite_access(self) -> bool:
        """A git source's documents all carry its access list: rewrite them from the catalog at once."""
        return self.kind == "git" and "access" in self.changed

    @property
    def sync(self) -> str | None:
        """`full` when every item must be read again, `index` for an ordinary sync, None for none."""
        if self.kind != "git" and "access" in self.changed:
            return "full"  # a remote source's access is its fallback: only items read again get it
        moved = {"ref", "location"} | ({"token_env", "token_file"} if self.kind == "git" else set())
        return "index" if moved & set(self.changed) else None


def _interval(text: str | None) -> int | None:
    if text is None:
        return None
    try:
        return int(parse_duration(text).total_seconds())
    except ValueError as exc:
        raise BadRequest(f"interval: {exc}") from None


def _git_config(row: SourceRecord, asked: dict[str, Any]) -> dict[str, Any]:
    """The git source's new config: a location without credentials, the token only by reference."""
    config = dict(row.config)
    if "location" in asked:
        location = str(asked["location"]).strip()
        if not location or len(location) > MAX_LOCATION:
            raise BadRequest(f"location must be 1 to {MAX_LOCATION} characters")
        config["location"] = location
    if "ref" in asked:
        if len(asked["ref"]) > MAX_REF:
            raise BadRequest(f"ref must be at most {MAX_REF} characters")
        config["ref"] = asked["ref"].strip()
    for key, other in (("token_env", "token_file"), ("token_file", "token_env")):
        if asked.get(key):  # one credential reference replaces the other
            config[key], config[other] = asked[key], ""
    try:
        return git_config(row.name, config["location"], config.get("ref") or "", config.get("token_env") or "",
                          config.get("token_file") or "", config.get("username") or "", previous=row.config)
    except SourceConfigError as exc:
        raise BadRequest(str(exc)) from None


def _remote_config(row: SourceRecord, asked: dict[str, Any], access: list[str]) -> dict[str, Any]:
    try:
        data = from_catalog(row).model_dump(mode="json")
    except SourceConfigError as exc:
        raise BadRequest(str(exc)) from None
    if "location" in asked:
        data["url"] = asked["location"]
    if "ref" in asked:
        if "ref" not in data:
            raise BadRequest(f"source {row.name!r} is a {row.kind} source: it has no ref")
        data["ref"] = asked["ref"]
    for key, other in (("token_env", "token_file"), ("token_file", "token_env")):
        if asked.get(key):  # one credential reference replaces the other
            data[key], data[other] = asked[key], ""
    data["default_access"] = access
    try:
        config = parse_source(data, where=f"source {row.name!r}")
    except SourceConfigError as exc:
        raise BadRequest(str(exc)) from None
    kept = {k: row.config[k] for k in ("webhook_secret_sha256",) if k in row.config}  # not a connector option
    return config.catalog_config() | kept


def plan_change(catalog: Catalog, name: str, change: SourceChange) -> PlannedChange:
    """Validate a change against the stored source (LookupError when there is none)."""
    row = catalog.get_source(name)
    if row is None:
        raise LookupError(f"no source named {name!r}")
    asked = change.asked()
    access = sorted(Access.of(*asked["access"]).principals) if "access" in asked else sorted(row.access)
    config = _git_config(row, asked) if row.kind == "git" else _remote_config(row, asked, access)
    plan = PlannedChange(name=name, kind=row.kind, config=config, access=access)
    if "interval" in asked:
        plan.interval_seconds = _interval(asked["interval"])
        if intervals(catalog).get(name) != plan.interval_seconds:
            plan.changed.append("interval")
    if access != sorted(row.access):
        plan.changed.append("access")
    for key in ("location", "ref", "token_env", "token_file") if row.kind == "git" else \
            ("url", "ref", "token_env", "token_file"):
        if (config.get(key) or "") != (row.config.get(key) or ""):
            plan.changed.append({"url": "location"}.get(key, key))
    plan.changed = sorted(set(plan.changed))
    plan.reset_checkpoint = bool({"location", "ref"} & set(plan.changed))
    return plan


def apply_change(catalog: Catalog, plan: PlannedChange) -> None:
    """Write the planned change to the catalog (the follow-up jobs are the caller's)."""
    catalog.upsert_source(plan.name, plan.kind, plan.config, plan.access)
    if plan.reset_checkpoint:  # a cursor into another repository or ref means nothing
        catalog.set_checkpoint(plan.name, None)
    if plan.interval_seconds is not UNSET:
        set_interval(catalog, plan.name, plan.interval_seconds)
