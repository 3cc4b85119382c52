"""GitLab as a source: a group's (or listed) projects, code through the git connector plus issues and merge requests."""
from __future__ import annotations

import hashlib
import logging
import time
from collections.abc import Callable, Collection, Iterator, Mapping, Sequence
from dataclasses import replace
from datetime import timedelta
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlsplit, urlunsplit

import gitlab
import requests
from gitlab.exceptions import GitlabAuthenticationError, GitlabError, GitlabGetError

from connectors.base import (
    AccessItem,
    Account,
    AuthFailed,
    Checkpoint,
    ConnectorError,
    GroupMember,
    MemberItem,
    SourceNotFound,
    SyncItem,
    Unavailable,
    document_id,
)
from connectors.checkpoints import CheckpointedSync, SyncState, item_version, stamp
from connectors.config import GitLabSource
from connectors.git_process import redact
from connectors.git_repos import GitRepoConnector
from connectors.gitlab_access import (
    GUEST,
    Member,
    ProjectAccess,
    Share,
    effective_members,
    parse_members,
    parse_shares,
    project_access,
)
from connectors.gitlab_tickets import (
    NOTE_SUFFIX,
    internal_notes,
    note_document,
    note_path,
    ticket_document,
    ticket_path,
)
from connectors.http_policy import PolicySession, quiet_client_loggers
from connectors.principal_sets import realm_sets
from indexer.models import Access, AccessChange, Deletion, Document, Skipped, SyncFailure

log = logging.getLogger(__name__)

TICKETS = ("issues", "merge_requests")
SCOPES = ("code", *TICKETS)
REMOTE_ERRORS = (GitlabError, requests.RequestException)


class GitLabConnector(CheckpointedSync):
    """Code, issues and merge requests of GitLab projects; each document carries its project's access, and
    each internal note is a document of its own readable by the project's Reporter+ members."""

    access_from_source = True  # documents' access comes from GitLab and is part of their version
    refreshes_items = True  # issues and merge requests (with their notes) are read again one by one

    def __init__(self, config: GitLabSource, workdir: Path, max_file_bytes: int = 1_000_000,
                 clock: Callable[[], float] = time.time) -> None:
        self.name = config.name
        self.config = config
        self.realm = config.identity_realm
        self.workdir = Path(workdir)
        self.max_file_bytes = max_file_bytes
        self.clock = clock
        self.overlap = timedelta(minutes=config.overlap_minutes)
        self._token = ""
        self._state: SyncState | None = None
        self._projects: dict[int, tuple[dict[str, Any], ProjectAccess]] = {}
        self._unavailable: set[int] = set()  # projects seen this sync whose members could not be read
        self._missing: list[str] = []  # configured projects GitLab did not find this sync
        self._gone: set[str] = set()  # internal notes found deleted this sync (already yielded as Deletions)
        self._users_client: gitlab.Gitlab | None = None

    # -- the Connector contract -----------------------------------------------------------------

    def sync(self, checkpoint: Checkpoint | None, known: Mapping[str, str]) -> Iterator[SyncItem]:
        self._state = state = SyncState(known=known, previous=checkpoint or {}, clock=self.clock,
                                        reconcile_every=self.config.reconcile_minutes * 60)
        gl = self._client()
        projects = self._list_projects(gl)
        log.info("sync %s: %d projects", self.name, len(projects))
        self._projects, self._unavailable, self._gone = {}, set(), set()
        for path in self._missing:
            state.keep_scopes_of(path)
            state.seen |= {d for d in known if d.startswith(f"{self.name}:{path}/")}
            yield SyncFailure(self.name, f"{path}/", "project not found or not visible to the token")
        for project in projects:
            yield from self._project(gl, project, known, state)
        yield from self._retries(gl, state)
        if state.reconcile_due():
            yield from self._reconcile(gl, state)
        yield from self._deletions(known, state)
        state.finished = True
        log.info("sync %s done: %d items present, %d to retry", self.name, len(state.seen), len(state.retry))

    def list_ids(self) -> set[str]:
        """Ids the source has: those the finished sync listed completely, else a fresh listing."""
        state = self._state
        if state is None or not state.finished:
            state = SyncState(known={})
            for _ in self._listing_pass(state):
                pass
        if not state.complete_listing():
            raise ConnectorError(f"source {self.name!r}: some projects could not be listed completely; "
                                 "not pruning")
        return set(state.seen)

    def access_pass(self, known: Mapping[str, str]) -> Iterator[AccessItem]:
        """Per project with indexed documents: its settings (from the project listing), its members and, per
        indexed kind, the listing of its issues / merge requests (confidential flag, author, assignees; which
        iids exist); the notes of a ticket only when internal notes of it are indexed (which still exist).
        No single item, no clone or fetch, nothing embedded. Every code file of a project shares the
        project's code access."""
        gl = self._client()
        projects = {p["path_with_namespace"]: p for p in self._list_projects(gl)}
        owned: dict[str, list[str]] = {}
        for doc_id in sorted(known):
            rel = doc_id.split(":", 1)[1] if doc_id.startswith(f"{self.name}:") else ""
            owner = _owner(rel, projects) or _owner(rel, dict.fromkeys(self._missing))
            if owner is None:
                yield Deletion(doc_id)  # its project is gone, moved out of scope or renamed
            else:
                owned.setdefault(owner, []).append(doc_id)
        for path in self._missing:
            if path in owned:
                yield SyncFailure(self.name, f"{path}/", "project not found or not visible to the token")
        for path, doc_ids in owned.items():
            if path in projects:
                yield from self._project_access_pass(gl, projects[path], doc_ids, known)

    def refresh(self, doc_ids: Sequence[str]) -> Iterator[SyncItem]:
        """Issues and merge requests (named by their own id or one of their notes' ids) read again now, with
        their internal notes as documents; a Deletion for those gone. Code files yield nothing: a push is
        served by an incremental sync (the git diff), not here."""
        gl = self._client()
        wanted: dict[str, dict[tuple[str, int], set[str]]] = {}
        for doc_id in dict.fromkeys(doc_ids):
            parsed = _ticket_ref(self.name, doc_id)
            if parsed is not None:
                project_path, kind, iid = parsed
                ticket = document_id(self.name, ticket_path(project_path, kind, iid))
                wanted.setdefault(project_path, {}).setdefault((kind, iid), {ticket}).add(doc_id)
        for project_path, tickets in wanted.items():
            yield from self._refresh_project(gl, project_path, tickets)

    # -- projects -------------------------------------------------------------------------------

    def _client(self) -> gitlab.Gitlab:
        quiet_client_loggers()
        self._token = self.config.token()
        session = PolicySession(self.config.http_policy())
        return gitlab.Gitlab(self.config.url, private_token=self._token or None, session=session,
                             timeout=self.config.timeout_seconds, per_page=100, ssl_verify=self.config.verify_tls)

    def _list_projects(self, gl: gitlab.Gitlab) -> list[dict[str, Any]]:
        """Every project in scope (a whole-source failure raises: nothing may be pruned on a partial list)."""
        cfg = self.config
        self._missing = []
        try:
            if cfg.group:
                options: dict[str, Any] = {"include_subgroups": cfg.include_subgroups, "order_by": "id",
                                           "sort": "asc", "iterator": True, "with_shared": False}
                if not cfg.include_archived:
                    options["archived"] = False
                return [p.attributes for p in gl.groups.get(cfg.group, lazy=True).projects.list(**options)]
            return [p for p in (self._one_project(gl, path) for path in cfg.projects) if p is not None]
        except GitlabAuthenticationError:
            raise AuthFailed(f"source {self.name!r}: GitLab refused the token") from None
        except GitlabGetError as exc:
            if exc.response_code == 404:
                raise SourceNotFound(f"source {self.name!r}: group {cfg.group!r} not found or not visible") from None
            raise Unavailable(f"source {self.name!r}: listing projects failed: {self._clean(exc)}") from None
        except REMOTE_ERRORS as exc:
            raise Unavailable(f"source {self.name!r}: listing projects failed: {self._clean(exc)}") from None

    def _one_project(self, gl: gitlab.Gitlab, path: str) -> dict[str, Any] | None:
        """A configured project; None (noted as missing: a per-project failure) when GitLab says 404."""
        try:
            return gl.projects.get(path).attributes
        except GitlabGetError as exc:
            if exc.response_code != 404:
                raise
            self._missing.append(path)
            return None

    def _project(self, gl: gitlab.Gitlab, project: dict[str, Any], known: Mapping[str, str],
                 state: SyncState, fetch: bool = True) -> Iterator[SyncItem]:
        pid, path = project["id"], project["path_with_namespace"]
        try:
            members = self._members(gl, project)
        except REMOTE_ERRORS as exc:
            self._unavailable.add(pid)
            for scope in SCOPES:
                state.keep_scope(f"{pid}/{scope}")
            state.seen |= {d for d in state.known if d.startswith(f"{self.name}:{path}/")}
            yield SyncFailure(self.name, f"{path}/", f"reading members failed: {self._clean(exc)}")
            return
        access = project_access(project, members, self.config.internal_principal, self.realm)
        self._projects[pid] = (project, access)
        if self.config.code and access.code is not None:
            yield from self._code(project, access.code, known, state, fetch)
        for kind in TICKETS:
            if getattr(self.config, kind) and access.feature(kind) is not None:
                yield from self._list_tickets(gl, project, kind, access, state, fetch)

    def _members(self, gl: gitlab.Gitlab, project: Mapping[str, Any]) -> list[Member]:
        """The project's effective members: `members/all`, with the roles of those who come through a shared
        group capped by the share (that listing does not cap them)."""
        listed = gl.projects.get(project["id"], lazy=True).members_all.list(iterator=True)
        return self._capped(gl, listed, project, f"project {project['id']}")

    def _group_members(self, gl: gitlab.Gitlab, full_path: str) -> list[Member]:
        """A group's effective members, as for a project: `members/all` (members of its ancestors included)
        and the members of the groups it is shared with, capped by each share."""
        group = gl.groups.get(full_path)
        return self._capped(gl, group.members_all.list(iterator=True), group.attributes, f"group {full_path}")

    def _capped(self, gl: gitlab.Gitlab, listed: Any, holder: Mapping[str, Any], what: str) -> list[Member]:
        """`effective_members` of a `members/all` listing and the holder's shares. A shared group whose members
        the token cannot read caps everyone at the share's role (narrower than GitLab, never wider)."""
        rows = parse_members(m.attributes for m in listed)
        shared: dict[Share, list[Member]] = {}
        for share in parse_shares(holder):
            try:
                shared[share] = parse_members(m.attributes for m in gl.groups.get(
                    share.group_id, lazy=True).members_all.list(iterator=True))
            except GitlabGetError as exc:
                if exc.response_code not in (403, 404):
                    raise
                log.warning("source %s: members of group %s (shared with %s) are not readable: "
                            "every member capped at the share's role", self.name, share.full_path, what)
                shared[share] = list(rows)
        return effective_members(rows, shared)

    # -- identities: group memberships and accounts by email -----------------------------------

    def memberships(self, principals: Collection[str]) -> Iterator[MemberItem]:
        """Members of each `<realm>:group:<full_path>` the ACLs name (an org-wide principal or configured
        access naming a GitLab group): Guest or more, inherited and through shared groups (capped)."""
        wanted = [p for p in realm_sets(principals, self.realm) if p.startswith(f"{self.realm}:group:")]
        if not wanted:
            return
        gl = self._client()
        for principal in wanted:
            path = principal.split(":", 2)[2]
            try:
                members = self._group_members(gl, path)
            except GitlabAuthenticationError:
                raise AuthFailed(f"source {self.name!r}: GitLab refused the token") from None
            except GitlabGetError as exc:
                if exc.response_code != 404:
                    yield SyncFailure(self.name, principal, f"reading members failed: {self._clean(exc)}")
                    continue
                members = []  # the group is gone: nobody holds it
            except REMOTE_ERRORS as exc:
                yield SyncFailure(self.name, principal, f"reading members failed: {self._clean(exc)}")
                continue
            yield from (GroupMember(principal, str(m.id), m.level) for m in members if m.level >= GUEST)

    def find_accounts(self, email: str) -> list[Account]:
        """`GET /users?search=<email>`: with an admin token GitLab searches and shows every user's primary
        email; only an exact match of that email counts (a public email, or a match on the name, does not)."""
        if self._users_client is None:  # one client for all the look-ups of a pass
            self._users_client = self._client()
        gl = self._users_client
        try:
            found = [u.attributes for u in gl.users.list(search=email, iterator=True)]
        except GitlabAuthenticationError:
            raise AuthFailed(f"source {self.name!r}: GitLab refused the token") from None
        except REMOTE_ERRORS as exc:
            raise Unavailable(f"source {self.name!r}: user search failed: {self._clean(exc)}") from None
        return [Account(str(u["id"]), str(u.get("username") or "")) for u in found
                if str(u.get("email") or "").strip().lower() == email and u.get("state", "active") == "active"
                and u.get("id") is not None]

    def _in_configured_scope(self, project: Mapping[str, Any]) -> bool:
        cfg, path = self.config, str(project.get("path_with_namespace", ""))
        if project.get("archived") and not cfg.include_archived:
            return False
        if cfg.group:
            parent = path.rpartition("/")[0]
            return parent == cfg.group or (cfg.include_subgroups and path.startswith(f"{cfg.group}/"))
        return path in cfg.projects or str(project.get("id")) in cfg.projects

    # -- the permissions pass and refresh -------------------------------------------------------

    def _project_access_pass(self, gl: gitlab.Gitlab, project: dict[str, Any], doc_ids: list[str],
                             known: Mapping[str, str]) -> Iterator[AccessItem]:
        path = project["path_with_namespace"]
        try:
            access = project_access(project, self._members(gl, project), self.config.internal_principal, self.realm)
        except REMOTE_ERRORS as exc:
            yield SyncFailure(self.name, f"{path}/", f"reading members failed: {self._clean(exc)}")
            return
        prefix = f"{self.name}:{path}/"
        code = access.code if self.config.code else None
        for doc_id in (d for d in doc_ids if _in_scope(d, prefix, "code")):
            if code is None:
                yield Deletion(doc_id)  # repository disabled, emptied or no longer indexed
            elif known[doc_id] != code.digest():
                yield AccessChange(doc_id, code)
        for kind in TICKETS:
            mine = [d for d in doc_ids if _in_scope(d, prefix, kind)]
            if mine:
                yield from self._tickets_access_pass(gl, project, kind, access, mine, known)

    def _tickets_access_pass(self, gl: gitlab.Gitlab, project: dict[str, Any], kind: str, access: ProjectAccess,
                             doc_ids: list[str], known: Mapping[str, str]) -> Iterator[AccessItem]:
        path = project["path_with_namespace"]
        if not getattr(self.config, kind) or access.feature(kind) is None:
            yield from (Deletion(d) for d in doc_ids)
            return
        tickets: dict[int, set[str]] = {}
        for doc_id in doc_ids:
            ref = _ticket_ref(self.name, doc_id)
            if ref is None:
                yield Deletion(doc_id)  # not an item id any GitLab project has
            else:
                tickets.setdefault(ref[2], set()).add(doc_id)
        manager = self._manager(gl, project["id"], kind)
        try:
            items = {int(obj.attributes["iid"]): obj.attributes for obj in manager.list(iterator=True, per_page=100)}
        except REMOTE_ERRORS as exc:
            yield SyncFailure(self.name, f"{path}/-/{kind}/", f"listing failed: {self._clean(exc)}")
            return
        for iid, ids in sorted(tickets.items()):
            ticket = document_id(self.name, ticket_path(path, kind, iid))
            if iid not in items:
                yield from (Deletion(d) for d in sorted(ids))
                continue
            item_access = access.for_ticket(kind, items[iid]) or Access()
            if ticket in ids and known[ticket] != item_access.digest():
                yield AccessChange(ticket, item_access)
            notes = sorted(ids - {ticket})
            if notes:
                yield from self._notes_access_pass(manager, ticket, iid, notes, access.for_internal_note(item_access),
                                                   known)

    def _notes_access_pass(self, manager: Any, ticket: str, iid: int, note_ids: list[str], access: Access,
                           known: Mapping[str, str]) -> Iterator[AccessItem]:
        """Indexed internal notes of one ticket: gone ones deleted (that needs the ticket's notes listed),
        the others under the access internal notes of the ticket have now."""
        try:
            present = {document_id(self.name, note_path(ticket.split(":", 1)[1], n["id"]))
                       for n in internal_notes(self._notes(manager, iid))}
        except REMOTE_ERRORS as exc:
            present = set(note_ids)  # unknown: kept, but still under their current access
            yield SyncFailure(self.name, ticket.split(":", 1)[1], f"listing notes failed: {self._clean(exc)}")
        for note in note_ids:
            if note not in present:
                yield Deletion(note)
            elif known[note] != access.digest():
                yield AccessChange(note, access)

    def _refresh_project(self, gl: gitlab.Gitlab, project_path: str,
                         tickets: Mapping[tuple[str, int], set[str]]) -> Iterator[SyncItem]:
        named = sorted(set().union(*tickets.values()))
        try:
            project: dict[str, Any] | None = gl.projects.get(project_path).attributes
        except GitlabGetError as exc:
            if exc.response_code != 404:
                yield from (SyncFailure(self.name, d.split(":", 1)[1], self._clean(exc)) for d in named)
                return
            project = None
        except REMOTE_ERRORS as exc:
            yield from (SyncFailure(self.name, d.split(":", 1)[1], self._clean(exc)) for d in named)
            return
        if project is None or not self._in_configured_scope(project):
            yield from (Deletion(d) for d in named)  # deleted, renamed or moved out of the source
            return
        try:
            access = project_access(project, self._members(gl, project), self.config.internal_principal, self.realm)
        except REMOTE_ERRORS as exc:
            yield from (SyncFailure(self.name, d.split(":", 1)[1], f"reading members failed: {self._clean(exc)}")
                        for d in named)
            return
        for (kind, iid), ids in sorted(tickets.items()):
            if not getattr(self.config, kind) or access.feature(kind) is None:
                yield from (Deletion(d) for d in sorted(ids))
                continue
            manager = self._manager(gl, project["id"], kind)
            try:
                attrs = manager.get(iid).attributes
            except GitlabGetError as exc:
                if exc.response_code == 404:
                    yield from (Deletion(d) for d in sorted(ids))
                else:
                    yield SyncFailure(self.name, ticket_path(project_path, kind, iid), self._clean(exc))
                continue
            except REMOTE_ERRORS as exc:
                yield SyncFailure(self.name, ticket_path(project_path, kind, iid), self._clean(exc))
                continue
            once = SyncState(known=dict.fromkeys(ids, ""))  # every named id is read again
            yield from self._ticket(manager, project, kind, attrs, access, once)

    # -- code -----------------------------------------------------------------------------------

    def _code(self, project: dict[str, Any], access: Access, known: Mapping[str, str],
              state: SyncState, fetch: bool = True) -> Iterator[SyncItem]:
        """The project's repository through the git connector; ids and paths get the project's path."""
        pid, path = project["id"], project["path_with_namespace"]
        scope = state.open_scope(f"{pid}/code", path, access.digest())
        digest, prefix = access.digest(), f"{self.name}:{path}/"
        inner_known: dict[str, str] = {}
        for doc_id, version in known.items():
            if _in_scope(doc_id, prefix, "code"):
                blob, _, indexed_with = version.partition("|")
                # A file indexed under other access is re-read: same id, a version that never matches.
                inner_known[document_id(self.name, doc_id[len(prefix):])] = blob if indexed_with == digest else ""
        git = GitRepoConnector(self.name, self._clone_url(project), ref=self.config.ref or project.get("default_branch")
                               or None, access=access, workdir=self.workdir, max_file_bytes=self.max_file_bytes)
        git.web_base = f"{project['web_url']}/-/blob" if project.get("web_url") else ""
        try:
            if fetch:
                for item in git.sync(None, inner_known):
                    yield _prefixed(item, path, digest, self.name)
            state.seen |= {f"{prefix}{inner.split(':', 1)[1]}" for inner in git.list_ids()}
            scope.complete = True
        except ConnectorError as exc:
            state.scope_failed(f"{pid}/code")
            state.seen |= {d for d in known if _in_scope(d, prefix, "code")}
            yield SyncFailure(self.name, f"{path}/", self._clean(exc))

    def _clone_url(self, project: dict[str, Any]) -> str:
        """The HTTPS clone URL with the token as oauth2 password; built at sync time, never stored or logged."""
        url = project.get("http_url_to_repo") or f"{self.config.url}/{project['path_with_namespace']}.git"
        if not self._token:
            return url
        parts = urlsplit(url)
        host = f"{parts.hostname}:{parts.port}" if parts.port else str(parts.hostname)
        return urlunsplit((parts.scheme, f"oauth2:{quote(self._token, safe='')}@{host}", parts.path, "", ""))

    # -- issues and merge requests --------------------------------------------------------------

    def _manager(self, gl: gitlab.Gitlab, pid: int, kind: str) -> Any:
        project = gl.projects.get(pid, lazy=True)
        return project.issues if kind == "issues" else project.mergerequests

    def _list_tickets(self, gl: gitlab.Gitlab, project: dict[str, Any], kind: str, access: ProjectAccess,
                      state: SyncState, fetch: bool = True) -> Iterator[SyncItem]:
        """Items changed since the scope's cursor, oldest change first; the cursor follows each item."""
        pid, path = project["id"], project["path_with_namespace"]
        key = f"{pid}/{kind}"
        scope = state.open_scope(key, path, access.digest())
        since = state.since(key, self.overlap)
        params: dict[str, Any] = {"iterator": True, "order_by": "updated_at", "sort": "asc", "per_page": 100}
        if since is not None:
            params["updated_after"] = stamp(since)
        manager = self._manager(gl, pid, kind)
        try:
            for obj in manager.list(**params):
                yield from self._ticket(manager, project, kind, obj.attributes, access, state, fetch)
                state.advance(key, obj.attributes.get("updated_at"))
        except REMOTE_ERRORS as exc:
            state.scope_failed(key)
            yield SyncFailure(self.name, f"{path}/-/{kind}/", f"listing failed: {self._clean(exc)}")
            return
        scope.complete = since is None

    def _ticket(self, manager: Any, project: dict[str, Any], kind: str, attrs: dict[str, Any],
                access: ProjectAccess, state: SyncState, fetch: bool = True) -> list[SyncItem]:
        """The item's Document and one per internal note when it changed (reading its notes), Deletions for
        its internal notes that are gone, nothing when unchanged, or a failure."""
        project_path = project["path_with_namespace"]
        path = ticket_path(project_path, kind, attrs.get("iid"))
        doc_id = document_id(self.name, path)
        item_access = access.for_ticket(kind, attrs) or Access()
        note_access = access.for_internal_note(item_access)
        key = _ticket_key(item_access, note_access)
        notes_known = {d for d in state.known if d.startswith(doc_id + NOTE_SUFFIX)}
        if state.unchanged(doc_id, item_version(str(attrs.get("updated_at", "")), key)):
            state.seen |= notes_known
            return []
        try:
            if not fetch:  # a listing only: the ids of the note documents
                state.seen |= {document_id(self.name, note_path(path, n["id"]))
                               for n in internal_notes(self._notes(manager, attrs["iid"]))}
                return []
            every = self._notes(manager, attrs["iid"])
            items: list[SyncItem] = [ticket_document(self.name, project_path, kind, attrs, every, item_access,
                                                     self.config.max_document_chars, access_key=key)]
            items += [note_document(self.name, project_path, kind, attrs, note, note_access,
                                    self.config.max_document_chars) for note in internal_notes(every)]
        except Exception as exc:  # noqa: BLE001 - one bad item never stops the sync; it is retried
            state.failed(doc_id, {"project": project["id"], "kind": kind, "iid": attrs.get("iid")})
            state.seen |= notes_known
            log.warning("sync %s: %s failed: %s", self.name, path, type(exc).__name__)
            return [SyncFailure(self.name, path, self._clean(exc))]
        state.succeeded(doc_id)
        current = {item.id for item in items if isinstance(item, Document)}
        state.seen |= current
        gone = sorted(notes_known - current)
        self._gone |= set(gone)
        return [*items, *(Deletion(note) for note in gone)]

    @staticmethod
    def _notes(manager: Any, iid: Any) -> list[dict[str, Any]]:
        return [n.attributes for n in manager.get(iid, lazy=True).notes.list(iterator=True, sort="asc",
                                                                             order_by="created_at")]

    def _retries(self, gl: gitlab.Gitlab, state: SyncState) -> Iterator[SyncItem]:
        """Items that failed in an earlier sync and were not met again in this one."""
        for doc_id, what in list(state.retry.items()):
            if doc_id in state.handled:
                continue
            project = what.get("project")
            entry = self._projects.get(project) if project is not None else None
            if project in self._unavailable:
                continue  # kept for the next sync
            if entry is None or what.get("kind") not in TICKETS:
                state.forget(doc_id)  # its project left the scope; deletion handles the document
                continue
            project, access = entry
            manager = self._manager(gl, project["id"], what["kind"])
            try:
                attrs = manager.get(what["iid"]).attributes
            except GitlabGetError as exc:
                if exc.response_code == 404:
                    state.forget(doc_id)
                    continue
                yield SyncFailure(self.name, doc_id.split(":", 1)[1], self._clean(exc))
                continue
            except REMOTE_ERRORS as exc:
                yield SyncFailure(self.name, doc_id.split(":", 1)[1], self._clean(exc))
                continue
            yield from self._ticket(manager, project, what["kind"], attrs, access, state)

    # -- reconciliation and deletions -----------------------------------------------------------

    def _reconcile(self, gl: gitlab.Gitlab, state: SyncState, fetch: bool = True) -> Iterator[SyncItem]:
        """List every item of scopes not listed completely yet: stale or missed items are read,
        and the complete listing lets deletions be found."""
        ok = not state.failed_scopes
        for pid, (project, access) in self._projects.items():
            for kind in TICKETS:
                scope = state.scopes.get(f"{pid}/{kind}")
                if scope is None or scope.complete or f"{pid}/{kind}" in state.failed_scopes:
                    continue
                manager = self._manager(gl, pid, kind)
                try:
                    for obj in manager.list(iterator=True, order_by="updated_at", sort="asc", per_page=100):
                        yield from self._ticket(manager, project, kind, obj.attributes, access, state, fetch)
                    scope.complete = True
                except REMOTE_ERRORS as exc:
                    ok = False
                    state.scope_failed(f"{pid}/{kind}")
                    yield SyncFailure(self.name, f"{project['path_with_namespace']}/-/{kind}/",
                                      f"listing failed: {self._clean(exc)}")
        if ok:
            state.reconciled()

    def _deletions(self, known: Mapping[str, str], state: SyncState) -> Iterator[SyncItem]:
        """Known items of completely listed scopes that were not met, and of scopes that vanished."""
        doomed: set[str] = set()
        for key, scope in state.scopes.items():
            kind = key.rsplit("/", 1)[1]
            if kind != "code" and scope.complete:  # the git connector yields its own deletions
                doomed |= {d for d in known if _in_scope(d, f"{self.name}:{scope.ident}/", kind)}
        for key in state.old_scope_keys():
            current = state.scopes.get(key)
            if key in state.failed_scopes or (current is not None and current.ident == state.old_ident(key)):
                continue
            doomed |= {d for d in known if _in_scope(d, f"{self.name}:{state.old_ident(key)}/", key.rsplit("/", 1)[1])}
        for doc_id in sorted(doomed - state.seen - self._gone):
            state.forget(doc_id)
            yield Deletion(doc_id)

    def _listing_pass(self, state: SyncState) -> Iterator[SyncItem]:
        """Lists every id without reading content (list_ids without a finished sync)."""
        gl = self._client()
        self._projects, self._unavailable, self._gone = {}, set(), set()
        for project in self._list_projects(gl):
            yield from self._project(gl, project, {}, state, fetch=False)
        yield from self._reconcile(gl, state, fetch=False)
        state.finished = True

    def _clean(self, error: object) -> str:
        """An error message fit for logs and the catalog: no token, no credentials in URLs, bounded."""
        text = f"{type(error).__name__}: {error}" if isinstance(error, Exception) else str(error)
        if self._token:
            text = text.replace(self._token, "***").replace(quote(self._token, safe=""), "***")
        return redact(" ".join(text.split()))[:500]


def _ticket_key(item: Access, notes: Access) -> str:
    """What a ticket's version records of access: its own and its internal notes' (a change re-reads it)."""
    return hashlib.sha256(f"{item.digest()}/{notes.digest()}".encode()).hexdigest()[:16]


def _owner(rel: str, projects: Mapping[str, Any]) -> str | None:
    """The project path a document path belongs to (the longest listed one that prefixes it)."""
    best = None
    for path in projects:
        if rel.startswith(f"{path}/") and (best is None or len(path) > len(best)):
            best = path
    return best


def _ticket_ref(source: str, doc_id: str) -> tuple[str, str, int] | None:
    """(project path, kind, iid) of an issue, merge request or internal note id; None for anything else."""
    if not doc_id.startswith(f"{source}:"):
        return None
    rel = doc_id.split(":", 1)[1].split(NOTE_SUFFIX, 1)[0]
    for kind in TICKETS:
        project_path, sep, iid = rel.rpartition(f"/-/{kind}/")
        if sep and project_path and iid.isdigit():
            return project_path, kind, int(iid)
    return None


def _in_scope(doc_id: str, prefix: str, kind: str) -> bool:
    """Whether a document id belongs to a project's code, issues or merge requests (by its path)."""
    if not doc_id.startswith(prefix):
        return False
    rest = doc_id[len(prefix):]
    if kind == "code":
        return not rest.startswith(("-/issues/", "-/merge_requests/"))
    return rest.startswith(f"-/{kind}/")


def _prefixed(item: SyncItem, project_path: str, digest: str, source: str) -> SyncItem:
    """A git connector item moved under the project's path; a document's version records its access."""
    if isinstance(item, Document):
        path = f"{project_path}/{item.path}"
        return replace(item, id=document_id(source, path), path=path, title=path,
                       version=item_version(item.version, digest), metadata={**item.metadata, "project": project_path})
    if isinstance(item, Deletion):
        return Deletion(document_id(source, f"{project_path}/{item.doc_id.split(':', 1)[1]}"))
    if isinstance(item, Skipped):
        return replace(item, path=f"{project_path}/{item.path}")
    return replace(item, item=f"{project_path}/{item.item}")
