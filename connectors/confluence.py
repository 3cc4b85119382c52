"""Confluence (Cloud or Data Center) as a source: pages and blog posts of spaces (with their comments and
labels), under the space's view permission intersected with the read restrictions of the page and its ancestors."""
from __future__ import annotations

import hashlib
import logging
from collections.abc import Collection, Iterator, Mapping, Sequence
from datetime import datetime
from typing import Any
from urllib.parse import quote
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from atlassian.confluence import ConfluenceServer

from connectors.base import (
    AccessItem,
    AuthFailed,
    Checkpoint,
    ConnectorError,
    GroupMember,
    MemberItem,
    SyncItem,
    document_id,
)
from connectors.checkpoints import item_version
from connectors.config import ConfluenceSource
from connectors.confluence_access import (
    MembersUnreadable,
    Names,
    datacenter_space_readers,
    effective_access,
    read_restriction,
    space_readers,
)
from connectors.principal_sets import realm_sets
from connectors.rendering import storage_to_markdown
from connectors.scoped import REMOTE_ERRORS, Listed, ScopedConnector, ScopeSpec, atlassian_client
from indexer.models import Access, AccessChange, Deletion, Document, SyncFailure

log = logging.getLogger(__name__)

RESTRICTIONS = "restrictions.read.restrictions.user,restrictions.read.restrictions.group"
# What decides a page's access: its ancestors and read restrictions (never its body).
ACCESS_EXPAND = f"ancestors,{RESTRICTIONS}"
BRIEF_EXPAND = f"version,ancestors,space,metadata.labels,{RESTRICTIONS}"
FULL_EXPAND = f"body.storage,version,ancestors,space,metadata.labels,{RESTRICTIONS}"
COMMENT_EXPAND = "body.storage,version"
PAGE = 50


def _status(exc: Exception) -> int | None:
    return getattr(getattr(exc, "response", None), "status_code", None)


def _labels(content: Mapping[str, Any]) -> list[str]:
    results = ((content.get("metadata") or {}).get("labels") or {}).get("results") or []
    return sorted(str(label.get("name")) for label in results if label.get("name"))


class ConfluenceConnector(ScopedConnector):
    """Each space is a scope; its pages (and blog posts) are listed by CQL in last-modified order."""

    refreshes_items = True

    def __init__(self, config: ConfluenceSource, **kwargs: Any) -> None:
        super().__init__(config.name, config.overlap_minutes, config.reconcile_minutes, **kwargs)
        self.config = config
        self.realm = config.identity_realm
        self.names = Names(self.realm, config.cloud)
        self.client: ConfluenceServer | None = None
        self._restrictions: dict[str, set[str] | None] = {}
        self._members: dict[str, frozenset[str] | None] = {}
        self._keys: dict[str, str | None] = {}
        self._warnings: list[SyncFailure] = []
        self._warned: set[str] = set()
        try:
            self.zone = ZoneInfo(config.timezone)
        except (ZoneInfoNotFoundError, ValueError):
            self.zone = ZoneInfo("UTC")

    # -- the client, the spaces and who may read them ----------------------------------------------

    def _open(self) -> None:
        self.client, token = atlassian_client(ConfluenceServer, self.config)
        self._secrets = [token]
        # Everything read about permissions is cached for one sync (or pass) only.
        self._restrictions, self._members, self._keys = {}, {}, {}
        self._warnings, self._warned = [], set()

    @property
    def _api(self) -> ConfluenceServer:
        """The client `_open` built; every sync opens it before listing anything."""
        if self.client is None:
            raise ConnectorError(f"source {self.name!r}: used before it was opened")
        return self.client

    def _scopes(self) -> list[ScopeSpec]:
        return [self._space(key) for key in self.config.spaces]

    def _space(self, key: str) -> ScopeSpec:
        prefix = f"{self.name}:{key}/"
        try:
            space = self._api.get(f"rest/api/space/{quote(key, safe='')}", params={"expand": "permissions"}) or {}
            readers = self._space_readers(key, space)
        except REMOTE_ERRORS as exc:
            status = _status(exc)
            if status == 401:
                raise AuthFailed(f"source {self.name!r}: Confluence refused the credentials") from None
            why = ("space not found or not visible" if status in (403, 404)
                   else f"reading the space failed: {self.clean(exc)}")
            return ScopeSpec(key, "", "", prefix, error=why)
        access = Access(frozenset(readers))
        return ScopeSpec(key, ident=str(space.get("id") or key), access_digest=access.digest(), prefix=prefix,
                         data={"space": key, "readers": frozenset(readers)})

    def _space_readers(self, key: str, space: Mapping[str, Any]) -> set[str]:
        """Who may view the space. `permissions: config` or an `access` entry for the key: as configured
        (an explicit override). Otherwise read from the server (Cloud: the space's `permissions`
        expansion; Data Center: `space/{key}/permissions`); when the server does not say, nobody but
        admins, with a failure admins see. A transient error raises (the space is then left as it is)."""
        if self.config.permissions == "config":
            return set(self.config.configured_access(key))
        if key in self.config.access:
            return set(self.config.access[key])
        # Whichever the server gives: Cloud answers `expand=permissions` (also behind a custom domain).
        readers = space_readers(space, self.config.org_principal, self.names)
        why = "the space's `permissions` expansion is empty (the API user may not view them)"
        if readers is None and not self.config.cloud:
            try:
                answer = self._api.get(f"rest/api/space/{quote(key, safe='')}/permissions")
            except REMOTE_ERRORS as exc:
                status = _status(exc)
                if status not in (403, 404, 405):
                    raise
                answer = None
            why = (f"`space/{key}/permissions` was refused or is missing (it needs a Data Center version "
                   "with that resource and an API user allowed to read the space's permissions)")
            readers = datacenter_space_readers(answer, self.names, self._user_key)
        if readers is None:
            self._warn(f"{key}/permissions", f"space permissions of {key} could not be read: "
                       f"{why}; its pages are admin-only until they can be read "
                       f"or `access` names the space")
            return set()
        return readers

    def _user_key(self, username: str) -> str | None:
        """A Data Center username's user key, which principals use (`GET user?username=`), cached."""
        if username not in self._keys:
            try:
                user = self._api.get("rest/api/user", params={"username": username}) or {}
                self._keys[username] = str(user.get("userKey") or "") or None
            except REMOTE_ERRORS as exc:
                self._keys[username] = None
                self._warn(f"user:{username}", f"user {username} could not be looked up ({self.clean(exc)}); "
                           "left out of the space's readers")
        return self._keys[username]

    def _group_members(self, name: str) -> frozenset[str] | None:
        """A group's members as user principals (`group/{name}/member`, paged), cached; None: unreadable."""
        if name not in self._members:
            members: set[str] = set()
            try:
                for user in self._paged(f"rest/api/group/{quote(name, safe='')}/member", {}):
                    principal = self.names.user(user)
                    if principal:
                        members.add(principal)
                self._members[name] = frozenset(members)
            except REMOTE_ERRORS as exc:
                self._members[name] = None
                self._warn(f"group:{name}", f"members of group {name} could not be read ({self.clean(exc)}); "
                           "pages whose access needs them are admin-only")
        return self._members[name]

    def _warn(self, item: str, message: str) -> None:
        """A problem admins must see that does not stop the sync: yielded as a SyncFailure, once per sync."""
        if item not in self._warned:
            self._warned.add(item)
            self._warnings.append(SyncFailure(self.name, item, message))
            log.warning("source %s: %s", self.name, message)

    def _drain(self) -> Iterator[SyncFailure]:
        while self._warnings:
            yield self._warnings.pop(0)

    # -- listing ---------------------------------------------------------------------------------

    def _cql(self, spec: ScopeSpec, since: datetime | None) -> str:
        types = "page, blogpost" if self.config.blogposts else "page"
        cql = f'space = "{spec.data["space"]}" and type in ({types})'
        if since is not None:
            cql += f' and lastmodified >= "{since.astimezone(self.zone):%Y-%m-%d %H:%M}"'
        return cql + " order by lastmodified asc"

    def _list(self, spec: ScopeSpec, since: datetime | None, brief: bool) -> Iterator[Listed]:
        for content in self._search(self._cql(spec, since), BRIEF_EXPAND if brief else FULL_EXPAND):
            yield self._listed(spec, content, complete=not brief)

    def _search(self, cql: str, expand: str) -> Iterator[dict[str, Any]]:
        """Every content a CQL finds."""
        yield from self._paged("rest/api/content/search", {"cql": cql, "expand": expand})

    def _paged(self, path: str, params: Mapping[str, Any]) -> Iterator[dict[str, Any]]:
        """Every result of a v1 list resource, following `_links.next` (Cloud cursors) or start/limit."""
        query: dict[str, Any] | None = {**params, "limit": PAGE, "start": 0}
        while True:
            page = (self._api.get(path, params=query) if query is not None
                    else self._api.get(path, absolute=True)) or {}
            results = page.get("results") or []
            yield from results
            links = page.get("_links") or {}
            if links.get("next"):
                path, query = self._next_url(links), None
            elif len(results) >= PAGE and query is not None:
                query = {**query, "start": int(query["start"]) + len(results)}
            else:
                return

    def _next_url(self, links: Mapping[str, Any]) -> str:
        """`_links.next` is relative to the site's context path (`/wiki` on Cloud)."""
        base = str(links.get("base") or self.config.url).rstrip("/")
        return base + str(links["next"])

    def _listed(self, spec: ScopeSpec, content: Mapping[str, Any], complete: bool) -> Listed:
        page_id = str(content["id"])
        path = f"{spec.data['space']}/{page_id}"
        version = content.get("version") or {}
        chain = ".".join(str(a["id"]) for a in content.get("ancestors") or [])
        labels = hashlib.sha256(",".join(_labels(content)).encode()).hexdigest()[:8]
        access = self._access(spec, content)
        # The ancestors (a move changes the breadcrumb, not the version) and the labels (a label-only
        # edit bumps nothing) are part of the version: either change has the page read again.
        changed = str(version.get("when") or "")
        return Listed(doc_id=document_id(self.name, path), path=path, changed=changed,
                      version=item_version(f"{version.get('number', 0)}@{chain}#{labels}", access.digest()),
                      raw=content, complete=complete)

    def _access(self, spec: ScopeSpec, content: Mapping[str, Any]) -> Access:
        """Space readers ∩ the read restriction of each ancestor ∩ the page's own. When a group's members
        were needed and could not be read: admins only (fail closed), and a failure says why."""
        levels = [self._ancestor_restriction(str(a["id"])) for a in content.get("ancestors") or []]
        levels.append(read_restriction(content.get("restrictions"), self.names))
        try:
            return effective_access(spec.data["readers"], levels, self._group_members, self.names,
                                    self.config.org_principal)
        except MembersUnreadable:
            return Access()

    def _ancestor_restriction(self, page_id: str) -> set[str] | None:
        if page_id not in self._restrictions:
            answer = self._api.get(f"rest/api/content/{page_id}/restriction/byOperation/read") or {}
            self._restrictions[page_id] = read_restriction(answer, self.names)
        return self._restrictions[page_id]

    def _fetch(self, page_id: str) -> dict[str, Any] | None:
        """The content now, with everything needed to index it; None when it is gone or trashed."""
        try:
            content = self._api.get(f"rest/api/content/{page_id}", params={"expand": FULL_EXPAND})
        except REMOTE_ERRORS as exc:
            if _status(exc) == 404:
                return None
            raise
        if not content or str(content.get("status") or "current") != "current":
            return None
        return dict(content)

    def _read_again(self, spec: ScopeSpec, doc_id: str, what: Mapping[str, Any]) -> Listed | None:
        content = self._fetch(doc_id.rsplit("/", 1)[1])
        if content is None or (content.get("space") or {}).get("key") != spec.data["space"]:
            return None
        return self._listed(spec, content, complete=True)

    # -- the Connector contract: sync, the permissions pass, single pages again --------------------

    def sync(self, checkpoint: Checkpoint | None, known: Mapping[str, str]) -> Iterator[SyncItem]:
        for item in super().sync(checkpoint, known):
            yield from self._drain()
            yield item
        yield from self._drain()

    def access_pass(self, known: Mapping[str, str]) -> Iterator[AccessItem]:
        """Per space: its readers, then every page with only its ancestors and read restrictions (no
        body, no version), one listing; the access of each indexed page is computed again from them."""
        self._open()
        for spec in self._scopes():
            yield from self._drain()
            mine = {d: v for d, v in known.items() if d.startswith(spec.prefix)}
            if spec.error:
                yield SyncFailure(self.name, f"{spec.key}/", spec.error)
                continue
            try:
                listed = list(self._search(self._cql(spec, None), ACCESS_EXPAND))
            except REMOTE_ERRORS as exc:
                yield SyncFailure(self.name, f"{spec.key}/", f"listing failed: {self.clean(exc)}")
                continue
            # The space's own pages carry their restrictions: no request per ancestor.
            self._restrictions.update({str(c["id"]): read_restriction(c.get("restrictions"), self.names)
                                       for c in listed})
            present: set[str] = set()
            for content in listed:
                doc_id = document_id(self.name, f"{spec.data['space']}/{content['id']}")
                present.add(doc_id)
                if doc_id not in mine:
                    continue  # not indexed yet: the next sync reads it
                try:
                    access = self._access(spec, content)
                except REMOTE_ERRORS as exc:
                    yield SyncFailure(self.name, doc_id.split(":", 1)[1], f"restrictions: {self.clean(exc)}")
                    continue
                yield from self._drain()
                if access.digest() != mine[doc_id]:
                    yield AccessChange(doc_id, access)
            for doc_id in sorted(set(mine) - present):
                yield Deletion(doc_id)  # trashed, purged or moved to another space
        yield from self._drain()

    def refresh(self, doc_ids: Sequence[str]) -> Iterator[SyncItem]:
        """These pages read again now: the Document (under its space's current readers), or a Deletion
        when it is gone, trashed or moved to another space (then also the Document under its new id
        when that space is indexed too)."""
        self._open()
        specs: dict[str, ScopeSpec] = {}

        def spec_of(key: str) -> ScopeSpec:
            if key not in specs:
                specs[key] = self._space(key)
            return specs[key]

        for doc_id in doc_ids:
            source, _, path = doc_id.partition(":")
            key, _, page_id = path.partition("/")
            if source != self.name or not key or not page_id:
                yield SyncFailure(self.name, doc_id, "not a page id of this source")
                continue
            if key not in self.config.spaces:
                yield Deletion(doc_id)
                continue
            spec = spec_of(key)
            yield from self._drain()
            if spec.error:
                yield SyncFailure(self.name, f"{key}/", spec.error)
                continue
            try:
                content = self._fetch(page_id)
            except REMOTE_ERRORS as exc:
                yield SyncFailure(self.name, path, self.clean(exc))
                continue
            now_in = str((content or {}).get("space", {}).get("key") or "")
            if content is None or now_in != key:
                yield Deletion(doc_id)
                if content is None or now_in not in self.config.spaces:
                    continue
                spec = spec_of(now_in)
                if spec.error:
                    yield SyncFailure(self.name, f"{now_in}/", spec.error)
                    continue
            try:
                yield self._read(spec, self._listed(spec, content, complete=True))
            except Exception as exc:  # noqa: BLE001 - one bad page never stops the others
                yield SyncFailure(self.name, f"{spec.key}/{page_id}", self.clean(exc))
            yield from self._drain()
        yield from self._drain()

    # -- identities ------------------------------------------------------------------------------

    def memberships(self, principals: Collection[str]) -> Iterator[MemberItem]:
        """The members of each `<realm>:group:<name>` the ACLs name (`group/{name}/member`). Confluence has no
        API to find a user by email: its accounts are linked by an admin, or on Cloud through a Jira Cloud
        source of the same `atlassian` realm (an accountId is the same Atlassian account in both)."""
        wanted = [p for p in realm_sets(principals, self.realm) if p.startswith(f"{self.realm}:group:")]
        if not wanted:
            return
        self._open()
        prefix = f"{self.realm}:user:"
        for principal in wanted:
            found = self._group_members(principal.split(":", 2)[2])
            if found is None:
                yield SyncFailure(self.name, principal, "reading the group's members failed")
                continue
            yield from (GroupMember(principal, p[len(prefix):]) for p in sorted(found) if p.startswith(prefix))

    # -- one page --------------------------------------------------------------------------------

    def _read(self, spec: ScopeSpec, listed: Listed) -> Document:
        content = listed.raw
        if not listed.complete:
            content = self._api.get(f"rest/api/content/{content['id']}", params={"expand": FULL_EXPAND}) or {}
        access = self._access(spec, content)
        comments = list(self._paged(f"rest/api/content/{content['id']}/child/comment",
                                    {"expand": COMMENT_EXPAND, "depth": "all"}))
        text = self._text(spec, content, comments)
        if len(text) > self.config.max_document_chars:
            text = text[: self.config.max_document_chars].rsplit("\n", 1)[0] + "\n\n(truncated)\n"
        links = content.get("_links") or {}
        base = str(links.get("base") or self.config.url).rstrip("/")
        return Document(id=listed.doc_id, source=self.name, path=listed.path, content=text, version=listed.version,
                        access=access, kind="page", language="markdown", title=str(content.get("title") or ""),
                        url=f"{base}{links['webui']}" if links.get("webui") else "",
                        metadata={"space": spec.data["space"], "type": str(content.get("type") or "page"),
                                  "version": str((content.get("version") or {}).get("number", "")),
                                  "labels": ",".join(_labels(content)), "comments": str(len(comments))})

    def _text(self, spec: ScopeSpec, content: Mapping[str, Any], comments: Sequence[Mapping[str, Any]]) -> str:
        version = content.get("version") or {}
        labels = _labels(content)
        by = (version.get("by") or {}).get("displayName") or ""
        facts = [f"{'Blog post' if content.get('type') == 'blogpost' else 'Page'} in space {spec.data['space']}"]
        # No ancestor titles in the text: a permissions pass re-applies the stored text under the page's new
        # access after a move, and the old parents' titles must not reach readers who may not read them.
        lines = [f"# {content.get('title') or ''}", "", " · ".join(facts),
                 f"version {version.get('number', '')} by {by or '-'} at {version.get('when') or ''}"]
        if labels:
            lines.append("labels: " + ", ".join(labels))
        body = storage_to_markdown(((content.get("body") or {}).get("storage") or {}).get("value"))
        parts = [*lines, "", body]
        if comments:
            # Page comments cannot be restricted on their own in Confluence: they have the page's access.
            parts += ["", "## Comments"]
            for comment in comments:
                meta = comment.get("version") or {}
                who = (meta.get("by") or {}).get("displayName") or "-"
                said = storage_to_markdown(((comment.get("body") or {}).get("storage") or {}).get("value"))
                parts += ["", f"**{who}** at {meta.get('when') or ''}:", "", said.strip()]
        return "\n".join(parts).strip() + "\n"
