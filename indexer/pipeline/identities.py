"""Identities on the permissions schedule: a source's group memberships, and its accounts found by email.

Run at the end of each permissions pass (`run_permission_pass`), once the ACLs are current:

- Memberships: the members of every group (or role) principal of the source's realm that its indexed ACLs
  name replace what the source synced before, so a removal at the source stops granting access after one
  pass. Fail closed: a group whose members cannot be read keeps no rows (nobody holds it through this
  source until a pass reads it) and is a failure of the pass; a source that cannot be read at all has all
  its rows dropped before the error goes up. A source whose realm another source uses for a different
  identity system (two GitLab instances both `gitlab`) syncs nothing and fails its pass, so its restricted
  documents stop being served once its access goes stale.
- Links: each Cairn user with a verified email and no account yet in the realm is looked up through the
  source's API (`Connector.find_accounts`); exactly one match is linked (method `email`, never replacing an
  admin's link); several matches link none. Logs name the user's subject, never the email."""
from __future__ import annotations

import logging
import random
from dataclasses import dataclass

from connectors.base import Connector, ConnectorError, GroupMember
from connectors.config import REMOTE_KINDS, SourceConfigError, from_catalog
from connectors.principal_sets import realm_sets
from indexer.catalog import Catalog
from indexer.identity.store import IdentityStore, LinkConflict, Membership
from indexer.models import SyncFailure

log = logging.getLogger(__name__)

LOOKUPS_PER_PASS = 500  # email look-ups per source and pass (unlinked users, in random order): bounds API load
LINKING = "identity links"  # the failure item when looking accounts up failed


@dataclass
class IdentityCounts:
    memberships: int = 0  # membership rows the source holds now
    failed: int = 0  # unreadable members, a realm clash or failed email look-ups: the pass is partial
    linked: int = 0  # users linked by email in this pass
    ambiguous: int = 0  # users whose email matched several accounts (none linked)


def sync_identities(catalog: Catalog, connector: Connector, store: IdentityStore | None = None) -> IdentityCounts:
    """Memberships, then links by email, of one source (nothing for sources without a realm)."""
    counts = IdentityCounts()
    realm = connector.realm
    if not realm:
        return counts
    store = store or IdentityStore(catalog.engine)
    clash = realm_clash(catalog, connector.name, realm)
    if clash:
        store.replace_memberships(connector.name, [])
        catalog.record_failure(SyncFailure(connector.name, f"realm {realm}", clash))
        log.error("source %s: %s", connector.name, clash)
        counts.failed = 1
        return counts
    catalog.clear_failure(connector.name, f"realm {realm}")
    counts.memberships, counts.failed = _memberships(catalog, connector, store, realm)
    _link_by_email(catalog, connector, store, realm, counts)
    return counts


def realm_clash(catalog: Catalog, source: str, realm: str) -> str:
    """Why `source` may not use `realm` ("" when it may): another source names a different identity system's
    accounts in it, so one id could stand for two people."""
    systems: dict[str, str] = {}
    for row in catalog.list_sources():
        if row.kind not in REMOTE_KINDS:
            continue
        try:
            config = from_catalog(row)
        except SourceConfigError:
            continue  # its own syncs fail and say why
        if config.identity_realm == realm:
            systems[row.name] = config.identity_system()
    mine = systems.get(source)
    others = sorted(name for name, system in systems.items() if name != source and system != mine)
    if mine is None or not others:
        return ""
    return (f"realm {realm!r} is also used by {', '.join(others)} for another instance's accounts: give each "
            "instance its own `realm`; memberships and links of this source are not synced until then")


def _memberships(catalog: Catalog, connector: Connector, store: IdentityStore, realm: str) -> tuple[int, int]:
    named = realm_sets(catalog.acl_principals(connector.name), realm)
    rows: list[Membership] = []
    failed: list[str] = []
    try:
        for item in connector.memberships(named):
            if isinstance(item, GroupMember):
                rows.append(Membership(item.principal, realm, item.account, item.level))
            elif isinstance(item, SyncFailure):
                catalog.record_failure(item)
                failed.append(item.item)
    except Exception:
        store.replace_memberships(connector.name, [])  # nothing read: nothing granted through this source
        raise
    stale = [f.item for f in catalog.list_failures(connector.name)
             if f.item.startswith(f"{realm}:") and f.item not in failed]
    catalog.clear_failures(connector.name, stale)
    stored = store.replace_memberships(connector.name, rows)
    log.info("source %s: %d memberships of %d principals (%d unreadable)", connector.name, stored, len(named),
             len(failed))
    return stored, len(failed)


def _link_by_email(catalog: Catalog, connector: Connector, store: IdentityStore, realm: str,
                   counts: IdentityCounts) -> None:
    linked = {link.subject for link in store.links() if link.realm == realm}
    todo = [(email, subject) for email, subject in store.verified_emails().items() if subject not in linked]
    random.shuffle(todo)
    try:
        for email, subject in todo[:LOOKUPS_PER_PASS]:
            accounts = connector.find_accounts(email)
            if accounts is None:
                return  # this source cannot look emails up
            if len(accounts) > 1:
                counts.ambiguous += 1
                log.warning("source %s: %d %s accounts have the verified email of user %s: none linked",
                            connector.name, len(accounts), realm, subject)
            elif accounts:
                _link(store, connector.name, subject, realm, accounts[0].account, accounts[0].display, counts)
    except ConnectorError as exc:
        catalog.record_failure(SyncFailure(connector.name, LINKING, f"looking accounts up by email failed: {exc}"))
        log.warning("source %s: looking accounts up by email failed: %s", connector.name, exc)
        counts.failed += 1  # a recorded failure: the pass is partial, never succeeded
        return
    catalog.clear_failure(connector.name, LINKING)
    if counts.linked or counts.ambiguous:
        log.info("source %s: %d users linked by email in realm %s, %d ambiguous", connector.name, counts.linked,
                 realm, counts.ambiguous)


def _link(store: IdentityStore, source: str, subject: str, realm: str, account: str, display: str,
          counts: IdentityCounts) -> None:
    try:
        store.link(subject, realm, account, display, method="email")
        counts.linked += 1
    except LinkConflict:
        log.warning("source %s: the %s account matching the verified email of user %s is linked to another "
                    "user: not linked", source, realm, subject)
