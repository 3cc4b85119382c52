"""Jira (Cloud or Data Center) as a source: issues of projects or a JQL, with comments, links and remote links,
under Jira's permissions; restricted comments are documents of their own."""
from __future__ import annotations

import logging
from collections.abc import Collection, Iterator, Mapping, Sequence
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from atlassian import Jira

from connectors.base import (
    AccessItem,
    Account,
    AuthFailed,
    ConnectorError,
    GroupMember,
    MemberItem,
    SyncItem,
    Unavailable,
    document_id,
)
from connectors.checkpoints import item_version
from connectors.config import JiraSource
from connectors.jira_access import IssueAccess, JiraPermissions, MembershipUnknown, account_of
from connectors.principal_sets import realm_sets
from connectors.rendering import adf_to_text, jira_wiki_to_text
from connectors.scoped import REMOTE_ERRORS, Listed, ScopedConnector, ScopeSpec, atlassian_client
from indexer.models import Access, AccessChange, Deletion, Document, SyncFailure

log = logging.getLogger(__name__)

BASE_FIELDS = ["summary", "description", "comment", "status", "issuetype", "priority", "labels", "components",
               "assignee", "reporter", "created", "updated", "security", "project", "issuelinks"]
BRIEF_FIELDS = ["updated", "security", "reporter", "assignee", "project"]
# What a permissions pass reads: who may browse, the security level, and the comments' visibility (the
# search returns comments with their bodies; Jira has no lighter way to read their visibility). Never the
# description, and nothing is indexed from it.
ACCESS_FIELDS = ["security", "reporter", "assignee", "project", "comment"]
PAGE = 100


def part_id(doc_id: str, comment_id: Any) -> str:
    """A restricted comment's own document: `<issue doc id>#comment-<id>`."""
    return f"{doc_id}#comment-{comment_id}"


def _status(exc: Exception) -> int | None:
    return getattr(getattr(exc, "response", None), "status_code", None)


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
        self.realm = config.identity_realm
        self.client: Jira | None = None
        self.zone = ZoneInfo("UTC")
        self.perms: JiraPermissions | None = None

    refreshes_items = True

    # -- the client ------------------------------------------------------------------------------

    def _open(self) -> None:
        self.client, token = atlassian_client(Jira, self.config)
        self._secrets = [token]
        self.perms = JiraPermissions(self.client, self.config, self.clean)  # caches live for one sync or pass
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

    @property
    def _perms(self) -> JiraPermissions:
        if self.perms is None:
            raise ConnectorError(f"source {self.name!r}: used before it was opened")
        return self.perms

    def _project(self, key: str) -> IssueAccess:
        """Who may browse a project's issues (cached for the sync)."""
        return self._perms.project(key)

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
        # An access that could not be worked out (admins only for now) is never "unchanged": the item is
        # read again, and its failure reported, until it can be.
        version = "" if self._perms.take_problems() else item_version(str(fields.get("updated") or ""),
                                                                       access.digest())
        return Listed(doc_id=document_id(self.name, key), path=key, changed=str(fields.get("updated") or ""),
                      version=version, raw=issue, complete=complete)

    def _issue_access(self, fields: Mapping[str, Any], key: str) -> Access:
        return self._perms.issue_access(fields, key)

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
        first = self._read_parts(spec, listed)[0]
        if not isinstance(first, Document):
            raise ConnectorError(f"source {self.name!r}: {listed.path} gave no document")
        return first

    def _read_parts(self, spec: ScopeSpec, listed: Listed) -> list[SyncItem]:
        """The issue (unrestricted comments, links and remote links in its text), then each comment with
        a visibility as its own document readable by the issue's readers who hold that role or group."""
        issue = listed.raw
        if not listed.complete:
            issue = self._api.issue(listed.path, fields=",".join(BASE_FIELDS + list(self.config.custom_fields)))
        key = str(issue.get("key") or listed.path)
        fields = issue.get("fields") or {}
        access = self._issue_access(fields, key)
        comments = self._comments(key, fields)
        project = self._project_of(key, fields)
        open_comments = [c for c in comments if not c.get("visibility")]
        text = self._text(key, fields, open_comments, self._links(fields), self._remote_links(key))
        text = self._capped(text)
        updated = str(fields.get("updated") or "")
        doc_id = document_id(self.name, key)
        items: list[SyncItem] = [Document(
            id=doc_id, source=self.name, path=key, content=text, version=item_version(updated, access.digest()),
            access=access, kind="issue", language="markdown", title=str(fields.get("summary") or ""),
            url=f"{self.config.url}/browse/{key}",
            metadata={"status": _name(fields.get("status")), "type": _name(fields.get("issuetype")),
                      "updated": updated})]
        items += [self._comment_document(doc_id, key, project, fields, comment, access)
                  for comment in comments if comment.get("visibility")]
        # named apart from the documents, whose landing would clear a failure recorded under their path
        items += [SyncFailure(self.name, f"{key} access", problem) for problem in self._perms.take_problems()]
        return items

    def _comment_document(self, doc_id: str, key: str, project: str, fields: Mapping[str, Any],
                          comment: Mapping[str, Any], issue_access: Access) -> Document:
        cid = comment.get("id")
        access = self._perms.comment_access(issue_access, comment.get("visibility") or {}, project,
                                            f"{key} comment {cid}")
        summary = str(fields.get("summary") or key)
        text = "\n".join([f"# {key}: {summary}", "", f"Comment restricted to {_visibility(comment)}", "",
                          f"### {_name(comment.get('author')) or 'someone'} · {comment.get('created') or ''}", "",
                          rich_text(comment.get("body"))]).strip() + "\n"
        updated = str(comment.get("updated") or comment.get("created") or "")
        return Document(id=part_id(doc_id, cid), source=self.name, path=f"{key}#comment-{cid}",
                        content=self._capped(text), version=item_version(updated, access.digest()), access=access,
                        kind="issue", language="markdown", title=f"{summary} (comment)",
                        url=f"{self.config.url}/browse/{key}?focusedCommentId={cid}",
                        metadata={"updated": updated, "parent": doc_id})

    def _capped(self, text: str) -> str:
        if len(text) > self.config.max_document_chars:
            text = text[: self.config.max_document_chars].rsplit("\n", 1)[0] + "\n\n(truncated)\n"
        return text

    @staticmethod
    def _project_of(key: str, fields: Mapping[str, Any]) -> str:
        return str((fields.get("project") or {}).get("key") or key.rsplit("-", 1)[0])

    @staticmethod
    def _links(fields: Mapping[str, Any]) -> list[str]:
        """Issue links as lines: the link type and the other issue's key, never its summary. The summary is
        the other issue's content, readable by its own readers, who may be fewer than this issue's (another
        project, a security level, per-issue browsing) or become fewer later without this issue changing."""
        lines = []
        for link in fields.get("issuelinks") or []:
            kind = link.get("type") or {}
            if link.get("outwardIssue"):
                other, verb = link["outwardIssue"], kind.get("outward") or kind.get("name") or "relates to"
            elif link.get("inwardIssue"):
                other, verb = link["inwardIssue"], kind.get("inward") or kind.get("name") or "relates to"
            else:
                continue
            lines.append(f"{verb} {other.get('key') or ''}")
        return lines

    def _remote_links(self, key: str) -> list[str]:
        try:
            links: Any = self._api.get(f"rest/api/2/issue/{key}/remotelink") or []
        except REMOTE_ERRORS as exc:
            if _status(exc) == 404:
                return []
            raise
        out = []
        for link in links if isinstance(links, list) else []:
            obj = link.get("object") or {}
            if obj.get("url"):
                out.append(f"[{obj.get('title') or obj['url']}]({obj['url']})")
        return out

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

    def _text(self, key: str, fields: Mapping[str, Any], comments: list[Mapping[str, Any]], links: list[str],
              remote: list[str]) -> str:
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
        if links:
            lines += ["## Links", ""] + [f"- {line}" for line in links] + [""]
        if remote:
            lines += ["## Remote links", ""] + [f"- {line}" for line in remote] + [""]
        if comments:
            lines.append("## Comments\n")
        for comment in comments:
            lines += [f"### {_name(comment.get('author')) or 'someone'} · {comment.get('created') or ''}", "",
                      rich_text(comment.get("body")), ""]
        return "\n".join(lines).strip() + "\n"


    # -- permissions pass and refresh ------------------------------------------------------------

    def access_pass(self, known: Mapping[str, str]) -> Iterator[AccessItem]:
        """Per project (or the JQL), every issue with only its access fields: access changes of issues and
        restricted comments, deletions of issues gone from the listing (deleted, moved to another project
        or key, out of the filter) and of comment documents whose comment is gone or no longer restricted."""
        self._open()
        for spec in self._scopes():
            if spec.error:
                yield SyncFailure(self.name, f"{spec.key}/", spec.error)
                continue
            listed: set[str] = set()
            try:
                for issue in self._search(spec.data["jql"] + " ORDER BY key ASC", ACCESS_FIELDS):
                    yield from self._access_of(issue, known, listed)
            except REMOTE_ERRORS as exc:
                yield SyncFailure(self.name, f"{spec.key}/", f"listing failed: {self.clean(exc)}")
                continue
            for doc_id in sorted(known):
                if doc_id.startswith(spec.prefix) and doc_id.split("#", 1)[0] not in listed:
                    yield Deletion(doc_id)

    def _access_of(self, issue: Mapping[str, Any], known: Mapping[str, str], listed: set[str]) -> Iterator[AccessItem]:
        key = str(issue["key"])
        doc_id = document_id(self.name, key)
        listed.add(doc_id)
        if doc_id not in known:
            return  # new here (created, or moved in): the content sync reads it
        fields = issue.get("fields") or {}
        try:
            access = self._issue_access(fields, key)
            comments = self._comments(key, fields)
        except REMOTE_ERRORS as exc:
            yield SyncFailure(self.name, key, self.clean(exc))
            return
        project = self._project_of(key, fields)
        parts: dict[str, Access] = {}
        shown = access
        for comment in comments:
            if not comment.get("visibility"):
                continue
            pid = part_id(doc_id, comment.get("id"))
            narrowed = self._perms.comment_access(access, comment["visibility"], project,
                                                  f"{key} comment {comment.get('id')}")
            if pid in known:
                parts[pid] = narrowed
            elif comment.get("updated") != comment.get("created"):
                # Edited into a restriction since the issue was indexed: its text may still be in the issue's
                # document. Narrow the issue to the comment's readers until the next sync rewrites it.
                shown = Access(self._perms.narrowed(shown.principals, narrowed.principals, key))
        for problem in self._perms.take_problems():
            yield SyncFailure(self.name, f"{key} access", problem)
        if known[doc_id] != shown.digest():
            yield AccessChange(doc_id, shown)
        for pid, part_access in sorted(parts.items()):
            if known[pid] != part_access.digest():
                yield AccessChange(pid, part_access)
        for pid in sorted(d for d in known if d.startswith(doc_id + "#") and d not in parts):
            yield Deletion(pid)  # the comment is gone or no longer restricted (the next sync puts it in the issue)

    def refresh(self, doc_ids: Sequence[str]) -> Iterator[SyncItem]:
        """These issues (and comment documents, by their issue) read again now; a Deletion for each that is
        gone, moved away (under its new key it is yielded when this source covers it) or no longer restricted."""
        self._open()
        asked: dict[str, list[str]] = {}
        for doc_id in doc_ids:
            asked.setdefault(doc_id.split("#", 1)[0], []).append(doc_id)
        for parent, ids in asked.items():
            key = parent.split(":", 1)[1]
            try:
                issue = self._api.issue(key, fields=",".join(BASE_FIELDS + list(self.config.custom_fields)))
                items = self._refreshed(issue) if issue else []
            except REMOTE_ERRORS as exc:
                if _status(exc) != 404:
                    yield SyncFailure(self.name, key, self.clean(exc))
                    continue
                items = []
            except Exception as exc:  # noqa: BLE001 - one bad item never stops the others
                yield SyncFailure(self.name, key, self.clean(exc))
                continue
            produced = {item.id for item in items if isinstance(item, Document)}
            yield from items
            for doc_id in sorted({parent, *ids} - produced):
                yield Deletion(doc_id)

    def _refreshed(self, issue: Mapping[str, Any]) -> list[SyncItem]:
        """An issue read by key (an old key resolves to the issue under its new one), if this source covers it."""
        key = str(issue["key"])
        project = self._project_of(key, issue.get("fields") or {})
        cfg = self.config
        if cfg.projects and project not in cfg.projects:
            return []
        if cfg.jql:
            narrow = f' AND project = "{project}"' if cfg.projects else ""
            if not any(True for _ in self._search(f'key = "{key}"{narrow} AND ({cfg.jql})', ["key"])):
                return []
        spec = self._specs.get(project) or ScopeSpec(project, "", "", f"{self.name}:{project}-")
        return self._read_parts(spec, self._listed(issue, complete=True))


    # -- identities: group members and accounts by email ------------------------------------------

    def memberships(self, principals: Collection[str]) -> Iterator[MemberItem]:
        """The active members of each `<realm>:group:<name>` the ACLs name (`group/member`, which lists
        nested groups' members too). Project roles are not principals here: ACLs name their actors."""
        wanted = [p for p in realm_sets(principals, self.realm) if p.startswith(f"{self.realm}:group:")]
        if not wanted:
            return
        self._open()
        for principal in wanted:
            group = principal.split(":", 2)[2]
            try:
                accounts = list(self._perms.member_accounts(group))
            except MembershipUnknown:
                yield SyncFailure(self.name, principal, "reading the group's members failed")
                continue
            yield from (GroupMember(principal, account) for account in accounts)

    def find_accounts(self, email: str) -> list[Account]:
        """Users whose email address is exactly `email`: Data Center `GET /rest/api/2/user/search?username=`
        (matches username, name and email), Cloud `GET /rest/api/3/user/search?query=` (Atlassian accounts
        only; a user whose profile hides the email cannot be matched)."""
        if self.client is None:  # opened once for all the look-ups of a pass
            self._open()
        if self.config.cloud:
            path, params = "rest/api/3/user/search", {"query": email, "maxResults": 50}
        else:
            path, params = "rest/api/2/user/search", {"username": email, "includeInactive": "false",
                                                      "maxResults": 50}
        try:
            found: Any = self._api.get(path, params=params) or []
        except REMOTE_ERRORS as exc:
            raise Unavailable(f"source {self.name!r}: user search failed: {self.clean(exc)}") from None
        out = []
        for user in found if isinstance(found, list) else []:
            account = account_of(user, self.config.cloud)
            if (account and user.get("active", True) and user.get("accountType", "atlassian") == "atlassian"
                    and str(user.get("emailAddress") or "").strip().lower() == email):
                out.append(Account(account, str(user.get("name") or user.get("displayName") or "")))
        return out


def _visibility(comment: Mapping[str, Any]) -> str:
    visibility = comment.get("visibility") or {}
    return f"{visibility.get('type') or '?'} {visibility.get('value') or '?'}"
