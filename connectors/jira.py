"""Jira (Cloud or Data Center) as a source: issues of projects or a JQL, with comments, under Jira's permissions."""
from __future__ import annotations

import logging
from collections.abc import Iterator, Mapping
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from atlassian import Jira

from connectors.base import AuthFailed, ConnectorError, Unavailable, document_id
from connectors.checkpoints import item_version
from connectors.config import JiraSource
from connectors.jira_access import IssueAccess, project_grants
from connectors.rendering import adf_to_text, jira_wiki_to_text
from connectors.scoped import REMOTE_ERRORS, Listed, ScopedConnector, ScopeSpec, atlassian_client
from indexer.models import Access, Document

log = logging.getLogger(__name__)

BASE_FIELDS = ["summary", "description", "comment", "status", "issuetype", "priority", "labels", "components",
               "assignee", "reporter", "created", "updated", "security", "project"]
BRIEF_FIELDS = ["updated", "security", "reporter", "assignee", "project"]
PAGE = 100


def rich_text(value: Any) -> str:
    """Jira text fields are wiki markup (REST v2, Data Center) or ADF documents (Cloud REST v3)."""
    if isinstance(value, Mapping):
        return adf_to_text(value)
    return jira_wiki_to_text(value) if isinstance(value, str) else ""


def _name(value: Any) -> str:
    if isinstance(value, Mapping):
        return str(value.get("displayName") or value.get("name") or value.get("value") or "")
    if isinstance(value, list):
        return ", ".join(filter(None, (_name(v) for v in value)))
    return "" if value is None else str(value)


def _field_text(value: Any) -> str:
    """A custom field's value: rich text (ADF or wiki), an option/user/version object, or a list of them."""
    if isinstance(value, Mapping) and value.get("type") == "doc":
        return adf_to_text(value)
    if isinstance(value, str):
        return jira_wiki_to_text(value)
    return _name(value)


class JiraConnector(ScopedConnector):
    """Each configured project is a scope (or the JQL alone is one); issues are listed by update time."""

    def __init__(self, config: JiraSource, **kwargs: Any) -> None:
        super().__init__(config.name, config.overlap_minutes, config.reconcile_minutes, **kwargs)
        self.config = config
        self.client: Jira | None = None
        self.zone = ZoneInfo("UTC")
        self._grants: dict[str, IssueAccess] = {}

    # -- the client ------------------------------------------------------------------------------

    def _open(self) -> None:
        self.client, token = atlassian_client(Jira, self.config)
        self._secrets = [token]
        self._grants = {}
        try:
            me = self.client.myself() or {}
        except REMOTE_ERRORS as exc:
            status = getattr(getattr(exc, "response", None), "status_code", None)
            if status in (401, 403):
                raise AuthFailed(f"source {self.name!r}: Jira refused the credentials") from None
            raise Unavailable(f"source {self.name!r}: Jira did not answer: {self.clean(exc)}") from None
        try:
            # JQL dates are read in the API user's time zone.
            self.zone = ZoneInfo(str(me.get("timeZone") or "UTC"))
        except (ZoneInfoNotFoundError, ValueError):
            self.zone = ZoneInfo("UTC")

    @property
    def _api(self) -> Jira:
        """The client `_open` built; every sync opens it before listing anything."""
        if self.client is None:
            raise ConnectorError(f"source {self.name!r}: used before it was opened")
        return self.client

    def _scopes(self) -> list[ScopeSpec]:
        cfg = self.config
        narrow = f" AND ({cfg.jql})" if cfg.jql else ""
        specs = []
        for key in cfg.projects:
            try:
                grants = self._project(key)
            except REMOTE_ERRORS as exc:
                specs.append(ScopeSpec(key, ident="", access_digest="", prefix=f"{self.name}:{key}-",
                                       error=f"reading permissions failed: {self.clean(exc)}"))
                continue
            specs.append(ScopeSpec(key, ident=f'project = "{key}"{narrow}', access_digest=grants.digest(),
                                   prefix=f"{self.name}:{key}-", data={"jql": f'project = "{key}"{narrow}'}))
        if not cfg.projects:
            specs.append(ScopeSpec("jql", ident=cfg.jql, access_digest=Access.of(*cfg.default_access).digest(),
                                   prefix=f"{self.name}:", data={"jql": f"({cfg.jql})"}))
        return specs

    def scope_prefix(self, key: str) -> str:
        return f"{self.name}:" if key == "jql" else f"{self.name}:{key}-"

    def _project(self, key: str) -> IssueAccess:
        """Who may browse a project's issues (cached for the sync)."""
        if key not in self._grants:
            self._grants[key] = project_grants(self._api, key, self.config, self.clean)
        return self._grants[key]

    # -- listing ---------------------------------------------------------------------------------

    def _list(self, spec: ScopeSpec, since: datetime | None, brief: bool) -> Iterator[Listed]:
        jql = spec.data["jql"]
        if since is not None:
            jql += f' AND updated >= "{since.astimezone(self.zone):%Y-%m-%d %H:%M}"'
        jql += " ORDER BY updated ASC, key ASC"
        fields = BRIEF_FIELDS if brief else BASE_FIELDS + list(self.config.custom_fields)
        for issue in self._search(jql, fields):
            yield self._listed(issue, complete=not brief)

    def _search(self, jql: str, fields: list[str]) -> Iterator[dict[str, Any]]:
        """Every issue a JQL finds: Cloud pages with nextPageToken (/search/jql), Data Center with startAt."""
        if self.config.cloud:
            token = None
            while True:
                page = self._api.enhanced_jql(jql, fields=fields, nextPageToken=token, limit=PAGE) or {}
                yield from page.get("issues") or []
                token = page.get("nextPageToken")
                if not token or page.get("isLast") is True:
                    return
        start = 0
        while True:
            page = self._api.jql(jql, fields=fields, start=start, limit=PAGE) or {}
            issues = page.get("issues") or []
            yield from issues
            start += len(issues)
            if not issues or start >= int(page.get("total") or 0):
                return

    def _listed(self, issue: Mapping[str, Any], complete: bool) -> Listed:
        key = str(issue["key"])
        fields = issue.get("fields") or {}
        access = self._issue_access(fields, key)
        return Listed(doc_id=document_id(self.name, key), path=key, changed=str(fields.get("updated") or ""),
                      version=item_version(str(fields.get("updated") or ""), access.digest()), raw=issue,
                      complete=complete)

    def _issue_access(self, fields: Mapping[str, Any], key: str) -> Access:
        project = (fields.get("project") or {}).get("key") or key.rsplit("-", 1)[0]
        return self._project(str(project)).for_issue(fields, self.config.security_levels)

    def _read_again(self, spec: ScopeSpec, doc_id: str, what: Mapping[str, Any]) -> Listed | None:
        key = doc_id.split(":", 1)[1]
        try:
            issue = self._api.issue(key, fields=",".join(BASE_FIELDS + list(self.config.custom_fields)))
        except REMOTE_ERRORS as exc:
            if getattr(getattr(exc, "response", None), "status_code", None) == 404:
                return None
            raise
        return self._listed(issue, complete=True) if issue else None

    # -- one issue -------------------------------------------------------------------------------

    def _read(self, spec: ScopeSpec, listed: Listed) -> Document:
        issue = listed.raw
        if not listed.complete:
            issue = self._api.issue(listed.path, fields=",".join(BASE_FIELDS + list(self.config.custom_fields)))
        fields = issue.get("fields") or {}
        access = self._issue_access(fields, listed.path)
        text = self._text(listed.path, fields, self._comments(listed.path, fields))
        if len(text) > self.config.max_document_chars:
            text = text[: self.config.max_document_chars].rsplit("\n", 1)[0] + "\n\n(truncated)\n"
        return Document(id=listed.doc_id, source=self.name, path=listed.path, content=text,
                        version=item_version(str(fields.get("updated") or ""), access.digest()), access=access,
                        kind="issue", language="markdown", title=str(fields.get("summary") or ""),
                        url=f"{self.config.url}/browse/{listed.path}",
                        metadata={"status": _name(fields.get("status")), "type": _name(fields.get("issuetype")),
                                  "updated": str(fields.get("updated") or "")})

    def _comments(self, key: str, fields: Mapping[str, Any]) -> list[Mapping[str, Any]]:
        """The comments a search returned, or all of them (paged) when it returned only the first few."""
        block = fields.get("comment") or {}
        comments = list(block.get("comments") or [])
        total = int(block.get("total") or len(comments))
        while len(comments) < total:
            page = self._api.get(f"rest/api/2/issue/{key}/comment",
                                   params={"startAt": len(comments), "maxResults": PAGE, "orderBy": "created"}) or {}
            more = page.get("comments") or []
            if not more:
                break
            comments += more
            total = int(page.get("total") or total)
        return comments

    def _text(self, key: str, fields: Mapping[str, Any], comments: list[Mapping[str, Any]]) -> str:
        facts = [f"{_name(fields.get('issuetype')) or 'Issue'} {key}", f"status: {_name(fields.get('status'))}"]
        if fields.get("priority"):
            facts.append(f"priority: {_name(fields.get('priority'))}")
        people = [f"{role}: {_name(fields.get(role)) or '-'}" for role in ("reporter", "assignee")]
        extra = []
        if fields.get("labels"):
            extra.append("labels: " + ", ".join(map(str, fields["labels"])))
        if fields.get("components"):
            extra.append(f"components: {_name(fields['components'])}")
        lines = [f"# {fields.get('summary') or key}", "", " · ".join(facts), " · ".join(people)]
        lines += [" · ".join(extra)] if extra else []
        lines += [f"{label}: {_field_text(fields[fid])}" for fid, label in self.config.custom_fields.items()
                  if fields.get(fid) not in (None, "", [])]
        lines += [f"created: {fields.get('created') or ''} · updated: {fields.get('updated') or ''}", ""]
        description = rich_text(fields.get("description"))
        if description:
            lines += [description, ""]
        if comments:
            lines.append("## Comments\n")
        for comment in comments:
            lines += [f"### {_name(comment.get('author')) or 'someone'} · {comment.get('created') or ''}", "",
                      rich_text(comment.get("body")), ""]
        return "\n".join(lines).strip() + "\n"

