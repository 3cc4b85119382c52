"""SCIM 2.0 provisioning over real HTTP, with people signing in through a real OpenID provider (oidc-provider
on loopback): users and groups round trips, the bearer secret, and deprovisioning that ends a person's
sessions and personal tokens at once."""
from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from api_harness import REFUND_PY, auth, index_document, serve
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from idp_harness import WEB_CLIENT_ID, WEB_CLIENT_SECRET, LocalIdP, authorize, free_socket, signed_in
from sqlalchemy import select

from api.app import create_app
from api.scim_protocol import ENTERPRISE, ERROR, GROUP, LIST, PATCH_OP, USER
from api.tokens import TokenStore
from indexer.catalog.schema import scim_users, sessions, users

SECRET = "test-only-scim-secret-5d1c9e"  # a test server's secret, never a real one
UI = {"X-Cairn-UI": "1"}


@pytest.fixture(scope="module")
def site(corpus, tmp_path_factory) -> Iterator[tuple[str, httpx.Client]]:
    work = tmp_path_factory.mktemp("scim")
    sock = free_socket()
    base = f"http://127.0.0.1:{sock.getsockname()[1]}"
    idp = LocalIdP(work, base).start()
    (work / "client-secret").write_text(WEB_CLIENT_SECRET, encoding="utf-8")
    (work / "scim-secret").write_text(SECRET + "\n", encoding="utf-8")
    settings = corpus.settings.model_copy(update={
        "oidc_issuer": idp.issuer, "oidc_client_id": WEB_CLIENT_ID, "oidc_client_secret_file": work / "client-secret",
        "oidc_scopes": "openid email profile groups", "admin_groups": ["cairn-admins"], "public_url": base,
        "rate_limit_per_minute": 0, "scim_token_file": work / "scim-secret"})
    index_document(corpus, "billing", "refund.py", REFUND_PY, ["idp:group:billing-readers"])
    try:
        with serve(create_app(settings, services=corpus), sock) as url:
            yield url, httpx.Client(base_url=url + "/scim/v2", headers=auth(SECRET), timeout=30)
    finally:
        idp.stop()


def user_body(name: str, **extra) -> dict:
    return {"schemas": [USER], "userName": name, "name": {"givenName": name.title(), "familyName": "Example"},
            "emails": [{"value": f"{name}@example.com", "type": "work", "primary": True}], "active": True, **extra}


def patch(*ops: dict) -> dict:
    return {"schemas": [PATCH_OP], "Operations": list(ops)}


def row(corpus, table, **where):
    with corpus.catalog.engine.connect() as conn:
        query = select(table).where(*[table.c[k] == v for k, v in where.items()])
        return conn.execute(query).mappings().first()


def test_scim_needs_the_bearer_secret(site):
    url, _scim = site
    for headers in ({}, auth("wrong-secret-of-the-same-kind"), {"Authorization": f"Basic {SECRET}"}):
        resp = httpx.get(url + "/scim/v2/Users", headers=headers)
        assert resp.status_code == 401 and resp.headers["content-type"].startswith("application/scim+json")
        assert resp.json()["schemas"] == [ERROR] and resp.json()["status"] == "401"
        assert resp.headers["www-authenticate"].startswith("Bearer")
    # Nor does a Cairn API token or a web session open SCIM.
    assert httpx.get(url + "/scim/v2/Users", cookies=signed_in(url, "bob").cookies).status_code == 401


def test_scim_is_off_without_a_secret(corpus):
    app = create_app(corpus.settings.model_copy(update={"rate_limit_per_minute": 0}), services=corpus)
    with serve(app) as url:
        resp = httpx.get(url + "/scim/v2/Users", headers=auth(SECRET))
    assert resp.status_code == 404 and resp.json()["schemas"] == [ERROR]


def test_discovery_documents(site):
    _url, scim = site
    config = scim.get("/ServiceProviderConfig").json()
    assert config["patch"]["supported"] and config["filter"]["supported"] and not config["bulk"]["supported"]
    assert config["authenticationSchemes"][0]["type"] == "oauthbearertoken"
    types = scim.get("/ResourceTypes").json()
    assert types["schemas"] == [LIST] and {t["id"]: t["endpoint"] for t in types["Resources"]} == {
        "User": "/Users", "Group": "/Groups"}
    assert scim.get("/ResourceTypes/User").json()["schema"] == USER
    assert {s["id"] for s in scim.get("/Schemas").json()["Resources"]} == {USER, GROUP, ENTERPRISE}
    user_schema = scim.get(f"/Schemas/{USER}").json()
    assert next(a for a in user_schema["attributes"] if a["name"] == "userName")["uniqueness"] == "server"
    assert scim.get("/Schemas/urn:nope").status_code == 404


def test_user_round_trip(site, corpus):
    _url, scim = site
    made = scim.post("/Users", json=user_body("carol", externalId="00u-carol"),
                     headers={"Content-Type": "application/scim+json"})
    assert made.status_code == 201, made.text
    carol = made.json()
    assert carol["userName"] == "carol" and carol["active"] is True and carol["schemas"] == [USER]
    assert carol["meta"]["location"].endswith(f"/scim/v2/Users/{carol['id']}") and carol["groups"] == []
    assert row(corpus, scim_users, id=carol["id"])["subject"] is None  # carol has not signed in yet

    # Filters IdPs send before creating: userName (case-insensitive), externalId, and others by scanning.
    for flt in ('userName eq "CAROL"', 'externalId eq "00u-carol"', 'emails[type eq "work" and value co "carol@"]',
                'name.givenName sw "Car" and active eq true'):
        found = scim.get("/Users", params={"filter": flt}).json()
        assert (found["totalResults"], found["Resources"][0]["id"]) == (1, carol["id"]), flt
    assert scim.get("/Users", params={"filter": 'userName eq "nobody"'}).json()["totalResults"] == 0
    bad = scim.get("/Users", params={"filter": 'userName ~~ "x"'})
    assert bad.status_code == 400 and bad.json()["scimType"] == "invalidFilter"
    assert scim.get("/Users", params={"filter": 'userName eq "carol"', "attributes": "userName"}).json()[
        "Resources"][0].keys() == {"id", "schemas", "meta", "userName"}

    dup = scim.post("/Users", json=user_body("Carol"))
    assert dup.status_code == 409 and dup.json()["scimType"] == "uniqueness"
    assert scim.post("/Users", json={"schemas": [USER]}).json()["scimType"] == "invalidValue"
    assert scim.post("/Users", content=b"{not json", headers={"Content-Type": "application/scim+json"}
                     ).json()["scimType"] == "invalidSyntax"

    replaced = scim.put(f"/Users/{carol['id']}", json=user_body("carol", displayName="Carol E.", password="p4ss",
                                                                  externalId="00u-carol"))
    assert replaced.status_code == 200 and replaced.json()["displayName"] == "Carol E."
    assert "password" not in replaced.json() and "p4ss" not in str(row(corpus, scim_users, id=carol["id"]))

    patched = scim.patch(f"/Users/{carol['id']}", json=patch(
        {"op": "Replace", "path": "name.givenName", "value": "Caroline"},
        {"op": "replace", "path": 'emails[type eq "work"].value', "value": "caroline@example.com"},
        {"op": "add", "path": f"{ENTERPRISE}:department", "value": "Platform"},
        {"op": "add", "value": {"title": "Engineer"}}))
    assert patched.status_code == 200, patched.text
    got = scim.get(f"/Users/{carol['id']}").json()
    assert got["name"]["givenName"] == "Caroline" and got["emails"][0]["value"] == "caroline@example.com"
    assert got[ENTERPRISE] == {"department": "Platform"} and ENTERPRISE in got["schemas"] and got["title"] == "Engineer"
    assert scim.patch(f"/Users/{carol['id']}", json={"Operations": []}).json()["scimType"] == "invalidSyntax"

    assert scim.delete(f"/Users/{carol['id']}").status_code == 204
    assert scim.get(f"/Users/{carol['id']}").status_code == 404
    assert scim.delete(f"/Users/{carol['id']}").status_code == 404


def test_a_user_provisioned_before_signing_in_is_found_at_first_sign_in(site, corpus):
    url, scim = site
    assert row(corpus, users, subject="alice") is None  # alice signs in for the first time in this module
    alice = scim.post("/Users", json=user_body("alice")).json()
    group = scim.post("/Groups", json={"schemas": [GROUP], "displayName": "platform",
                                       "members": [{"value": alice["id"]}]}).json()
    assert group["members"][0]["value"] == alice["id"]
    signed_in(url, "alice")
    assert row(corpus, scim_users, id=alice["id"])["subject"] == "alice"  # tied by userName to her `sub`
    person = row(corpus, users, subject="alice")
    assert person["active"] and "platform" in person["groups"]
    assert scim.get(f"/Users/{alice['id']}").json()["groups"][0]["display"] == "platform"


def test_group_membership_changes_reach_users_groups_at_once(site, corpus):
    url, scim = site
    signed_in(url, "bob")
    bob = scim.post("/Users", json=user_body("bob", externalId="bob")).json()
    assert row(corpus, scim_users, id=bob["id"])["subject"] == "bob"  # bob had signed in: tied at once
    admins = scim.post("/Groups", json={"schemas": [GROUP], "displayName": "cairn-admins", "externalId": "g-1"}).json()
    assert scim.get("/Groups", params={"filter": 'displayName eq "CAIRN-ADMINS"'}).json()["totalResults"] == 1

    assert scim.patch(f"/Groups/{admins['id']}", json=patch(
        {"op": "add", "path": "members", "value": [{"value": bob["id"]}]})).status_code == 200
    person = row(corpus, users, subject="bob")
    assert "cairn-admins" in person["groups"] and person["admin"]  # CAIRN_ADMIN_GROUPS over SCIM's groups
    assert scim.get("/Groups", params={"filter": f'members[value eq "{bob["id"]}"]',
                                       "excludedAttributes": "members"}).json()["Resources"][0].keys() >= {"id"}

    scim.patch(f"/Groups/{admins['id']}", json=patch({"op": "replace", "value": {"displayName": "ops-admins"}}))
    person = row(corpus, users, subject="bob")
    assert "ops-admins" in person["groups"] and "cairn-admins" not in person["groups"] and not person["admin"]

    scim.patch(f"/Groups/{admins['id']}", json=patch({"op": "remove", "path": f'members[value eq "{bob["id"]}"]'}))
    assert "ops-admins" not in row(corpus, users, subject="bob")["groups"]
    unknown = scim.patch(f"/Groups/{admins['id']}", json=patch(
        {"op": "add", "path": "members", "value": [{"value": "no-such-user"}]}))
    assert unknown.status_code == 400 and unknown.json()["scimType"] == "invalidValue"
    scim.put(f"/Groups/{admins['id']}", json={"displayName": "ops-admins", "members": [{"value": bob["id"]}]})
    assert "ops-admins" in row(corpus, users, subject="bob")["groups"]
    assert scim.delete(f"/Groups/{admins['id']}").status_code == 204
    assert "ops-admins" not in row(corpus, users, subject="bob")["groups"]
    assert scim.get(f"/Groups/{admins['id']}").status_code == 404

    # A personal token reads what the person's groups grant the moment SCIM changes them.
    tok = signed_in(url, "bob").post(url + "/v1/me/tokens", json={"name": "t", "expires_in_days": 7},
                                     headers=UI).json()["token"]
    refund = {"query": "refund payment"}
    sources = lambda: {h["source"] for h in httpx.post(url + "/v1/search", json=refund,  # noqa: E731
                                                        headers=auth(tok), timeout=60).json()["hits"]}
    assert "billing" not in sources()
    readers = scim.post("/Groups", json={"displayName": "billing-readers", "members": [{"value": bob["id"]}]}).json()
    assert "billing" in sources()
    scim.patch(f"/Groups/{readers['id']}", json=patch({"op": "Remove", "path": "members",
                                                       "value": [{"value": bob["id"]}]}))  # Entra ID's form
    assert "billing" not in sources()


def test_deactivation_ends_sessions_and_tokens_at_once(site, corpus):
    url, scim = site
    browser = signed_in(url, "bob")
    made = browser.post(url + "/v1/me/tokens", json={"name": "agent", "expires_in_days": 7}, headers=UI).json()
    search = {"query": "rollout canary"}
    assert httpx.post(url + "/v1/search", json=search, headers=auth(made["token"])).status_code == 200
    assert browser.get(url + "/v1/sources").status_code == 200
    bob = scim.get("/Users", params={"filter": 'userName eq "bob"'}).json()["Resources"][0]

    # Entra ID's form, with the string it has been known to send.
    off = scim.patch(f"/Users/{bob['id']}", json=patch({"op": "Replace", "path": "active", "value": "False"}))
    assert off.status_code == 200 and off.json()["active"] is False
    assert browser.get(url + "/v1/sources").status_code == 401  # the session is gone
    assert httpx.post(url + "/v1/search", json=search, headers=auth(made["token"])).status_code == 401
    assert not row(corpus, users, subject="bob")["active"]
    assert row(corpus, sessions, subject="bob") is None
    assert {t.state() for t in TokenStore(corpus.catalog.engine).list(subject="bob")} == {"revoked"}

    # Active again (Okta's form): bob may sign in again; revoked tokens stay revoked.
    on = scim.patch(f"/Users/{bob['id']}", json=patch({"op": "replace", "value": {"active": True}}))
    assert on.json()["active"] is True and row(corpus, users, subject="bob")["active"]
    assert httpx.post(url + "/v1/search", json=search, headers=auth(made["token"])).status_code == 401


def test_deleting_a_user_deprovisions_them(site, corpus):
    url, scim = site
    browser = signed_in(url, "alice")
    made = browser.post(url + "/v1/me/tokens", json={"name": "cli", "expires_in_days": 7}, headers=UI).json()
    alice = scim.get("/Users", params={"filter": 'userName eq "alice"'}).json()["Resources"][0]
    assert scim.delete(f"/Users/{alice['id']}").status_code == 204
    assert browser.get(url + "/v1/sources").status_code == 401
    assert httpx.get(url + "/v1/sources", headers=auth(made["token"])).status_code == 401
    assert not row(corpus, users, subject="alice")["active"]  # kept, inactive: a later sign-in is refused
    browser = httpx.Client(timeout=30, follow_redirects=False)
    start = browser.get(url + "/signin/oidc", params={"next": "/"}).headers["location"]
    refused = browser.get(authorize(browser, start, "alice", url + "/signin/callback"))
    assert refused.status_code == 403 and "deactivated" in refused.text and "cairn_session" not in browser.cookies
    # Provisioned again (the IdP re-adds her): tied to the same person, active again.
    again = scim.post("/Users", json=user_body("alice")).json()
    assert row(corpus, scim_users, id=again["id"])["subject"] == "alice" and row(corpus, users, subject="alice")["active"]


FILTERS = st.sampled_from(['userName eq "a"', 'emails[type eq "work"]', "(", ')', 'a eq', 'not (', 'x[y[z eq 1]]',
                           'members[value eq "x"].value', 'title gt 5', 'a eq "\\"', 'a pr or', "", " and "])
JSON = st.recursive(st.none() | st.booleans() | st.integers() | st.text(max_size=20),
                    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=12), inner, max_size=4),
                    max_leaves=15)
OPS = st.fixed_dictionaries({"op": st.sampled_from(["add", "replace", "remove", "Replace", "x"]) | JSON},
                            optional={"path": st.sampled_from(["active", "emails[type eq \"work\"].value", "members",
                                                               'members[value eq "x"]', f"{ENTERPRISE}:a.b",
                                                               "name.givenName", "[", "a[b", "urn:x"]) | JSON,
                                      "value": JSON})


def test_fuzzed_scim_requests_never_get_a_server_error(site):
    _url, scim = site
    carol = scim.post("/Users", json=user_body("fuzz-carol")).json()
    group = scim.post("/Groups", json={"displayName": "fuzz-group", "members": [{"value": carol["id"]}]}).json()

    @settings(deadline=None, database=None, max_examples=150, suppress_health_check=list(HealthCheck))
    @given(kind=st.sampled_from(["list", "post", "put", "patch"]), where=st.sampled_from(["Users", "Groups"]),
           flt=FILTERS | st.text(max_size=40), body=JSON, ops=st.lists(OPS, max_size=3), keep=st.booleans())
    def check(kind, where, flt, body, ops, keep) -> None:
        target = carol["id"] if where == "Users" else group["id"]
        if kind == "list":
            resp = scim.get(f"/{where}", params={"filter": flt, "startIndex": flt[:3], "count": "5"})
        elif kind == "post":
            resp = scim.post(f"/{where}", json=body)
        elif kind == "put":
            resp = scim.put(f"/{where}/{target}", json=body)
        else:
            resp = scim.patch(f"/{where}/{target}", json={"schemas": [PATCH_OP] if keep else body, "Operations": ops})
        assert resp.status_code < 500, (kind, where, flt, body, ops, resp.text[:300])
        if resp.status_code >= 400:
            assert resp.json()["schemas"] == [ERROR], resp.text[:300]

    check()


@pytest.mark.parametrize(("env", "says"), [
    ({"CAIRN_SCIM_TOKEN_FILE": "/nonexistent/cairn-scim"}, "cannot read CAIRN_SCIM_TOKEN_FILE"),
    ({"CAIRN_SCIM_TOKEN_ENV": "CAIRN_TEST_SCIM_SECRET", "CAIRN_TEST_SCIM_SECRET": "short"}, "shorter than 16"),
])
def test_an_unusable_scim_secret_stops_serve_with_a_short_error(tmp_path, env, says):
    cairn = str(Path(sys.executable).with_name("cairn"))
    run = subprocess.run([cairn, "serve", "--port", "0"], capture_output=True, text=True, timeout=120, check=False,
                         env={**os.environ, "CAIRN_DATA_DIR": str(tmp_path), **env})
    assert run.returncode == 1 and says in run.stderr and "Traceback" not in run.stderr, run.stderr[-500:]
    assert "short" not in run.stderr.replace("shorter", "")  # the secret itself is never printed
