"""Clone-URL credentials out of the catalog: `user:token@` is cut from stored git locations, and the
source waits (state `error`, with how to fix it) for an admin to give the token by reference.

Run by migration 0005 (again after a catalog made without migrations is recognized at an earlier
revision and stamped: indexer/catalog/fingerprints.py). It never keeps the secret anywhere: SQLite is rewritten with
`secure_delete` and vacuumed, PostgreSQL's `sources` table is vacuumed (no dead row keeps the old URL)."""
from __future__ import annotations

import logging
import re
from typing import Any

from sqlalchemy import Connection, select, text, update

from indexer.catalog.schema import sources

log = logging.getLogger(__name__)

CREDENTIALS_REMOVED = "credentials_removed"  # the config flag connectors.config reads
HINT = ("the token its clone URL held was removed from the catalog (credentials are never stored); put it in an "
        "environment variable of the server and workers and run `cairn sources set {name} --token-env VAR` "
        "(or --token-file PATH)")
_URL = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]*://)([^/?#]*@)(.*)$", re.DOTALL)


def without_credentials(location: str) -> str:
    """The URL without its secret: all user info of an http(s) URL, the password of any other scheme."""
    match = _URL.match(location.strip())
    if not match:
        return location
    scheme, userinfo, rest = match.groups()
    if scheme.lower() in ("http://", "https://"):
        return scheme + rest
    user, colon, _ = userinfo[:-1].rpartition("@")[2].partition(":")
    return f"{scheme}{user}@{rest}" if colon else location


def strip_credentials(conn: Connection) -> list[str]:
    """Cut credentials from every git source's location in this transaction; the names changed."""
    if conn.dialect.name == "sqlite":
        conn.exec_driver_sql("PRAGMA secure_delete = ON")  # the old row's bytes are zeroed, not left free
    changed = []
    for name, config in conn.execute(select(sources.c.name, sources.c.config).where(sources.c.kind == "git")).all():
        location = str((config or {}).get("location") or "")
        bare = without_credentials(location)
        if bare == location:
            continue
        new: dict[str, Any] = {**config, "location": bare, CREDENTIALS_REMOVED: True}
        conn.execute(update(sources).where(sources.c.name == name)
                     .values(config=new, state="error", last_error=HINT.format(name=name)))
        changed.append(name)
    if changed:
        log.warning("removed stored clone-URL credentials from %d git source(s): %s; each needs --token-env",
                    len(changed), ", ".join(changed))
    return changed


def scrub_storage(conn: Connection) -> None:
    """Reclaim the space old rows used (call outside a transaction, after strip_credentials changed rows)."""
    if conn.dialect.name == "sqlite":
        conn.exec_driver_sql("VACUUM")
        conn.exec_driver_sql("PRAGMA wal_checkpoint(TRUNCATE)")
    elif conn.dialect.name == "postgresql":
        conn.execute(text("VACUUM FULL sources"))
