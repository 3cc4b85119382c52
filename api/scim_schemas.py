"""The SCIM discovery documents IdPs read before provisioning (RFC 7643 §5-7): ServiceProviderConfig,
ResourceTypes and Schemas, describing what Cairn's /scim/v2 really supports (PATCH and filters yes; bulk,
sorting, ETags and password changes no)."""
from __future__ import annotations

from typing import Any

from api.scim_protocol import ENTERPRISE, GROUP, MAX_RESULTS, USER

SPC = "urn:ietf:params:scim:schemas:core:2.0:ServiceProviderConfig"
RESOURCE_TYPE = "urn:ietf:params:scim:schemas:core:2.0:ResourceType"
SCHEMA = "urn:ietf:params:scim:schemas:core:2.0:Schema"


def _attr(name: str, kind: str = "string", *, multi: bool = False, required: bool = False, exact: bool = False,
          mutability: str = "readWrite", uniqueness: str = "none", sub: list[dict] | None = None) -> dict[str, Any]:
    out: dict[str, Any] = {"name": name, "type": kind, "multiValued": multi, "description": name,
                           "required": required, "mutability": mutability, "returned": "default",
                           "uniqueness": uniqueness}
    if kind in ("string", "reference"):
        out["caseExact"] = exact
    return out | ({"subAttributes": sub} if sub else {})


def _multi(name: str, *, mutability: str = "readWrite") -> dict[str, Any]:
    """A multi-valued complex attribute of {value, display, type, primary} elements."""
    return _attr(name, "complex", multi=True, mutability=mutability,
                 sub=[_attr("value", exact=name in ("members", "groups"), mutability=mutability),
                      _attr("display", mutability=mutability), _attr("type", mutability=mutability),
                      _attr("primary", "boolean", mutability=mutability)])


SCHEMAS: dict[str, dict[str, Any]] = {
    USER: {"id": USER, "name": "User", "description": "A person the IdP provisions", "attributes": [
        _attr("userName", required=True, uniqueness="server"),
        _attr("name", "complex", sub=[_attr(n) for n in ("formatted", "familyName", "givenName", "middleName")]),
        _attr("displayName"), _attr("nickName"), _attr("title"), _attr("userType"), _attr("preferredLanguage"),
        _attr("locale"), _attr("timezone"), _attr("active", "boolean"),
        _multi("emails"), _multi("phoneNumbers"), _multi("groups", mutability="readOnly")]},
    GROUP: {"id": GROUP, "name": "Group", "description": "A group of users; its displayName is the group name",
            "attributes": [_attr("displayName", required=True, uniqueness="server"), _multi("members")]},
    ENTERPRISE: {"id": ENTERPRISE, "name": "EnterpriseUser", "description": "Enterprise attributes (kept, unused)",
                 "attributes": [_attr(n) for n in ("employeeNumber", "costCenter", "organization", "division",
                                                   "department")]},
}


def _meta(kind: str, base: str, path: str) -> dict[str, Any]:
    return {"resourceType": kind, "location": f"{base}{path}"}


def service_provider_config(base: str) -> dict[str, Any]:
    return {"schemas": [SPC], "patch": {"supported": True}, "bulk": {"supported": False, "maxOperations": 0, "maxPayloadSize": 0},
            "filter": {"supported": True, "maxResults": MAX_RESULTS}, "changePassword": {"supported": False},
            "sort": {"supported": False}, "etag": {"supported": False},
            "authenticationSchemes": [{"type": "oauthbearertoken", "name": "Bearer secret", "primary": True,
                                       "description": "The secret in CAIRN_SCIM_TOKEN_FILE or CAIRN_SCIM_TOKEN_ENV, "
                                                      "sent as Authorization: Bearer"}],
            "meta": _meta("ServiceProviderConfig", base, "/ServiceProviderConfig")}


def resource_types(base: str) -> list[dict[str, Any]]:
    return [{"schemas": [RESOURCE_TYPE], "id": "User", "name": "User", "endpoint": "/Users", "schema": USER,
             "schemaExtensions": [{"schema": ENTERPRISE, "required": False}],
             "meta": _meta("ResourceType", base, "/ResourceTypes/User")},
            {"schemas": [RESOURCE_TYPE], "id": "Group", "name": "Group", "endpoint": "/Groups", "schema": GROUP,
             "meta": _meta("ResourceType", base, "/ResourceTypes/Group")}]


def schemas(base: str) -> list[dict[str, Any]]:
    return [{"schemas": [SCHEMA], **doc, "meta": _meta("Schema", base, f"/Schemas/{doc['id']}")}
            for doc in SCHEMAS.values()]
