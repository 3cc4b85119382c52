"""Identity links and synced memberships in the catalog (tables identity_links and memberships)."""
from __future__ import annotations

import datetime as dt
from collections.abc import Iterable
from dataclasses import dataclass

from sqlalchemy import Engine, and_, delete, insert, or_, select, update

from indexer.catalog.schema import identity_links, memberships, users
from indexer.models import REALM_RE, RESERVED_REALMS, AccessError, parse_principal

METHODS = ("admin", "email")


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


class LinkConflict(ValueError):
    """The account is already linked to another Cairn user."""


@dataclass(frozen=True)
class Link:
    subject: str
    realm: str
    account: str
    display: str
    method: str
    updated_at: dt.datetime


@dataclass(frozen=True)
class Membership:
    """`account` of `realm` is a member of the group (or role) principal `principal`, per `source`."""

    principal: str
    realm: str
    account: str
    level: int | None = None


def check_realm(realm: str) -> str:
    realm = realm.strip()
    if not REALM_RE.match(realm) or realm in RESERVED_REALMS:
        raise AccessError(f"bad realm {realm!r}: a lower-case word such as gitlab or atlassian")
    return realm


class IdentityStore:
    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    # -- links

    def link(self, subject: str, realm: str, account: str, display: str = "", method: str = "admin") -> Link:
        """Link `subject` to `account` in `realm` (replacing its earlier account there). An email match
        never replaces an admin's link; an account already linked to someone else is a LinkConflict."""
        realm, account = check_realm(realm), account.strip()
        if not subject.strip() or not account:
            raise ValueError("a link needs a user and an account")
        if method not in METHODS:
            raise ValueError(f"unknown link method {method!r}")
        row = {"subject": subject, "realm": realm, "account": account, "display": display.strip(),
               "method": method, "updated_at": _now()}
        with self.engine.begin() as conn:
            owner = conn.execute(select(identity_links.c.subject).where(
                identity_links.c.realm == realm, identity_links.c.account == account)).scalar()
            if owner is not None and owner != subject:
                raise LinkConflict(f"{realm} account {account} is already linked to another user")
            where = and_(identity_links.c.subject == subject, identity_links.c.realm == realm)
            current = conn.execute(select(identity_links.c.method).where(where)).scalar()
            if current == "admin" and method == "email":
                return self._one(conn, subject, realm)
            if current is None:
                conn.execute(insert(identity_links).values(**row))
            else:
                conn.execute(update(identity_links).where(where).values(**row))
            return self._one(conn, subject, realm)

    def unlink(self, subject: str, realm: str) -> bool:
        with self.engine.begin() as conn:
            res = conn.execute(delete(identity_links).where(identity_links.c.subject == subject,
                                                            identity_links.c.realm == realm))
        return res.rowcount > 0

    def links(self, subject: str | None = None) -> list[Link]:
        query = select(identity_links).order_by(identity_links.c.subject, identity_links.c.realm)
        if subject is not None:
            query = query.where(identity_links.c.subject == subject)
        with self.engine.connect() as conn:
            return [Link(**dict(r)) for r in conn.execute(query).mappings()]

    def _one(self, conn, subject: str, realm: str) -> Link:
        row = conn.execute(select(identity_links).where(identity_links.c.subject == subject,
                                                        identity_links.c.realm == realm)).mappings().one()
        return Link(**dict(row))

    def verified_emails(self) -> dict[str, str]:
        """Lower-cased verified email → subject, for users the IdP signed in (only verified emails link)."""
        with self.engine.connect() as conn:
            rows = conn.execute(select(users.c.subject, users.c.email)
                                .where(users.c.email_verified.is_(True), users.c.email != "")).all()
        out: dict[str, str] = {}
        for subject, email in rows:
            out.setdefault(email.strip().lower(), subject)
        return out

    # -- memberships

    def replace_memberships(self, source: str, rows: Iterable[Membership]) -> int:
        """Replace every membership `source` synced with `rows` (one transaction); returns how many."""
        now = _now()
        values = {(parse_principal(m.principal), check_realm(m.realm), m.account): m.level for m in rows}
        with self.engine.begin() as conn:
            conn.execute(delete(memberships).where(memberships.c.source == source))
            if values:
                conn.execute(insert(memberships), [
                    {"source": source, "principal": p, "realm": r, "account": a, "level": level, "synced_at": now}
                    for (p, r, a), level in sorted(values.items())])
        return len(values)

    def memberships_of(self, accounts: Iterable[tuple[str, str]]) -> list[Membership]:
        """Every synced membership of these (realm, account) pairs, from all sources."""
        pairs = sorted(set(accounts))
        if not pairs:
            return []
        where = or_(*(and_(memberships.c.realm == r, memberships.c.account == a) for r, a in pairs))
        with self.engine.connect() as conn:
            rows = conn.execute(select(memberships.c.principal, memberships.c.realm, memberships.c.account,
                                       memberships.c.level).where(where)).all()
        return sorted({Membership(p, r, a, level) for p, r, a, level in rows}, key=lambda m: (m.principal, m.account))

    def forget_source(self, source: str) -> None:
        """A removed source's memberships go with it."""
        with self.engine.begin() as conn:
            conn.execute(delete(memberships).where(memberships.c.source == source))


def idp_principals(subject: str, idp_groups: Iterable[str]) -> frozenset[str]:
    """What the IdP alone says about a person: `idp:user:<sub>` and `idp:group:<g>` for each group."""
    out = {parse_principal(f"idp:user:{subject}")}
    out |= {parse_principal(f"idp:group:{g}") for g in idp_groups if g.strip()}
    return frozenset(out)


def linked_principals(store: IdentityStore, subject: str, idp_groups: Iterable[str]) -> frozenset[str]:
    """Every namespaced principal a person holds now: their IdP principals, `<realm>:user:<account>` for
    each linked account, and the group/role principals those accounts are synced members of. A person
    with no link holds only their IdP principals (fail closed)."""
    links = store.links(subject)
    accounts = [(link.realm, link.account) for link in links]
    out = set(idp_principals(subject, idp_groups))
    out |= {parse_principal(f"{realm}:user:{account}") for realm, account in accounts}
    out |= {m.principal for m in store.memberships_of(accounts)}
    return frozenset(out)
