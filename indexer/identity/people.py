"""The people the organization's IdP signed in (catalog table `users`), read by OIDC `sub` or found by the
name an admin types (subject, username or verified email)."""
from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from sqlalchemy import Engine, and_, func, or_, select

from indexer.catalog.schema import users


class UnknownUser(LookupError):
    """No known user has that subject, username or verified email."""


class AmbiguousUser(LookupError):
    """Several users answer to that name; the message lists them so the admin can give a subject."""


@dataclass(frozen=True)
class Person:
    subject: str
    username: str
    email: str
    email_verified: bool
    groups: tuple[str, ...]  # the IdP's groups claim at the last sign-in
    admin: bool  # admin at the last sign-in (CAIRN_ADMIN_GROUPS)
    active: bool  # false once the IdP deprovisioned them (SCIM)
    created_at: dt.datetime
    last_login_at: dt.datetime

    @property
    def display(self) -> str:
        """What the UI, the audit log and listings call this person."""
        return self.username or (self.email if self.email_verified else "") or self.subject


def _person(row) -> Person:
    return Person(subject=row["subject"], username=row["username"] or "", email=row["email"] or "",
                  email_verified=bool(row["email_verified"]), groups=tuple(sorted(row["groups"] or ())),
                  admin=bool(row["admin"]), active=bool(row["active"]), created_at=row["created_at"],
                  last_login_at=row["last_login_at"])


class People:
    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def get(self, subject: str) -> Person | None:
        with self.engine.connect() as conn:
            row = conn.execute(select(users).where(users.c.subject == subject)).mappings().first()
        return _person(row) if row is not None else None

    def list(self) -> list[Person]:
        with self.engine.connect() as conn:
            rows = conn.execute(select(users).order_by(users.c.username, users.c.subject)).mappings().all()
        return [_person(r) for r in rows]

    def find(self, name: str) -> Person:
        """The user `name` designates: their subject exactly, else their username or verified email
        (case-insensitive). An email the IdP did not verify names nobody; several matches are refused."""
        name = name.strip()
        if not name:
            raise UnknownUser("give a user: their subject, username or verified email")
        found = self.get(name)
        if found is not None:
            return found
        lowered = name.lower()
        match = or_(func.lower(users.c.username) == lowered,
                    and_(users.c.email_verified.is_(True), func.lower(users.c.email) == lowered))
        with self.engine.connect() as conn:
            rows = conn.execute(select(users).where(match).order_by(users.c.subject)).mappings().all()
        if not rows:
            raise UnknownUser(f"no user {name!r} (give a subject, username or verified email of someone who "
                              "signed in; `cairn users list` shows them)")
        if len(rows) > 1:
            who = ", ".join(f"{r['subject']} ({r['username'] or '-'}, {r['email'] or '-'})" for r in rows)
            raise AmbiguousUser(f"{name!r} names {len(rows)} users: {who}; give the subject instead")
        return _person(rows[0])
