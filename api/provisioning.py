"""The users and groups the organization's IdP provisions over SCIM, and what provisioning does to Cairn's
own records: a deactivated (or deleted) person is refused at once (users.active false, their sessions
deleted, their personal tokens revoked); a group's members carry its name in `users.groups` (the source of
their `idp:group:<name>` principals), changed the moment the IdP changes the membership.

A provisioned user is tied to a `users` row (the OIDC `sub`) when provisioned if that person already signed
in, else at their first sign-in (`claim`): by externalId = `sub`, else userName = the sign-in's username
(case-insensitive), else a verified email equal to the provisioned primary email."""
from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection, Engine, delete, func, insert, or_, select, update

from api.oidc import Identity
from api.tokens import TokenStore
from indexer.catalog.schema import scim_group_members, scim_groups, scim_users, sessions, users


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


class Duplicate(ValueError):
    """A userName, group name or person already provisioned (SCIM's 409 uniqueness)."""


class UnknownMember(ValueError):
    """A group member that is not a provisioned user."""


@dataclass(frozen=True)
class UserData:
    """A user as the IdP sends it, validated: the attributes Cairn acts on, and all of them to echo back."""

    user_name: str
    external_id: str | None
    active: bool
    email: str | None  # the primary (else first) email
    resource: dict[str, Any]


@dataclass(frozen=True)
class GroupData:
    display_name: str
    external_id: str | None
    members: tuple[str, ...]  # provisioned user ids


@dataclass(frozen=True)
class ProvisionedUser:
    id: str
    subject: str | None  # None until the person signs in
    active: bool
    resource: dict[str, Any]
    groups: tuple[tuple[str, str], ...]  # (group id, display name)
    created_at: dt.datetime
    updated_at: dt.datetime


@dataclass(frozen=True)
class ProvisionedGroup:
    id: str
    display_name: str
    external_id: str | None
    members: tuple[tuple[str, str], ...]  # (user id, userName)
    created_at: dt.datetime
    updated_at: dt.datetime


class Directory:
    def __init__(self, engine: Engine, tokens: TokenStore, admin_groups: Iterable[str]) -> None:
        self.engine = engine
        self.tokens = tokens
        self.admin_groups = frozenset(admin_groups)

    # -- reading

    def users(self, user_name: str | None = None, external_id: str | None = None) -> list[ProvisionedUser]:
        query = select(scim_users).order_by(scim_users.c.created_at, scim_users.c.id)
        if user_name is not None:
            query = query.where(scim_users.c.user_key == user_name.lower())
        if external_id is not None:
            query = query.where(scim_users.c.external_id == external_id)
        with self.engine.connect() as conn:
            rows = conn.execute(query).mappings().all()
            groups = self._groups_of(conn, [r["id"] for r in rows])
        return [self._user(r, groups.get(r["id"], ())) for r in rows]

    def user(self, user_id: str) -> ProvisionedUser | None:
        with self.engine.connect() as conn:
            row = conn.execute(select(scim_users).where(scim_users.c.id == user_id)).mappings().first()
            return self._user(row, self._groups_of(conn, [user_id]).get(user_id, ())) if row else None

    def groups(self, display_name: str | None = None, external_id: str | None = None) -> list[ProvisionedGroup]:
        query = select(scim_groups).order_by(scim_groups.c.created_at, scim_groups.c.id)
        if display_name is not None:
            query = query.where(func.lower(scim_groups.c.display_name) == display_name.lower())
        if external_id is not None:
            query = query.where(scim_groups.c.external_id == external_id)
        with self.engine.connect() as conn:
            rows = conn.execute(query).mappings().all()
            members = self._members_of(conn, [r["id"] for r in rows])
        return [self._group(r, members.get(r["id"], ())) for r in rows]

    def group(self, group_id: str) -> ProvisionedGroup | None:
        with self.engine.connect() as conn:
            row = conn.execute(select(scim_groups).where(scim_groups.c.id == group_id)).mappings().first()
            return self._group(row, self._members_of(conn, [group_id]).get(group_id, ())) if row else None

    @staticmethod
    def _groups_of(conn: Connection, user_ids: list[str]) -> dict[str, tuple[tuple[str, str], ...]]:
        out: dict[str, list[tuple[str, str]]] = {}
        if user_ids:
            query = (select(scim_group_members.c.user_id, scim_groups.c.id, scim_groups.c.display_name)
                     .join(scim_groups, scim_groups.c.id == scim_group_members.c.group_id)
                     .where(scim_group_members.c.user_id.in_(user_ids)).order_by(scim_groups.c.display_name))
            for user_id, group_id, name in conn.execute(query):
                out.setdefault(user_id, []).append((group_id, name))
        return {k: tuple(v) for k, v in out.items()}

    @staticmethod
    def _members_of(conn: Connection, group_ids: list[str]) -> dict[str, tuple[tuple[str, str], ...]]:
        out: dict[str, list[tuple[str, str]]] = {}
        if group_ids:
            query = (select(scim_group_members.c.group_id, scim_users.c.id, scim_users.c.resource)
                     .join(scim_users, scim_users.c.id == scim_group_members.c.user_id)
                     .where(scim_group_members.c.group_id.in_(group_ids)).order_by(scim_users.c.user_key))
            for group_id, user_id, resource in conn.execute(query):
                out.setdefault(group_id, []).append((user_id, str(resource.get("userName", ""))))
        return {k: tuple(v) for k, v in out.items()}

    @staticmethod
    def _user(row: Any, groups: tuple[tuple[str, str], ...]) -> ProvisionedUser:
        return ProvisionedUser(id=row["id"], subject=row["subject"], active=bool(row["active"]),
                               resource=dict(row["resource"]), groups=groups, created_at=row["created_at"],
                               updated_at=row["updated_at"])

    @staticmethod
    def _group(row: Any, members: tuple[tuple[str, str], ...]) -> ProvisionedGroup:
        return ProvisionedGroup(id=row["id"], display_name=row["display_name"], external_id=row["external_id"],
                                members=members, created_at=row["created_at"], updated_at=row["updated_at"])

    # -- users

    def create_user(self, data: UserData) -> ProvisionedUser:
        """Provision a user, tied at once to the person who already signed in, if one matches."""
        user_id = str(uuid.uuid4())
        now = _now()
        with self.engine.begin() as conn:
            self._unique_user(conn, data, None)
            subject = self._signed_in_match(conn, data)
            conn.execute(insert(scim_users).values(id=user_id, subject=subject, created_at=now,
                                                   **self._user_values(data, now)))
            if subject is not None:
                self._apply_state(conn, subject, data.active)
        found = self.user(user_id)
        assert found is not None
        return found

    def replace_user(self, user_id: str, data: UserData) -> ProvisionedUser | None:
        """PUT (and PATCH, applied first): the user's attributes replaced; `active` takes effect at once."""
        with self.engine.begin() as conn:
            subject = conn.execute(select(scim_users.c.subject).where(scim_users.c.id == user_id)).first()
            if subject is None:
                return None
            self._unique_user(conn, data, user_id)
            conn.execute(update(scim_users).where(scim_users.c.id == user_id)
                         .values(**self._user_values(data, _now())))
            if subject[0] is not None:
                self._apply_state(conn, subject[0], data.active)
        return self.user(user_id)

    def delete_user(self, user_id: str) -> bool:
        """The IdP deleted the user: the person is refused from now on (as when deactivated; their `users`
        row stays, inactive, so a later sign-in is refused too) and the SCIM resource is gone."""
        with self.engine.begin() as conn:
            row = conn.execute(select(scim_users.c.subject).where(scim_users.c.id == user_id)).first()
            if row is None:
                return False
            conn.execute(delete(scim_group_members).where(scim_group_members.c.user_id == user_id))
            conn.execute(delete(scim_users).where(scim_users.c.id == user_id))
            if row[0] is not None:
                self._deprovision(conn, row[0])
                self._refresh_groups(conn, [row[0]])
        return True

    @staticmethod
    def _user_values(data: UserData, now: dt.datetime) -> dict[str, Any]:
        return {"user_key": data.user_name.lower(), "email_key": data.email.lower() if data.email else None,
                "external_id": data.external_id, "active": data.active, "resource": data.resource,
                "updated_at": now}

    @staticmethod
    def _unique_user(conn: Connection, data: UserData, user_id: str | None) -> None:
        taken = conn.execute(select(scim_users.c.id).where(scim_users.c.user_key == data.user_name.lower())).scalar()
        if taken is not None and taken != user_id:
            raise Duplicate(f"userName {data.user_name!r} is already provisioned")

    @staticmethod
    def _signed_in_match(conn: Connection, data: UserData) -> str | None:
        """The subject of a person who signed in already and is this user (not provisioned yet): by
        externalId = sub, else username, else verified email."""
        tests = [users.c.subject == data.external_id if data.external_id else None,
                 func.lower(users.c.username) == data.user_name.lower(),
                 (func.lower(users.c.email) == data.email.lower()) & users.c.email_verified if data.email else None]
        linked = select(scim_users.c.subject).where(scim_users.c.subject.is_not(None))
        for test in [t for t in tests if t is not None]:
            found = conn.execute(select(users.c.subject).where(test, users.c.subject.not_in(linked))).scalars().all()
            if len(found) == 1:
                return found[0]
            if len(found) > 1:
                raise Duplicate("several people who signed in match this user; give it their `sub` as externalId")
        return None

    def _apply_state(self, conn: Connection, subject: str, active: bool) -> None:
        """A tied user's `active` and groups onto their `users` row (deactivation ends everything at once)."""
        conn.execute(update(users).where(users.c.subject == subject).values(active=active))
        if not active:
            self._deprovision(conn, subject)
        self._refresh_groups(conn, [subject])

    def _deprovision(self, conn: Connection, subject: str) -> None:
        conn.execute(update(users).where(users.c.subject == subject).values(active=False))
        conn.execute(delete(sessions).where(sessions.c.subject == subject))
        self.tokens.revoke_all_of(subject, conn)

    # -- groups

    def create_group(self, data: GroupData) -> ProvisionedGroup:
        group_id = str(uuid.uuid4())
        now = _now()
        with self.engine.begin() as conn:
            self._unique_group(conn, data.display_name, None)
            conn.execute(insert(scim_groups).values(id=group_id, display_name=data.display_name,
                                                    external_id=data.external_id, created_at=now, updated_at=now))
            self._set_members(conn, group_id, data.members, ())
        found = self.group(group_id)
        assert found is not None
        return found

    def replace_group(self, group_id: str, data: GroupData) -> ProvisionedGroup | None:
        with self.engine.begin() as conn:
            old = conn.execute(select(scim_groups.c.display_name).where(scim_groups.c.id == group_id)).scalar()
            if old is None:
                return None
            self._unique_group(conn, data.display_name, group_id)
            conn.execute(update(scim_groups).where(scim_groups.c.id == group_id)
                         .values(display_name=data.display_name, external_id=data.external_id, updated_at=_now()))
            self._set_members(conn, group_id, data.members, (old,))
        return self.group(group_id)

    def delete_group(self, group_id: str) -> bool:
        with self.engine.begin() as conn:
            old = conn.execute(select(scim_groups.c.display_name).where(scim_groups.c.id == group_id)).scalar()
            if old is None:
                return False
            was = self._member_subjects(conn, group_id)
            conn.execute(delete(scim_group_members).where(scim_group_members.c.group_id == group_id))
            conn.execute(delete(scim_groups).where(scim_groups.c.id == group_id))
            self._refresh_groups(conn, was, gone=(old,))
        return True

    @staticmethod
    def _unique_group(conn: Connection, name: str, group_id: str | None) -> None:
        taken = conn.execute(select(scim_groups.c.id).where(func.lower(scim_groups.c.display_name) == name.lower())
                             ).scalar()
        if taken is not None and taken != group_id:
            raise Duplicate(f"a group named {name!r} is already provisioned")

    @staticmethod
    def _member_subjects(conn: Connection, group_id: str) -> list[str]:
        query = (select(scim_users.c.subject).join(scim_group_members, scim_group_members.c.user_id == scim_users.c.id)
                 .where(scim_group_members.c.group_id == group_id, scim_users.c.subject.is_not(None)))
        return list(conn.execute(query).scalars())

    def _set_members(self, conn: Connection, group_id: str, members: tuple[str, ...], gone: tuple[str, ...]) -> None:
        wanted = sorted(set(members))
        known = set(conn.execute(select(scim_users.c.id).where(scim_users.c.id.in_(wanted))).scalars()) if wanted else set()
        if unknown := [m for m in wanted if m not in known]:
            raise UnknownMember(f"no provisioned user with id {unknown[0]!r}")
        was = self._member_subjects(conn, group_id)
        conn.execute(delete(scim_group_members).where(scim_group_members.c.group_id == group_id))
        if wanted:
            conn.execute(insert(scim_group_members), [{"group_id": group_id, "user_id": m} for m in wanted])
        self._refresh_groups(conn, set(was) | set(self._member_subjects(conn, group_id)), gone=gone)

    def _refresh_groups(self, conn: Connection, subjects: Iterable[str], gone: tuple[str, ...] = ()) -> None:
        """Each person's `users.groups`: the provisioned groups they are a member of now, plus the groups
        their last sign-in named that SCIM does not provision (SCIM decides for the groups it knows); and
        `users.admin` from CAIRN_ADMIN_GROUPS over the result."""
        subjects = sorted(set(subjects))
        if not subjects:
            return
        provisioned = set(conn.execute(select(scim_groups.c.display_name)).scalars()) | set(gone)
        query = (select(scim_users.c.subject, scim_groups.c.display_name)
                 .join(scim_group_members, scim_group_members.c.user_id == scim_users.c.id)
                 .join(scim_groups, scim_groups.c.id == scim_group_members.c.group_id)
                 .where(scim_users.c.subject.in_(subjects)))
        member: dict[str, set[str]] = {}
        for subject, name in conn.execute(query):
            member.setdefault(subject, set()).add(name)
        rows = conn.execute(select(users.c.subject, users.c.groups).where(users.c.subject.in_(subjects))).all()
        for subject, current in rows:
            names = sorted((set(current or []) - provisioned) | member.get(subject, set()))
            conn.execute(update(users).where(users.c.subject == subject)
                         .values(groups=names, admin=bool(self.admin_groups & set(names))))

    # -- sign-in

    def claim(self, conn: Connection, who: Identity) -> None:
        """At sign-in (in the transaction that records the person): tie the provisioned user this person is
        to their `sub` if not tied yet, then apply its state and groups to their `users` row."""
        active = conn.execute(select(scim_users.c.active).where(scim_users.c.subject == who.subject)).scalar()
        if active is None:
            tests = [scim_users.c.external_id == who.subject, scim_users.c.user_key == who.username.lower()]
            if who.email_verified and who.email:
                tests.append(scim_users.c.email_key == who.email.lower())
            candidates = conn.execute(select(scim_users.c.id, scim_users.c.active, scim_users.c.external_id,
                                             scim_users.c.user_key)
                                      .where(scim_users.c.subject.is_(None), or_(*tests))).all()
            if not candidates:
                return
            # externalId = sub first, then the username, then the verified email
            best = min(candidates, key=lambda r: 0 if r.external_id == who.subject
                       else 1 if r.user_key == who.username.lower() else 2)
            conn.execute(update(scim_users).where(scim_users.c.id == best.id).values(subject=who.subject))
            active = best.active
        self._apply_state(conn, who.subject, bool(active))
