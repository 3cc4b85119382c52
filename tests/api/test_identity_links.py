"""One person across systems, end to end with the real local IdP: a person signed in through the IdP holds
their `idp:` principals, their linked account in each realm and that account's synced memberships, the
same by web session, JWT access token and personal token, resolved when each request arrives; links
made by admins (`/v1/users`, `cairn users`); searches filtered by exactly those principals."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from api_harness import auth, index_document, serve, token
from idp_harness import WEB_CLIENT_ID, WEB_CLIENT_SECRET, LocalIdP, authorize, free_socket
from sqlalchemy import update

from api.app import create_app
from api.oidc import Identity
from api.tokens import TokenStore
from indexer.catalog.schema import api_tokens, users
from indexer.identity.store import Membership
from tests.conftest import KEPT_ENV

CAIRN = str(Path(sys.executable).with_name("cairn"))
CACHE_SECONDS = 1.0
LEDGER = '''def settle_ledger_{name}(entries):
    """Settle the ledger entries of {name}: sum the postings and close the period."""
    return sum(entry.amount for entry in entries)
'''
# One source per kind of principal a connector writes; the ACL of each is the source's name's meaning.
ACLS = {
    "gl-a": "gitlab:group:a",  # bob's GitLab account 42 is a member (synced membership)
    "gl-b": "gitlab:group:b",  # only someone else's account is
    "gl-42": "gitlab:user:42",  # bob's GitLab account itself
    "atl-k1": "atlassian:user:K1",  # bob's Atlassian account
    "atl-role": "atlassian:role:SHOP/dev",  # a Jira project role bob's Atlassian account holds
    "idp-ops": "idp:group:ops",  # bob's IdP group
    "idp-eng": "idp:group:eng",  # not bob's
    "native-ops": "group:ops",  # Cairn's own group of that name: a person never holds it
    "native-bob": "user:bob",  # Cairn's own user of bob's username: a person never holds it
}
BOB_SEES = {"gl-a", "gl-42", "atl-k1", "atl-role", "idp-ops"}
BOB_HOLDS = ["atlassian:role:SHOP/dev", "atlassian:user:K1", "gitlab:group:a", "gitlab:user:42", "idp:group:ops",
             "idp:user:bob", "public"]


@pytest.fixture(scope="module")
def site(corpus, tmp_path_factory) -> Iterator[tuple[object, str, LocalIdP]]:
    work = tmp_path_factory.mktemp("identity")
    sock = free_socket()
    base = f"http://127.0.0.1:{sock.getsockname()[1]}"
    idp = LocalIdP(work, base).start()
    secret = work / "client-secret"
    secret.write_text(WEB_CLIENT_SECRET, encoding="utf-8")
    settings = corpus.settings.model_copy(update={
        "oidc_issuer": idp.issuer, "oidc_client_id": WEB_CLIENT_ID, "oidc_client_secret_file": secret,
        "oidc_scopes": "openid email profile groups", "admin_groups": ["cairn-admins"], "public_url": base,
        "rate_limit_per_minute": 0, "identity_cache_seconds": CACHE_SECONDS})
    for source, acl in ACLS.items():
        index_document(corpus, source, "ledger.py", LEDGER.format(name=source.replace("-", "_")), [acl])
    app = create_app(settings, services=corpus)
    try:
        with serve(app, sock) as url:
            yield app, url, idp
    finally:
        idp.stop()


@pytest.fixture(scope="module")
def root(corpus) -> str:
    return token(corpus, user="root", admin=True)


def sign_in(url: str, user: str) -> httpx.Client:
    """A browser with a web session of `user`, signed in at the IdP."""
    browser = httpx.Client(base_url=url, timeout=30, follow_redirects=False)
    start = browser.get("/signin/oidc", params={"next": "/"})
    resp = browser.get(authorize(browser, start.headers["location"], user, url + "/signin/callback"))
    assert resp.status_code == 303 and "cairn_session" in browser.cookies, resp.text[:300]
    return browser


def jwt_for(idp: LocalIdP, sub: str, **claims) -> str:
    now = int(time.time())
    return idp.sign({"iss": idp.issuer, "aud": idp.resource, "sub": sub, "iat": now, "exp": now + 300,
                     "preferred_username": sub, **claims})


def personal_token(corpus, subject: str) -> str:
    """A personal token of `subject` (its row names its owner, as the Tokens page makes them)."""
    tok, info = TokenStore(corpus.catalog.engine).create(subject, [], name="editor")
    with corpus.catalog.engine.begin() as conn:
        conn.execute(update(api_tokens).where(api_tokens.c.id == info.id).values(subject=subject))
    return tok


class Caller:
    """One credential of a person (a web session, a bearer token), asking what it may read."""

    def __init__(self, url: str, browser: httpx.Client | None = None, bearer: str = "") -> None:
        self.http = browser or httpx.Client(base_url=url, timeout=30, headers=auth(bearer))
        self.headers = {"X-Cairn-UI": "1"} if browser else {}

    def sources(self) -> set[str] | int:
        resp = self.http.get("/v1/sources")
        return {s["name"] for s in resp.json()} if resp.status_code == 200 else resp.status_code

    def searched(self, query: str = "settle the ledger entries") -> set[str] | int:
        resp = self.http.post("/v1/search", json={"query": query, "limit": 50}, headers=self.headers)
        return {h["source"] for h in resp.json()["hits"]} if resp.status_code == 200 else resp.status_code


@pytest.fixture
def bob(site, corpus, root) -> Iterator[dict[str, Caller]]:
    """bob (IdP group ops) linked to GitLab account 42 and Atlassian account K1 by an admin, with the
    memberships a permissions pass of each source synced; his session, a JWT and a personal token."""
    _app, url, idp = site
    store = _app.state.identity.store
    browser = sign_in(url, "bob")
    for realm, account in (("gitlab", "42"), ("atlassian", "K1")):
        resp = httpx.put(f"{url}/v1/users/bob/links/{realm}", json={"account": account, "display": "bob"},
                         headers=auth(root), timeout=30)
        assert resp.status_code == 200, resp.text
    store.replace_memberships("gitlab-src", [Membership("gitlab:group:a", "gitlab", "42"),
                                             Membership("gitlab:group:b", "gitlab", "99")])
    store.replace_memberships("jira-src", [Membership("atlassian:role:SHOP/dev", "atlassian", "K1")])
    callers = {"session": Caller(url, browser=browser), "jwt": Caller(url, bearer=jwt_for(idp, "bob", groups=["ops"])),
               "jwt without groups": Caller(url, bearer=jwt_for(idp, "bob")),
               "personal token": Caller(url, bearer=personal_token(corpus, "bob"))}
    try:
        yield callers
    finally:
        for realm in ("gitlab", "atlassian"):
            store.unlink("bob", realm)
        store.forget_source("gitlab-src")
        store.forget_source("jira-src")
        with corpus.catalog.engine.begin() as conn:
            conn.execute(update(users).where(users.c.subject == "bob").values(active=True))
        _app.state.identity.forget("bob")


def test_a_linked_person_holds_the_same_principals_by_session_jwt_and_personal_token(site, root, bob):
    _app, url, _idp = site
    for name, caller in bob.items():
        assert caller.sources() == BOB_SEES, name
        assert caller.searched() == BOB_SEES, name  # the search itself filtered by exactly these principals
    shown = httpx.get(f"{url}/v1/users/bob", headers=auth(root), timeout=30).json()
    assert shown["principals"] == BOB_HOLDS
    assert [(k["realm"], k["account"], k["method"]) for k in shown["links"]] == [("atlassian", "K1", "admin"),
                                                                                 ("gitlab", "42", "admin")]


def _gone_within(caller: Caller, source: str, seconds: float) -> float:
    """How long until `source` disappears from the caller's search results (fails past `seconds`)."""
    started = time.monotonic()
    while source in caller.searched():
        assert time.monotonic() - started < seconds, f"{source} still readable after {seconds} s"
        time.sleep(0.1)
    return time.monotonic() - started


def test_a_membership_removed_at_the_source_or_an_unlink_takes_access_away(site, root, bob):
    app, url, _idp = site
    for caller in bob.values():
        assert "gl-a" in caller.sources()
    # The GitLab source's next permissions pass finds bob's account no longer in group a.
    app.state.identity.store.replace_memberships("gitlab-src", [Membership("gitlab:group:b", "gitlab", "99")])
    for name, caller in bob.items():
        waited = _gone_within(caller, "gl-a", CACHE_SECONDS + 2)
        assert caller.sources() == BOB_SEES - {"gl-a"}, (name, waited)
    # An admin unlinks his Atlassian account: in this process at once (the cache is dropped).
    assert httpx.delete(f"{url}/v1/users/bob/links/atlassian", headers=auth(root), timeout=30).status_code == 200
    for name, caller in bob.items():
        assert caller.searched() == {"gl-42", "idp-ops"}, name


def test_a_deactivated_person_is_refused_everywhere_at_once(site, corpus, bob):
    _app, url, idp = site
    with corpus.catalog.engine.begin() as conn:  # what SCIM deprovisioning does
        conn.execute(update(users).where(users.c.subject == "bob").values(active=False))
    for name, caller in bob.items():
        assert caller.sources() == 401, name
        assert caller.searched() == 401, name
    mcp = httpx.post(url + "/mcp", headers={**auth(jwt_for(idp, "bob", groups=["ops"])),
                                            "Accept": "application/json, text/event-stream"}, json={}, timeout=30)
    assert mcp.status_code == 401
    assert bob["session"].http.get("/").headers["location"].startswith("/signin")
    # Signing in again does not undo a deactivation.
    browser = httpx.Client(base_url=url, timeout=30, follow_redirects=False)
    start = browser.get("/signin/oidc", params={"next": "/"})
    again = browser.get(authorize(browser, start.headers["location"], "bob", url + "/signin/callback"))
    assert again.status_code == 403 and "deactivated" in again.text and "cairn_session" not in browser.cookies


def test_a_person_with_no_link_holds_only_their_idp_principals(site, root):
    """dave's first request is a JWT (an MCP client signed him in at the IdP): he is recorded, and holds
    `idp:user:dave` and `idp:group:eng` only — not Cairn's `group:eng` of the corpus, whatever the name."""
    _app, url, idp = site
    dave = Caller(url, bearer=jwt_for(idp, "dave", groups=["eng"], email="dave@example.com", email_verified=True))
    assert dave.sources() == {"idp-eng"}
    assert dave.searched() == {"idp-eng"}
    assert dave.searched("retry with backoff") in (set(), {"idp-eng"})  # never eng or web (group:eng)
    shown = httpx.get(f"{url}/v1/users/dave@example.com", headers=auth(root), timeout=30).json()
    assert shown["principals"] == ["idp:group:eng", "idp:user:dave", "public"] and shown["links"] == []


def test_service_tokens_keep_cairns_own_names(site, corpus):
    _app, url, _idp = site
    svc = Caller(url, bearer=token(corpus, user="bob", groups=["ops"]))
    assert svc.sources() == {"ops", "native-ops", "native-bob"}
    assert {"native-ops", "native-bob"} <= svc.searched() <= svc.sources()
    # A service token named like an account or a group of a realm holds nothing of that realm.
    assert Caller(url, bearer=token(corpus, user="42", groups=["a"])).sources() == set()


def test_admins_link_users_over_the_api(site, corpus, root, bob):
    app, url, _idp = site
    sessions = app.state.sessions
    for subject in ("sam-1", "sam-2"):  # two people the IdP calls sam
        sessions.remember(Identity(subject=subject, username="sam", email=f"{subject}@example.com",
                                   email_verified=True, groups=(), admin=False))

    def put(user: str, realm: str, account: str, bearer: str = root) -> httpx.Response:
        return httpx.put(f"{url}/v1/users/{user}/links/{realm}", json={"account": account}, headers=auth(bearer),
                         timeout=30)

    conflict = put("sam-1@example.com", "gitlab", "42")  # bob's account
    assert conflict.status_code == 409 and "already linked to another user" in conflict.json()["detail"]
    ambiguous = put("sam", "gitlab", "43")
    assert ambiguous.status_code == 400 and "sam-1" in ambiguous.json()["detail"]
    assert "Traceback" not in conflict.text + ambiguous.text
    assert put("nobody", "gitlab", "43").status_code == 404
    assert put("sam-1", "Git Lab", "43").status_code == 400
    assert put("sam-1", "gitlab", "").status_code == 422
    assert put("sam-2", "gitlab", "43", bearer=jwt_for(site[2], "bob")).status_code == 403  # admins only
    assert bob["session"].http.get("/v1/users").status_code == 403
    linked = put("sam-1@example.com", "gitlab", "43")
    assert linked.status_code == 200 and "gitlab:user:43" in linked.json()["principals"]
    listed = httpx.get(f"{url}/v1/users", headers=auth(root), timeout=30).json()
    assert {u["subject"]: [k["account"] for k in u["links"]] for u in listed}["sam-1"] == ["43"]
    gone = httpx.delete(f"{url}/v1/users/sam-1/links/gitlab", headers=auth(root), timeout=30)
    assert gone.status_code == 200 and gone.json()["links"] == []
    assert httpx.delete(f"{url}/v1/users/sam-1/links/gitlab", headers=auth(root), timeout=30).status_code == 404
    audited = [(e.action, e.target, e.user) for e in app.state.audit.entries(limit=20) if e.action.startswith("users.")]
    assert ("users.link", "sam-1 gitlab:43", "root") in audited and ("users.unlink", "sam-1 gitlab", "root") in audited


def cairn(*args: str, data_dir: Path | None = None, url: str = "", tok: str = "") -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CAIRN_") or k in KEPT_ENV}
    env.update({"CAIRN_DATA_DIR": str(data_dir)} if data_dir else {})
    env.update({"CAIRN_URL": url, "CAIRN_TOKEN": tok} if url else {})
    return subprocess.run([CAIRN, "users", *args], check=False, capture_output=True, text=True, env=env, timeout=120)


def test_cairn_users_links_on_the_data_directory_and_over_http(site, corpus, root, bob):
    app, url, _idp = site
    data = corpus.settings.data_dir
    app.state.sessions.remember(Identity(subject="erin-sub", username="erin", email="erin@example.com",
                                         email_verified=True, groups=("eng",), admin=False))
    listed = cairn("list", "--json", data_dir=data)
    assert listed.returncode == 0, listed.stderr
    assert {"bob", "erin-sub"} <= {u["subject"] for u in json.loads(listed.stdout)}
    linked = cairn("link", "erin@example.com", "--realm", "atlassian", "--account", "E7", "--display", "erin",
                   "--json", data_dir=data)
    assert linked.returncode == 0, linked.stderr
    assert "atlassian:user:E7" in json.loads(linked.stdout)["principals"]
    shown = cairn("show", "erin", data_dir=data)
    assert shown.returncode == 0 and "atlassian:E7 (erin)" in shown.stdout and "idp:group:eng" in shown.stdout
    taken = cairn("link", "erin", "--realm", "gitlab", "--account", "42", data_dir=data)  # bob's
    assert taken.returncode == 1 and "already linked to another user" in taken.stderr
    unknown = cairn("show", "nobody@example.com", data_dir=data)
    assert unknown.returncode == 1 and "no user" in unknown.stderr
    assert "Traceback" not in taken.stderr + unknown.stderr
    # Over HTTP with an admin token: the same, through /v1/users (audited as the token's user).
    remote = cairn("unlink", "erin", "--realm", "atlassian", "--json", url=url, tok=root)
    assert remote.returncode == 0, remote.stderr
    assert json.loads(remote.stdout)["links"] == []
    refused = cairn("show", "erin", url=url, tok=token(corpus, user="reader", groups=["eng"]))
    assert refused.returncode == 1 and "403" in refused.stderr
    assert any(e.action == "users.link" and e.user == "cli-operator" for e in app.state.audit.entries(limit=50))
