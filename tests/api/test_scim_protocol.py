"""SCIM filters and PATCH operations on resources' JSON, in the forms Okta and Entra ID send (RFC 7644)."""
from __future__ import annotations

import pytest

from api.scim_patch import apply_patch
from api.scim_protocol import ENTERPRISE, PATCH_OP, USER, ScimError, list_response, matches, paging, parse_filter

CAROL = {"schemas": [USER], "id": "u1", "userName": "Carol", "externalId": "00uAbC", "active": True,
         "name": {"givenName": "Carol", "familyName": "Example"}, "title": "SRE",
         "emails": [{"value": "carol@example.com", "type": "work", "primary": True},
                    {"value": "c@home.example", "type": "home"}]}


@pytest.mark.parametrize(("text", "expected"), [
    ('userName eq "carol"', True),  # userName is not case-exact
    ('externalId eq "00uabc"', False),  # externalId is
    ('externalId eq "00uAbC"', True),
    ('urn:ietf:params:scim:schemas:core:2.0:User:userName eq "Carol"', True),
    ('emails.value eq "c@home.example"', True),
    ('emails eq "carol@example.com"', True),
    ('emails[type eq "work" and value ew "@example.com"]', True),
    ('emails[type eq "work" and value ew "@home.example"]', False),
    ('name.givenName sw "Ca" and not (title eq "CEO")', True),
    ('title eq "CEO" or active eq true', True),
    ('title pr and nickName pr', False),
    ('userName ne "carol"', False),
    ('active eq false', False),
])
def test_filters(text, expected):
    assert matches(parse_filter(text), CAROL) is expected


@pytest.mark.parametrize("text", ['userName eq', 'userName like "x"', '(userName eq "x"', 'userName eq "x" junk',
                                  'emails[type eq "work"', 'userName eq bareword'])
def test_bad_filters_are_invalid_filter_errors(text):
    with pytest.raises(ScimError) as caught:
        parse_filter(text)
    assert (caught.value.status, caught.value.scim_type) == (400, "invalidFilter")


def ops(*items):
    return {"schemas": [PATCH_OP], "Operations": list(items)}


def test_patch_forms():
    out = apply_patch(CAROL, ops(
        {"op": "replace", "value": {"active": False, "name.familyName": "Sample"}},  # no path (Okta, Entra ID)
        {"op": "Add", "path": 'emails[type eq "other"].value', "value": "carol@other.example"},  # absent: seeded
        {"op": "remove", "path": 'emails[type eq "home"]'},
        {"op": "replace", "path": "TITLE", "value": "Staff SRE"},  # attribute names are case-insensitive
        {"op": "add", "path": f"{ENTERPRISE}:manager.value", "value": "u9"},
        {"op": "add", "value": {ENTERPRISE: {"department": "Platform"}}}))
    assert out["active"] is False and out["name"] == {"givenName": "Carol", "familyName": "Sample"}
    assert [e["value"] for e in out["emails"]] == ["carol@example.com", "carol@other.example"]
    assert out["emails"][1]["type"] == "other" and out["title"] == "Staff SRE"
    assert out[ENTERPRISE] == {"manager": {"value": "u9"}, "department": "Platform"}
    assert CAROL["active"] is True and len(CAROL["emails"]) == 2  # the input is left alone


def test_patch_members_forms():
    group = {"displayName": "eng", "members": [{"value": "a"}, {"value": "b"}, {"value": "c"}]}
    out = apply_patch(group, ops({"op": "add", "path": "members", "value": [{"value": "b"}, {"value": "d"}]},
                                 {"op": "remove", "path": 'members[value eq "a"]'},
                                 {"op": "Remove", "path": "members", "value": [{"value": "c"}]}))  # Entra ID
    assert [m["value"] for m in out["members"]] == ["b", "d"]
    assert "members" not in apply_patch(group, ops({"op": "remove", "path": "members"}))


@pytest.mark.parametrize(("body", "scim_type"), [
    ({"Operations": [{"op": "add", "value": {}}]}, "invalidSyntax"),  # not a PatchOp message
    ({"schemas": [PATCH_OP], "Operations": []}, "invalidSyntax"),
    ({"schemas": [PATCH_OP], "Operations": [{"op": "move", "path": "title"}]}, "invalidSyntax"),
    ({"schemas": [PATCH_OP], "Operations": [{"op": "remove"}]}, "noTarget"),
    ({"schemas": [PATCH_OP], "Operations": [{"op": "replace", "value": "x"}]}, "invalidValue"),
    ({"schemas": [PATCH_OP], "Operations": [{"op": "replace", "path": 'emails[type eq "fax"]', "value": {}}]},
     "noTarget"),
])
def test_bad_patches(body, scim_type):
    with pytest.raises(ScimError) as caught:
        apply_patch(CAROL, body)
    assert (caught.value.status, caught.value.scim_type) == (400, scim_type)


def test_paging():
    page = list_response([{"id": str(i)} for i in range(5)], *paging({"startIndex": "2", "count": "2"}))
    assert (page["totalResults"], page["itemsPerPage"], page["startIndex"]) == (5, 2, 2)
    assert [r["id"] for r in page["Resources"]] == ["1", "2"]
    assert paging({"startIndex": "0", "count": "100000"}) == (1, 200)
    with pytest.raises(ScimError):
        paging({"count": "many"})
