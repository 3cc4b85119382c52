"""Confluence (Cloud or Data Center) as a source: pages and blog posts of spaces, under their view permissions."""
from __future__ import annotations

import logging
from collections.abc import Iterator, Mapping
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from atlassian.confluence import ConfluenceServer

from connectors.base import AuthFailed, ConnectorError, document_id
from connectors.checkpoints import item_version
from connectors.config import ConfluenceSource
from connectors.confluence_access import effective_access, read_restriction, space_readers
from connectors.rendering import storage_to_markdown
from connectors.scoped import REMOTE_ERRORS, Listed, ScopedConnector, ScopeSpec, atlassian_client
from indexer.models import Access, Document

log = logging.getLogger(__name__)

RESTRICTIONS = "restrictions.read.restrictions.user,restrictions.read.restrictions.group"
BRIEF_EXPAND = f"version,ancestors,space,{RESTRICTIONS}"
FULL_EXPAND = f"body.storage,version,ancestors,space,metadata.labels,{RESTRICTIONS}"
PAGE = 50


def _status(exc: Exception) -> int | None:
    return getattr(getattr(exc, "response", None), "status_code", None)


class ConfluenceConnector(ScopedConnector):
    """Each space is a scope; its pages (and blog posts) are listed by CQL in last-modified order."""

    def __init__(self, config: ConfluenceSource, **kwargs: Any) -> None:
        super().__init__(config.name, config.overlap_minutes, config.reconcile_minutes, **kwargs)
        self.config = config
        self.client: ConfluenceServer | None = None
        self._restrictions: dict[str, set[str] | None] = {}
        try:
            self.zone = ZoneInfo(config.timezone)
        except (ZoneInfoNotFoundError, ValueError):
            self.zone = ZoneInfo("UTC")

    # -- the client and the spaces ---------------------------------------------------------------

    def _open(self) -> None:
        self.client, token = atlassian_client(ConfluenceServer, self.config)
        self._secrets = [token]
        self._restrictions = {}

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
            space = self._api.get(f"rest/api/space/{key}", params={"expand": "permissions"}) or {}
        except REMOTE_ERRORS as exc:
            status = _status(exc)
            if status == 401:
                raise AuthFailed(f"source {self.name!r}: Confluence refused the credentials") from None
            why = ("space not found or not visible" if status in (403, 404)
                   else f"reading the space failed: {self.clean(exc)}")
            return ScopeSpec(key, "", "", prefix, error=why)
        readers = space_readers(space, self.config.org_principal) if self.config.permissions == "source" else None
        if readers is None:
            readers = set(self.config.configured_access(key))
        else:
            readers |= set(self.config.access.get(key, []))
        access = Access(frozenset(readers))
        return ScopeSpec(key, ident=str(space.get("id") or key), access_digest=access.digest(), prefix=prefix,
                         data={"space": key, "readers": frozenset(readers)})

    # -- listing ---------------------------------------------------------------------------------

    def _list(self, spec: ScopeSpec, since: datetime | None, brief: bool) -> Iterator[Listed]:
        types = "page, blogpost" if self.config.blogposts else "page"
        cql = f'space = "{spec.data["space"]}" and type in ({types})'
        if since is not None:
            cql += f' and lastmodified >= "{since.astimezone(self.zone):%Y-%m-%d %H:%M}"'
        cql += " order by lastmodified asc"
        for content in self._search(cql, BRIEF_EXPAND if brief else FULL_EXPAND):
            yield self._listed(spec, content, complete=not brief)

    def _search(self, cql: str, expand: str) -> Iterator[dict[str, Any]]:
        """Every content a CQL finds, following `_links.next` (Cloud cursors) or start/limit."""
        params: dict[str, Any] | None = {"cql": cql, "expand": expand, "limit": PAGE, "start": 0}
        path = "rest/api/content/search"
        while True:
            page = (self._api.get(path, params=params) if params is not None
                    else self._api.get(path, absolute=True)) or {}
            results = page.get("results") or []
            yield from results
            links = page.get("_links") or {}
            if links.get("next"):
                path, params = self._next_url(links), None
            elif len(results) >= PAGE and params is not None:
                params = {**params, "start": int(params["start"]) + len(results)}
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
        ancestors = content.get("ancestors") or []
        parent = str(ancestors[-1]["id"]) if ancestors else ""
        access = self._access(spec, content)
        # The parent is part of the version: a page moved elsewhere is read again (its breadcrumb changed).
        changed = str(version.get("when") or "")
        return Listed(doc_id=document_id(self.name, path), path=path, changed=changed,
                      version=item_version(f"{version.get('number', 0)}@{parent}", access.digest()),
                      raw=content, complete=complete)

    def _access(self, spec: ScopeSpec, content: Mapping[str, Any]) -> Access:
        levels = [self._ancestor_restriction(str(a["id"])) for a in content.get("ancestors") or []]
        levels.append(read_restriction(content.get("restrictions")))
        return effective_access(spec.data["readers"], levels)

    def _ancestor_restriction(self, page_id: str) -> set[str] | None:
        if page_id not in self._restrictions:
            answer = self._api.get(f"rest/api/content/{page_id}/restriction/byOperation/read") or {}
            self._restrictions[page_id] = read_restriction(answer)
        return self._restrictions[page_id]

    def _read_again(self, spec: ScopeSpec, doc_id: str, what: Mapping[str, Any]) -> Listed | None:
        page_id = doc_id.rsplit("/", 1)[1]
        try:
            content = self._api.get(f"rest/api/content/{page_id}", params={"expand": FULL_EXPAND})
        except REMOTE_ERRORS as exc:
            if _status(exc) == 404:
                return None
            raise
        if not content or (content.get("space") or {}).get("key") != spec.data["space"]:
            return None
        return self._listed(spec, content, complete=True)

    # -- one page --------------------------------------------------------------------------------

    def _read(self, spec: ScopeSpec, listed: Listed) -> Document:
        content = listed.raw
        if not listed.complete:
            content = self._api.get(f"rest/api/content/{content['id']}", params={"expand": FULL_EXPAND}) or {}
        access = self._access(spec, content)
        text = self._text(spec, content)
        if len(text) > self.config.max_document_chars:
            text = text[: self.config.max_document_chars].rsplit("\n", 1)[0] + "\n\n(truncated)\n"
        links = content.get("_links") or {}
        base = str(links.get("base") or self.config.url).rstrip("/")
        return Document(id=listed.doc_id, source=self.name, path=listed.path, content=text, version=listed.version,
                        access=access, kind="page", language="markdown", title=str(content.get("title") or ""),
                        url=f"{base}{links['webui']}" if links.get("webui") else "",
                        metadata={"space": spec.data["space"], "type": str(content.get("type") or "page"),
                                  "version": str((content.get("version") or {}).get("number", ""))})

    def _text(self, spec: ScopeSpec, content: Mapping[str, Any]) -> str:
        version = content.get("version") or {}
        crumbs = " > ".join(str(a.get("title") or "") for a in content.get("ancestors") or [])
        labels = [str(label.get("name")) for label in
                  ((content.get("metadata") or {}).get("labels") or {}).get("results") or []]
        by = (version.get("by") or {}).get("displayName") or ""
        facts = [f"{'Blog post' if content.get('type') == 'blogpost' else 'Page'} in space {spec.data['space']}"]
        if crumbs:
            facts.append(f"under: {crumbs}")
        lines = [f"# {content.get('title') or ''}", "", " · ".join(facts),
                 f"version {version.get('number', '')} by {by or '-'} at {version.get('when') or ''}"]
        if labels:
            lines.append("labels: " + ", ".join(labels))
        body = storage_to_markdown(((content.get("body") or {}).get("storage") or {}).get("value"))
        return "\n".join([*lines, "", body]).strip() + "\n"
