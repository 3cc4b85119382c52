"""A person's principals when a request arrives (indexer/identity/resolver.py) and finding a user by the
name an admin types (people.py), on a real catalog database."""
from __future__ import annotations

import datetime as dt

import pytest
from sqlalchemy import insert, update

from indexer.catalog import open_catalog
from indexer.catalog.schema import users
from indexer.identity.people import AmbiguousUser, People, UnknownUser
from indexer.identity.resolver import IdentityResolver
from indexer.identity.store import IdentityStore, Membership
from indexer.models import Principal


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def add_user(engine, subject: str, username: str = "", email: str = "", verified: bool = True,
             groups: tuple[str, ...] = (), active: bool = True) -> None:
    now = dt.datetime.now(dt.UTC)
    with engine.begin() as conn:
        conn.execute(insert(users).values(subject=subject, username=username, email=email, email_verified=verified,
                                          groups=list(groups), admin=False, active=active, created_at=now,
                                          last_login_at=now))


@pytest.fixture
def world(tmp_path):
    engine = open_catalog(f"sqlite:///{tmp_path / 'catalog.db'}").engine  # the migrations make its tables
    store = IdentityStore(engine)
    clock = Clock()
    resolver = IdentityResolver(store, ["cairn-admins"], ttl_seconds=30, clock=clock)
    add_user(engine, "sub-bob", "bob", "bob@example.com", groups=("ops",))
    return engine, store, resolver, clock


def test_a_person_without_links_holds_only_their_idp_principals(world):
    _engine, _store, resolver, _clock = world
    bob = resolver.person("sub-bob")
    assert bob.person and bob.user == "bob" and not bob.admin
    assert bob.principals() == ["idp:group:ops", "idp:user:sub-bob", "public"]
    assert resolver.person("sub-bob", ["eng", " "]).principals() == ["idp:group:eng", "idp:user:sub-bob", "public"]
    assert resolver.person("sub-bob", []).principals() == ["idp:user:sub-bob", "public"]  # a claim, empty
    assert resolver.person("sub-bob", ["cairn-admins"]).admin  # CAIRN_ADMIN_GROUPS, from the groups used


def test_service_accounts_keep_cairns_own_names_and_people_never_get_them():
    service = Principal(user="bob", groups=frozenset({"ops"}))
    assert service.principals() == ["group:ops", "public", "user:bob"]
    person = Principal(user="bob", groups=frozenset({"ops"}), subject="sub-bob",
                       linked=frozenset({"idp:user:sub-bob"}))
    assert person.principals() == ["idp:user:sub-bob", "public"]
    assert "role:admin" in Principal(user="x", subject="s", admin=True).principals()


def test_unknown_and_deactivated_people_resolve_to_nobody_at_once(world):
    engine, store, resolver, _clock = world
    assert resolver.person("nobody") is None
    store.link("sub-bob", "gitlab", "42")
    assert resolver.person("sub-bob") is not None  # cached now
    with engine.begin() as conn:
        conn.execute(update(users).where(users.c.subject == "sub-bob").values(active=False))
    assert resolver.person("sub-bob") is None  # not waiting for the cache: deactivation is read every time


def test_links_and_memberships_apply_within_the_cache_time(world):
    _engine, store, resolver, clock = world
    store.link("sub-bob", "gitlab", "42", "bob")
    store.link("sub-bob", "atlassian", "K1")
    store.replace_memberships("gl", [Membership("gitlab:group:a", "gitlab", "42"),
                                     Membership("gitlab:group:z", "gitlab", "99")])
    store.replace_memberships("jira", [Membership("atlassian:role:SHOP/dev", "atlassian", "K1")])
    held = set(resolver.person("sub-bob").principals())
    assert {"gitlab:user:42", "gitlab:group:a", "atlassian:user:K1", "atlassian:role:SHOP/dev"} <= held
    assert "gitlab:group:z" not in held  # someone else's membership

    store.replace_memberships("gl", [])  # the next permissions pass of source gl: bob left group a
    clock.now += 29
    assert "gitlab:group:a" in resolver.person("sub-bob").principals()  # cached
    assert "gitlab:group:a" not in resolver.person("sub-bob", fresh=True).principals()
    clock.now += 2
    assert "gitlab:group:a" not in resolver.person("sub-bob").principals()  # the cache expired

    store.unlink("sub-bob", "atlassian")
    assert "atlassian:user:K1" in resolver.person("sub-bob").principals()
    resolver.forget("sub-bob")  # what an admin's unlink does in the process that made it
    held = set(resolver.person("sub-bob").principals())
    assert "atlassian:user:K1" not in held and "atlassian:role:SHOP/dev" not in held


def test_no_cache_reads_every_time(world):
    _engine, store, _resolver, _clock = world
    resolver = IdentityResolver(store, [], ttl_seconds=0)
    assert "gitlab:user:7" not in resolver.person("sub-bob").principals()
    store.link("sub-bob", "gitlab", "7")
    assert "gitlab:user:7" in resolver.person("sub-bob").principals()


def test_users_are_found_by_subject_username_or_verified_email(world):
    engine, _store, _resolver, _clock = world
    add_user(engine, "sub-carol", "Carol", "carol@example.com")
    add_user(engine, "sub-mallory", "mallory", "dave@example.com", verified=False)
    add_user(engine, "sub-dave", "dave", "dave@example.com")
    add_user(engine, "sub-bob2", "bob", "bob2@example.com")
    people = People(engine)
    assert people.find("sub-carol").subject == "sub-carol"
    assert people.find("carol").subject == "sub-carol"  # usernames and emails: any case
    assert people.find("CAROL@example.com").subject == "sub-carol"
    assert people.find("dave@example.com").subject == "sub-dave"  # an unverified email names nobody
    with pytest.raises(AmbiguousUser, match=r"sub-bob .*sub-bob2 .*subject"):
        people.find("bob")
    assert people.find("sub-bob2").username == "bob"  # the subject always designates one
    for name in ("nobody", "  "):
        with pytest.raises(UnknownUser):
            people.find(name)
