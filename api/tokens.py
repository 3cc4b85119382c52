"""API tokens: created once and shown once, stored only as a SHA-256 hash, revocable, optionally expiring.

A service token (`cairn tokens create`) acts as the user and groups typed when it was made. A personal
token (its row names its owner, `subject`) acts as that person as they are when each request arrives
(indexer/identity: links, memberships, the groups of their last sign-in); it stops working when the
person is deactivated or unknown."""
from __future__ import annotations

import datetime as dt
import hashlib
import secrets
import uuid
from dataclasses import dataclass

from sqlalchemy import Engine, insert, select, update

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
               expires_in: dt.timedelta | None = None) -> tuple[str, TokenInfo]:
        """Returns the clear token (shown once, never stored) and its record."""
        if not user.strip():
            raise ValueError("a token needs a user")
        token = TOKEN_PREFIX + secrets.token_urlsafe(32)
        row = {"id": str(uuid.uuid4()), "token_hash": hash_token(token), "user": user.strip(),
               "groups": sorted({g.strip() for g in groups if g.strip()}), "admin": admin, "name": name,
               "created_at": _now(), "expires_at": _now() + expires_in if expires_in else None,
               "revoked_at": None}
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

    def list(self) -> list[TokenInfo]:
        with self.engine.connect() as conn:
            rows = conn.execute(select(api_tokens).order_by(api_tokens.c.created_at)).mappings().all()
        return [self._info(dict(r)) for r in rows]

    @staticmethod
    def _info(row: dict) -> TokenInfo:
        return TokenInfo(id=row["id"], user=row["user"], groups=tuple(row["groups"]), admin=bool(row["admin"]),
                         name=row["name"], created_at=row["created_at"].replace(tzinfo=dt.UTC),
                         expires_at=_aware(row["expires_at"]), revoked_at=_aware(row["revoked_at"]))
