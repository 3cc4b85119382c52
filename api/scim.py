"""SCIM 2.0 service provider (RFC 7643/7644) at /scim/v2, so the organization's IdP provisions and
deprovisions people and groups: Users and Groups (list with filters, get, create, replace, patch, delete)
and the discovery documents. Authenticated by one bearer secret (CAIRN_SCIM_TOKEN_FILE or _ENV), compared
in constant time and never logged; without one, every /scim/v2 path answers 404. What provisioning does to
Cairn's users is in api/provisioning.py."""
from __future__ import annotations

import hashlib
import hmac
import logging
import os
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from fastapi import APIRouter, Depends, FastAPI, Query, Request
from fastapi.responses import JSONResponse, Response
from sqlalchemy.exc import IntegrityError
from starlette.concurrency import run_in_threadpool

from api.oidc import public_base
from api.provisioning import Directory, Duplicate, GroupData, ProvisionedGroup, ProvisionedUser, UnknownMember, UserData
from api.scim_patch import apply_patch
from api.scim_protocol import (
    ENTERPRISE,
    GROUP,
    MAX_RESULTS,
    USER,
    ScimError,
    list_response,
    matches,
    paging,
    parse_filter,
    simple_equality,
)
from api.scim_schemas import SCHEMAS, resource_types, schemas, service_provider_config
from indexer.models import Principal
from indexer.settings import Settings

log = logging.getLogger(__name__)

PREFIX = "/scim/v2"
MEDIA_TYPE = "application/scim+json"
READ_ONLY = frozenset({"id", "meta", "schemas", "groups", "password"})  # never stored from a request
CLIENT = Principal(user="scim", admin=True)  # the IdP's provisioning client, as the audit log names it


class ScimConfigError(RuntimeError):
    """The configured SCIM secret cannot be read; a short message naming the setting."""


def scim_secret(settings: Settings) -> bytes | None:
    """The SHA-256 of the bearer secret SCIM clients must send (the secret itself is not kept); None = off."""
    if settings.scim_token_file is not None:
        try:
            secret = settings.scim_token_file.read_text(encoding="utf-8").strip()
        except OSError as exc:
            raise ScimConfigError(f"cannot read CAIRN_SCIM_TOKEN_FILE: {exc.strerror}") from exc
        where = "CAIRN_SCIM_TOKEN_FILE"
    elif settings.scim_token_env:
        secret = os.environ.get(settings.scim_token_env, "").strip()
        where = f"environment variable {settings.scim_token_env} (CAIRN_SCIM_TOKEN_ENV)"
    else:
        return None
    if len(secret) < 16:
        raise ScimConfigError(f"the SCIM secret in {where} is empty or shorter than 16 characters")
    return hashlib.sha256(secret.encode()).digest()


def client(request: Request) -> None:
    """Only the IdP's provisioning client: the bearer secret, compared in constant time."""
    digest = request.app.state.scim_secret
    if digest is None:
        raise ScimError(404, "SCIM is not enabled on this server (CAIRN_SCIM_TOKEN_FILE or CAIRN_SCIM_TOKEN_ENV)")
    scheme, _, given = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not hmac.compare_digest(hashlib.sha256(given.strip().encode()).digest(), digest):
        raise ScimError(401, "missing or wrong SCIM bearer secret")


router = APIRouter(prefix=PREFIX, tags=["scim"], dependencies=[Depends(client)])


def _answer(body: Any, status: int = 200) -> JSONResponse:
    return JSONResponse(body, status_code=status, media_type=MEDIA_TYPE)


def _base(request: Request) -> str:
    return public_base(request.app.state.settings) + PREFIX


def _directory(request: Request) -> Directory:
    return request.app.state.directory


async def _body(request: Request) -> Any:
    try:
        return await request.json()
    except ValueError as exc:
        raise ScimError(400, "the body is not JSON", "invalidSyntax") from exc


def _get(body: dict[str, Any], name: str) -> Any:
    return next((v for k, v in body.items() if k.lower() == name.lower()), None)


def _text(value: Any, name: str, limit: int = 255, required: bool = False) -> str | None:
    if value is None and not required:
        return None
    if not isinstance(value, str) or not value.strip() or len(value) > limit:
        raise ScimError(400, f"{name} must be a non-empty string of at most {limit} characters", "invalidValue")
    return value.strip()


def _flag(value: Any) -> bool:
    """`active`: a boolean; Entra ID has been known to send "True"/"False" strings."""
    if value is None:
        return True
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.lower() in ("true", "false"):
        return value.lower() == "true"
    raise ScimError(400, "active must be true or false", "invalidValue")


def _primary_email(emails: Any) -> str | None:
    if emails is None:
        return None
    if not isinstance(emails, list) or not all(isinstance(e, dict) for e in emails):
        raise ScimError(400, "emails must be a list of objects", "invalidValue")
    chosen = next((e for e in emails if e.get("primary") is True), emails[0] if emails else None)
    return _text(chosen.get("value"), "emails.value", 320) if chosen else None


def user_data(body: Any) -> UserData:
    if not isinstance(body, dict):
        raise ScimError(400, "a User is a JSON object", "invalidSyntax")
    user_name = _text(_get(body, "userName"), "userName", required=True)
    assert user_name is not None
    external_id = _text(_get(body, "externalId"), "externalId")
    active = _flag(_get(body, "active"))
    email = _primary_email(_get(body, "emails"))
    kept = {k: v for k, v in body.items() if k.lower() not in READ_ONLY | {"username", "externalid", "active"}}
    resource = kept | {"userName": user_name, "active": active} | ({"externalId": external_id} if external_id else {})
    return UserData(user_name=user_name, external_id=external_id, active=active, email=email, resource=resource)


def group_data(body: Any) -> GroupData:
    if not isinstance(body, dict):
        raise ScimError(400, "a Group is a JSON object", "invalidSyntax")
    name = _text(_get(body, "displayName"), "displayName", required=True)
    assert name is not None
    members = _get(body, "members") or []
    if not isinstance(members, list) or not all(isinstance(m, dict) and isinstance(m.get("value"), str)
                                                for m in members):
        raise ScimError(400, "members must be a list of {\"value\": \"<user id>\"}", "invalidValue")
    return GroupData(display_name=name, external_id=_text(_get(body, "externalId"), "externalId"),
                     members=tuple(m["value"] for m in members))


def _meta(kind: str, created: Any, modified: Any, location: str) -> dict[str, Any]:
    return {"resourceType": kind, "created": created.isoformat(), "lastModified": modified.isoformat(),
            "location": location}


def user_out(user: ProvisionedUser, base: str) -> dict[str, Any]:
    return {**user.resource, "schemas": [USER] + ([ENTERPRISE] if ENTERPRISE in user.resource else []),
            "id": user.id, "active": user.active,
            "groups": [{"value": g, "display": name, "$ref": f"{base}/Groups/{g}"} for g, name in user.groups],
            "meta": _meta("User", user.created_at, user.updated_at, f"{base}/Users/{user.id}")}


def group_out(group: ProvisionedGroup, base: str) -> dict[str, Any]:
    out: dict[str, Any] = {"schemas": [GROUP], "id": group.id, "displayName": group.display_name}
    if group.external_id:
        out["externalId"] = group.external_id
    out["members"] = [{"value": u, "display": name, "$ref": f"{base}/Users/{u}"} for u, name in group.members]
    out["meta"] = _meta("Group", group.created_at, group.updated_at, f"{base}/Groups/{group.id}")
    return out


def _project(resource: dict[str, Any], params: Any) -> dict[str, Any]:
    """`attributes=` (only those, with id, schemas and meta) and `excludedAttributes=` (top level names)."""
    names = lambda key: {a.strip().rsplit(":", 1)[-1].split(".")[0].lower()  # noqa: E731
                         for a in params.get(key, "").split(",") if a.strip()}
    wanted, dropped = names("attributes"), names("excludedAttributes")
    keep = {"id", "schemas", "meta"}
    return {k: v for k, v in resource.items()
            if (not wanted or k.lower() in wanted | keep) and (k.lower() not in dropped or k.lower() in keep)}


@dataclass(frozen=True)
class ListQuery:
    """A list request's query (RFC 7644 §3.4.2), validated here so that errors keep SCIM's schema."""

    filter: str | None = Query(None, description='e.g. userName eq "alice"')
    start_index: str | None = Query(None, alias="startIndex", description="1-based")
    count: str | None = Query(None, description=f"at most {MAX_RESULTS}")
    attributes: str | None = Query(None, description="comma-separated: only these (with id, schemas, meta)")
    excluded_attributes: str | None = Query(None, alias="excludedAttributes", description="comma-separated")

    def params(self) -> dict[str, str]:
        pairs = {"filter": self.filter, "startIndex": self.start_index, "count": self.count,
                 "attributes": self.attributes, "excludedAttributes": self.excluded_attributes}
        return {k: v for k, v in pairs.items() if v is not None}


def _listed(request: Request, query: ListQuery, everything: Callable[..., list], out: Callable[[Any, str], dict],
            indexed: tuple[str, ...]) -> dict[str, Any]:
    """A list request: a lone `attr eq "value"` on an indexed attribute is a lookup, any other filter a scan."""
    params = query.params()
    start, count = paging(params)
    node = parse_filter(params["filter"]) if params.get("filter") else None
    simple = simple_equality(node)
    key = {"username": "user_name", "displayname": "display_name", "externalid": "external_id"}.get(
        simple[0] if simple else "")
    base = _base(request)
    if simple and key in indexed:
        found = [out(x, base) for x in everything(**{key: simple[1]})]
    else:
        found = [r for r in (out(x, base) for x in everything()) if node is None or matches(node, r)]
    return list_response([_project(r, params) for r in found], start, count)


def _audit(request: Request, action: str, target: str) -> None:
    request.app.state.audit.record(CLIENT, action, target=target)
    log.info("SCIM %s %s", action, target)


def _write(call: Callable[[], Any]) -> Any:
    try:
        return call()
    except Duplicate as exc:
        raise ScimError(409, str(exc), "uniqueness") from exc
    except UnknownMember as exc:
        raise ScimError(400, str(exc), "invalidValue") from exc
    except IntegrityError as exc:  # a concurrent request provisioned the same name first
        raise ScimError(409, "a concurrent change provisioned the same userName, displayName or person",
                        "uniqueness") from exc


# -- discovery

@router.get("/ServiceProviderConfig")
def get_service_provider_config(request: Request) -> JSONResponse:
    """What this service provider supports (PATCH and filters; no bulk, sort, ETags or passwords)."""
    return _answer(service_provider_config(_base(request)))


@router.get("/ResourceTypes")
def get_resource_types(request: Request) -> JSONResponse:
    """User (with the enterprise extension) and Group."""
    found = resource_types(_base(request))
    return _answer(list_response(found, 1, len(found)))


@router.get("/ResourceTypes/{name}")
def get_resource_type(name: str, request: Request) -> JSONResponse:
    found = next((r for r in resource_types(_base(request)) if r["id"] == name), None)
    if found is None:
        raise ScimError(404, f"no resource type {name!r}")
    return _answer(found)


@router.get("/Schemas")
def get_schemas(request: Request) -> JSONResponse:
    """The User, Group and EnterpriseUser schemas."""
    found = schemas(_base(request))
    return _answer(list_response(found, 1, len(found)))


@router.get("/Schemas/{schema_id}")
def get_schema(schema_id: str, request: Request) -> JSONResponse:
    if schema_id not in SCHEMAS:
        raise ScimError(404, f"no schema {schema_id!r}")
    return _answer(next(s for s in schemas(_base(request)) if s["id"] == schema_id))


# -- users

def _user(request: Request, user_id: str) -> ProvisionedUser:
    found = _directory(request).user(user_id)
    if found is None:
        raise ScimError(404, f"no user {user_id!r}")
    return found


@router.get("/Users")
def list_users(request: Request, query: ListQuery = Depends()) -> JSONResponse:
    """`filter=userName eq "x"` (and any other filter), `startIndex`, `count`, `attributes`, `excludedAttributes`."""
    return _answer(_listed(request, query, _directory(request).users, user_out, ("user_name", "external_id")))


@router.post("/Users")
async def create_user(request: Request) -> JSONResponse:
    data = user_data(await _body(request))
    user = await run_in_threadpool(_write, lambda: _directory(request).create_user(data))
    await run_in_threadpool(_audit, request, "scim.users.create", user.id)
    return _answer(user_out(user, _base(request)), 201)


@router.get("/Users/{user_id}")
def get_user(user_id: str, request: Request) -> JSONResponse:
    return _answer(_project(user_out(_user(request, user_id), _base(request)), request.query_params))


def _replace_user(request: Request, user_id: str, data: UserData, action: str) -> JSONResponse:
    user = _write(lambda: _directory(request).replace_user(user_id, data))
    if user is None:
        raise ScimError(404, f"no user {user_id!r}")
    _audit(request, action if user.active else "scim.users.deactivate", user_id)
    return _answer(user_out(user, _base(request)))


@router.put("/Users/{user_id}")
async def replace_user(user_id: str, request: Request) -> JSONResponse:
    """Replace the user; `active: false` deactivates: sessions ended and personal tokens revoked at once."""
    data = user_data(await _body(request))
    return await run_in_threadpool(_replace_user, request, user_id, data, "scim.users.replace")


@router.patch("/Users/{user_id}")
async def patch_user(user_id: str, request: Request) -> JSONResponse:
    """PatchOp (add, replace, remove), e.g. `{"op": "replace", "path": "active", "value": false}`."""
    body = await _body(request)
    current = await run_in_threadpool(_user, request, user_id)
    data = user_data(apply_patch(user_out(current, _base(request)), body))
    return await run_in_threadpool(_replace_user, request, user_id, data, "scim.users.patch")


@router.delete("/Users/{user_id}", status_code=204)
def delete_user(user_id: str, request: Request) -> Response:
    """The user is gone: deactivated as above (their `users` row stays, inactive) and unprovisioned."""
    if not _directory(request).delete_user(user_id):
        raise ScimError(404, f"no user {user_id!r}")
    _audit(request, "scim.users.delete", user_id)
    return Response(status_code=204)


# -- groups

def _group(request: Request, group_id: str) -> ProvisionedGroup:
    found = _directory(request).group(group_id)
    if found is None:
        raise ScimError(404, f"no group {group_id!r}")
    return found


@router.get("/Groups")
def list_groups(request: Request, query: ListQuery = Depends()) -> JSONResponse:
    """`filter=displayName eq "x"` (and any other filter), paging and attribute selection as for Users."""
    return _answer(_listed(request, query, _directory(request).groups, group_out, ("display_name", "external_id")))


@router.post("/Groups")
async def create_group(request: Request) -> JSONResponse:
    data = group_data(await _body(request))
    group = await run_in_threadpool(_write, lambda: _directory(request).create_group(data))
    await run_in_threadpool(_audit, request, "scim.groups.create", group.id)
    return _answer(group_out(group, _base(request)), 201)


@router.get("/Groups/{group_id}")
def get_group(group_id: str, request: Request) -> JSONResponse:
    return _answer(_project(group_out(_group(request, group_id), _base(request)), request.query_params))


def _replace_group(request: Request, group_id: str, data: GroupData, action: str) -> JSONResponse:
    group = _write(lambda: _directory(request).replace_group(group_id, data))
    if group is None:
        raise ScimError(404, f"no group {group_id!r}")
    _audit(request, action, group_id)
    return _answer(group_out(group, _base(request)))


@router.put("/Groups/{group_id}")
async def replace_group(group_id: str, request: Request) -> JSONResponse:
    """Replace name and members; members' `users.groups` change at once."""
    data = group_data(await _body(request))
    return await run_in_threadpool(_replace_group, request, group_id, data, "scim.groups.replace")


@router.patch("/Groups/{group_id}")
async def patch_group(group_id: str, request: Request) -> JSONResponse:
    """PatchOp: add/remove `members`, `members[value eq "id"]`, replace `displayName`."""
    body = await _body(request)
    current = await run_in_threadpool(_group, request, group_id)
    data = group_data(apply_patch(group_out(current, _base(request)), body))
    return await run_in_threadpool(_replace_group, request, group_id, data, "scim.groups.patch")


@router.delete("/Groups/{group_id}", status_code=204)
def delete_group(group_id: str, request: Request) -> Response:
    if not _directory(request).delete_group(group_id):
        raise ScimError(404, f"no group {group_id!r}")
    _audit(request, "scim.groups.delete", group_id)
    return Response(status_code=204)


def install(app: FastAPI, settings: Settings) -> None:
    """Mount /scim/v2 with its error answers; reads the secret now (a bad setting fails at start)."""
    app.state.scim_secret = scim_secret(settings)

    async def scim_error(_request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, ScimError)
        headers = {"WWW-Authenticate": 'Bearer realm="cairn-scim"'} if exc.status == 401 else None
        return JSONResponse(exc.body(), status_code=exc.status, media_type=MEDIA_TYPE, headers=headers)

    app.add_exception_handler(ScimError, scim_error)
    app.include_router(router)
