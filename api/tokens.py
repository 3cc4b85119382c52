"""API tokens: created once and shown once, stored only as a SHA-256 hash, revocable, optionally expiring.

A service token (`cairn tokens create`) acts as the user and groups typed when it was made. A personal
token (its row names its owner, `subject`) acts as that person as they are when each request arrives
(indexer/identity: links, memberships, the groups of their last sign-in); it stops working when the
person is deactivated or unknown. Personal tokens are made on the web UI's Tokens page (/v1/me/tokens),
always expire, and only their owner or an admin sees or revokes them."""
from __future__ import annotations

import datetime as dt
import hashlib
import secrets
import uuid
from dataclasses import dataclass

from sqlalchemy import Connection, Engine, insert, select, update

from indexer.catalog.schema import api_tokens
from indexer.identity.resolver import IdentityResolver
from indexer.models import Principal

TOKEN_PREFIX = "cairn_"


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


@dataclass(frozen=True)
class TokenInfo:
    id: str
    user: str
    groups: tuple[str, ...]
    admin: bool
    name: str
    created_at: dt.datetime
    expires_at: dt.datetime | None
    revoked_at: dt.datetime | None
    subject: str | None = None  # a personal token's owner; None for a service token

    def state(self, now: dt.datetime | None = None) -> str:
        """active, expired or revoked."""
        if self.revoked_at is not None:
            return "revoked"
        if self.expires_at is not None and self.expires_at <= (now or _now()):
            return "expired"
        return "active"


def _aware(value: dt.datetime | None) -> dt.datetime | None:
    """SQLite hands back naive datetimes; everything stored here is UTC."""
    if value is not None and value.tzinfo is None:
        return value.replace(tzinfo=dt.UTC)
    return value


class TokenStore:
    def __init__(self, engine: Engine, identity: IdentityResolver | None = None) -> None:
        """`identity` resolves personal tokens; without it (the CLI's listing) they resolve to nobody."""
        self.engine = engine
        self.identity = identity

    def create(self, user: str, groups: list[str], admin: bool = False, name: str = "",
               expires_in: dt.timedelta | None = None, subject: str | None = None) -> tuple[str, TokenInfo]:
        """Returns the clear token (shown once, never stored) and its record."""
        if not user.strip():
            raise ValueError("a token needs a user")
        token = TOKEN_PREFIX + secrets.token_urlsafe(32)
        row = {"id": str(uuid.uuid4()), "token_hash": hash_token(token), "user": user.strip(),
               "groups": sorted({g.strip() for g in groups if g.strip()}), "admin": admin, "name": name,
               "created_at": _now(), "expires_at": _now() + expires_in if expires_in else None,
               "revoked_at": None, "subject": subject}
        with self.engine.begin() as conn:
            conn.execute(insert(api_tokens).values(**row))
        return token, self._info(row)

    def resolve(self, token: str) -> Principal | None:
        """The Principal of a valid token; None for unknown, revoked or expired tokens."""
        found = self.resolve_with_id(token)
        return found[1] if found else None

    def resolve_with_id(self, token: str) -> tuple[str, Principal] | None:
        """A valid token's id and Principal (a web session opened with a token keeps only its id)."""
        if not token.startswith(TOKEN_PREFIX):
            return None
        return self._valid(api_tokens.c.token_hash == hash_token(token))

    def resolve_id(self, token_id: str) -> Principal | None:
        """The Principal of the token with this id, while it is still valid."""
        found = self._valid(api_tokens.c.id == token_id)
        return found[1] if found else None

    def _valid(self, where) -> tuple[str, Principal] | None:
        with self.engine.connect() as conn:
            row = conn.execute(select(api_tokens).where(where)).mappings().first()
        if row is None or row["revoked_at"] is not None:
            return None
        expires = _aware(row["expires_at"])
        if expires is not None and expires <= _now():
            return None
        if row["subject"] is not None:  # a personal token: its owner as they are now, or nobody
            owner = self.identity.person(row["subject"]) if self.identity is not None else None
            return (row["id"], owner) if owner is not None else None
        return row["id"], Principal(user=row["user"], groups=frozenset(row["groups"]), admin=bool(row["admin"]))

    def revoke(self, token_id: str) -> bool:
        with self.engine.begin() as conn:
            res = conn.execute(update(api_tokens).where(api_tokens.c.id == token_id, api_tokens.c.revoked_at.is_(None))
                               .values(revoked_at=_now()))
        return res.rowcount > 0

    def list(self, subject: str | None = None) -> list[TokenInfo]:
        """Every token, oldest first; with `subject`, only that person's personal tokens."""
        query = select(api_tokens).order_by(api_tokens.c.created_at)
        if subject is not None:
            query = query.where(api_tokens.c.subject == subject)
        with self.engine.connect() as conn:
            rows = conn.execute(query).mappings().all()
        return [self._info(dict(r)) for r in rows]

    # -- personal tokens

    def create_personal(self, subject: str, who: Principal, name: str,
                        expires_in: dt.timedelta) -> tuple[str, TokenInfo]:
        """A personal token of the signed-in person `subject`, who is `who` now: it is never given more than
        its owner holds (their own user, groups and admin flag at most), and it always expires."""
        if not subject:
            raise ValueError("a personal token needs its owner's subject")
        if expires_in <= dt.timedelta(0):
            raise ValueError("a personal token must expire")
        return self.create(who.user, sorted(who.groups), admin=who.admin, name=name, expires_in=expires_in,
                           subject=subject)

    def owner(self, token: str) -> str | None:
        """The owner (subject) of a valid personal token; None for a service token or an invalid one."""
        found = self.resolve_with_id(token)
        if found is None:
            return None
        with self.engine.connect() as conn:
            return conn.execute(select(api_tokens.c.subject).where(api_tokens.c.id == found[0])).scalar()

    def get(self, token_id: str) -> TokenInfo | None:
        with self.engine.connect() as conn:
            row = conn.execute(select(api_tokens).where(api_tokens.c.id == token_id)).mappings().first()
        return self._info(dict(row)) if row is not None else None

    def revoke_own(self, token_id: str, subject: str) -> bool:
        """Revoke a personal token of `subject`'s; another person's token (or a service token) is left alone."""
        with self.engine.begin() as conn:
            res = conn.execute(update(api_tokens).where(api_tokens.c.id == token_id, api_tokens.c.subject == subject,
                                                        api_tokens.c.revoked_at.is_(None)).values(revoked_at=_now()))
        return res.rowcount > 0

    def revoke_all_of(self, subject: str, conn: Connection | None = None) -> int:
        """Revoke every personal token of `subject` (deprovisioning); in `conn`'s transaction when given."""
        stmt = (update(api_tokens).where(api_tokens.c.subject == subject, api_tokens.c.revoked_at.is_(None))
                .values(revoked_at=_now()))
        if conn is not None:
            return conn.execute(stmt).rowcount
        with self.engine.begin() as own:
            return own.execute(stmt).rowcount

    @staticmethod
    def _info(row: dict) -> TokenInfo:
        return TokenInfo(id=row["id"], user=row["user"], groups=tuple(row["groups"]), admin=bool(row["admin"]),
                         name=row["name"], created_at=row["created_at"].replace(tzinfo=dt.UTC),
                         expires_at=_aware(row["expires_at"]), revoked_at=_aware(row["revoked_at"]),
                         subject=row.get("subject"))
