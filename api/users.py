"""Admin routes for the people the IdP signed in: list them, show one (links and the principals they
resolve to now), link or unlink their account in an identity realm. `cairn users` uses the same views
locally (`user_view`) or these routes remotely."""
from __future__ import annotations

import logging

from fastapi import APIRouter, Depends, Request
from pydantic import BaseModel, Field

from api.audit import AuditLog
from api.auth import admin
from api.errors import NotFound
from indexer.identity.people import Person
from indexer.identity.resolver import IdentityResolver
from indexer.identity.store import Link, check_realm
from indexer.models import Principal

log = logging.getLogger(__name__)

router = APIRouter(prefix="/v1/users")


class LinkOut(BaseModel):
    realm: str
    account: str
    display: str
    method: str = Field(description="`admin` (set by an admin) or `email` (found by verified email at sync time).")
    updated_at: str


class UserOut(BaseModel):
    subject: str
    username: str
    email: str
    email_verified: bool
    active: bool
    admin: bool = Field(description="Admin at the last sign-in (CAIRN_ADMIN_GROUPS).")
    groups: list[str] = Field(description="The IdP's groups at the last sign-in.")
    created_at: str
    last_login_at: str
    links: list[LinkOut]
    principals: list[str] | None = Field(
        default=None, description="What a request without groups of its own (a personal token) holds now; "
                                  "empty for a deactivated user. Only on GET /v1/users/{user} and link changes.")


class LinkIn(BaseModel):
    account: str = Field(min_length=1, max_length=255, description="The account in that realm: GitLab user id, "
                         "Atlassian Data Center user key or Cloud accountId.")
    display: str = Field(default="", max_length=255, description="A name to show for the account (username).")


def _link_out(link: Link) -> LinkOut:
    return LinkOut(realm=link.realm, account=link.account, display=link.display, method=link.method,
                   updated_at=link.updated_at.isoformat())


def user_view(identity: IdentityResolver, person: Person, links: list[Link],
              with_principals: bool = False) -> UserOut:
    """One user as admins see them; `with_principals` resolves what they hold now (uncached)."""
    held: list[str] | None = None
    if with_principals:
        found = identity.person(person.subject, fresh=True)
        held = found.principals() if found is not None else []
    return UserOut(subject=person.subject, username=person.username, email=person.email,
                   email_verified=person.email_verified, active=person.active, admin=person.admin,
                   groups=list(person.groups), created_at=person.created_at.isoformat(),
                   last_login_at=person.last_login_at.isoformat(), links=[_link_out(k) for k in links],
                   principals=held)


def all_users(identity: IdentityResolver) -> list[UserOut]:
    links: dict[str, list[Link]] = {}
    for link in identity.store.links():
        links.setdefault(link.subject, []).append(link)
    return [user_view(identity, p, links.get(p.subject, [])) for p in identity.people.list()]


def show_user(identity: IdentityResolver, name: str) -> UserOut:
    """`name` = subject, username or verified email (UnknownUser, AmbiguousUser otherwise)."""
    person = identity.people.find(name)
    return user_view(identity, person, identity.store.links(person.subject), with_principals=True)


def link_user(identity: IdentityResolver, audit: AuditLog, who: Principal, name: str, realm: str, account: str,
              display: str = "") -> UserOut:
    """An admin's link (replaces the user's earlier account in that realm; LinkConflict when the account
    belongs to someone else), audited; applies to the user's next request in this process at once, in
    others within CAIRN_IDENTITY_CACHE_SECONDS."""
    person = identity.people.find(name)
    link = identity.store.link(person.subject, realm, account, display, method="admin")
    identity.forget(person.subject)
    audit.record(who, "users.link", target=f"{person.subject} {link.realm}:{link.account}")
    log.info("linked user %s to a %s account", person.subject, link.realm)
    return show_user(identity, person.subject)


def unlink_user(identity: IdentityResolver, audit: AuditLog, who: Principal, name: str, realm: str) -> UserOut:
    person = identity.people.find(name)
    realm = check_realm(realm)
    if not identity.store.unlink(person.subject, realm):
        raise NotFound(f"user {person.subject} has no {realm} link")
    identity.forget(person.subject)
    audit.record(who, "users.unlink", target=f"{person.subject} {realm}")
    return show_user(identity, person.subject)


@router.get("", response_model=list[UserOut])
def list_users(request: Request, _: Principal = Depends(admin)) -> list[UserOut]:
    """Every user the IdP signed in, with their links."""
    return all_users(request.app.state.identity)


@router.get("/{user}", response_model=UserOut)
def get_user(user: str, request: Request, _: Principal = Depends(admin)) -> UserOut:
    """One user (by subject, username or verified email): links and the principals they resolve to now."""
    return show_user(request.app.state.identity, user)


@router.put("/{user}/links/{realm}", response_model=UserOut)
def put_link(user: str, realm: str, body: LinkIn, request: Request, who: Principal = Depends(admin)) -> UserOut:
    """Link the user to `account` in `realm` (e.g. gitlab, atlassian); 409 if another user has that account."""
    state = request.app.state
    return link_user(state.identity, state.audit, who, user, realm, body.account, body.display)


@router.delete("/{user}/links/{realm}", response_model=UserOut)
def delete_link(user: str, realm: str, request: Request, who: Principal = Depends(admin)) -> UserOut:
    """Remove the user's link in `realm`: they stop holding that account's principals."""
    return unlink_user(request.app.state.identity, request.app.state.audit, who, user, realm)
