"""Server-side web UI sessions. The browser's cookie holds only a random session id; the catalog holds its
SHA-256 with an expiry, so signing out (deleting the row) ends the session everywhere. What a session
may read is resolved on each request: a person's from their links and memberships as they are now
(indexer/identity; deactivated = refused), a session opened with an API token from the token as it is
now (revoked or expired ends it).

Also kept here: OIDC sign-ins under way (state, nonce and PKCE verifier, bound to the browser by a
short-lived cookie of their own, used once) and the users the IdP signed in (by `sub`)."""
from __future__ import annotations

import datetime as dt
import hashlib
import secrets
from typing import Any

from sqlalchemy import Engine, delete, insert, select, update
from sqlalchemy.exc import IntegrityError

from api.oidc import Identity
from api.tokens import TokenStore
from indexer.catalog.schema import login_requests, sessions, users
from indexer.identity.resolver import IdentityResolver
from indexer.models import Principal

LOGIN_MAX_AGE = dt.timedelta(minutes=10)  # an OIDC sign-in must come back from the IdP within this


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def _hash(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


class SessionStore:
    def __init__(self, engine: Engine, tokens: TokenStore, max_age: dt.timedelta, identity: IdentityResolver) -> None:
        self.engine = engine
        self.tokens = tokens
        self.max_age = max_age
        self.identity = identity

    # -- sessions

    def _open(self, **row: Any) -> str:
        session_id = secrets.token_urlsafe(32)
        now = _now()
        with self.engine.begin() as conn:
            conn.execute(delete(sessions).where(sessions.c.expires_at <= now))
            conn.execute(insert(sessions).values(id_hash=_hash(session_id), created_at=now,
                                                 expires_at=now + self.max_age, **row))
        return session_id

    def open_oidc(self, who: Identity) -> str | None:
        """A session for a user the IdP signed in (recorded in `users`); returns the cookie's id, or None
        for a deactivated person. It keeps the groups of this sign-in; everything else about the person is
        read per request."""
        self.remember(who)
        if self.identity.person(who.subject, who.groups) is None:
            return None
        return self._open(kind="oidc", subject=who.subject, token_id=None, user=who.username,
                          groups=list(who.groups), admin=who.admin)

    def open_token(self, token_id: str, who: Principal) -> str:
        """A session for a user who signed in with an API token; it lasts while the token is valid."""
        return self._open(kind="token", subject=None, token_id=token_id, user=who.user, groups=sorted(who.groups),
                          admin=who.admin)

    def resolve(self, session_id: str) -> Principal | None:
        """The Principal of a live session; None for unknown, ended or expired ones."""
        if not session_id:
            return None
        with self.engine.connect() as conn:
            row = conn.execute(select(sessions).where(sessions.c.id_hash == _hash(session_id))).mappings().first()
        if row is None or row["expires_at"] <= _now():
            return None
        if row["kind"] == "token":  # the token as it is now: revoked or expired ends the session
            return self.tokens.resolve_id(row["token_id"]) if row["token_id"] else None
        return self.identity.person(row["subject"], row["groups"]) if row["subject"] else None

    def close(self, session_id: str) -> str | None:
        """Sign-out: the session ends (its row is deleted); returns its kind (oidc, token), None if unknown."""
        if not session_id:
            return None
        where = sessions.c.id_hash == _hash(session_id)
        with self.engine.begin() as conn:
            kind = conn.execute(select(sessions.c.kind).where(where)).scalar()
            conn.execute(delete(sessions).where(where))
        return kind

    # -- OIDC sign-ins under way

    def begin_login(self, state: str, nonce: str, code_verifier: str, next_path: str) -> str:
        """Records a sign-in sent to the IdP; returns the id for the browser's login cookie."""
        login_id = secrets.token_urlsafe(32)
        now = _now()
        with self.engine.begin() as conn:
            conn.execute(delete(login_requests).where(login_requests.c.expires_at <= now))
            conn.execute(insert(login_requests).values(id_hash=_hash(login_id), state=state, nonce=nonce,
                                                       code_verifier=code_verifier, next_path=next_path,
                                                       expires_at=now + LOGIN_MAX_AGE))
        return login_id

    def take_login(self, login_id: str) -> dict[str, Any] | None:
        """The sign-in this browser started (deleted: each is used once), unless expired or unknown."""
        if not login_id:
            return None
        with self.engine.begin() as conn:
            where = login_requests.c.id_hash == _hash(login_id)
            row = conn.execute(select(login_requests).where(where)).mappings().first()
            if row is None or conn.execute(delete(login_requests).where(where)).rowcount != 1:
                return None  # another request took it first
        return dict(row) if row["expires_at"] > _now() else None

    # -- users

    def remember(self, who: Identity) -> None:
        """A sign-in: the person's names and this sign-in's groups (which their personal tokens and JWTs
        without a groups claim use) recorded. Never touches `active`: signing in does not undo a
        deactivation."""
        now = _now()
        values = {"username": who.username, "email": who.email, "email_verified": who.email_verified,
                  "groups": list(who.groups), "admin": who.admin, "last_login_at": now}
        with self.engine.begin() as conn:
            updated = conn.execute(update(users).where(users.c.subject == who.subject).values(**values)).rowcount
            if not updated:
                conn.execute(insert(users).values(subject=who.subject, created_at=now, **values))

    def register(self, who: Identity) -> None:
        """A person first seen through a JWT access token their IdP issued for Cairn (an MCP client signed
        them in): recorded like a sign-in, unless they are known already (then nothing changes)."""
        now = _now()
        row = {"subject": who.subject, "username": who.username, "email": who.email,
               "email_verified": who.email_verified, "groups": list(who.groups), "admin": who.admin,
               "created_at": now, "last_login_at": now}
        try:
            with self.engine.begin() as conn:
                if conn.execute(select(users.c.subject).where(users.c.subject == who.subject)).first() is None:
                    conn.execute(insert(users).values(**row))
        except IntegrityError:
            pass  # a concurrent request registered them first: the same person, nothing to add
