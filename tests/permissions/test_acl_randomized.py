"""Randomized permissions test across every route and MCP tool.

Five fake servers that speak the products' REST APIs and keep their rules — GitLab, Jira Cloud and Data
Center, Confluence Cloud and Data Center — get seeded random content: projects and spaces, users and groups,
memberships and roles, security levels, restricted comments, internal notes, confidential issues, inherited
page restrictions, restrictions naming users without space permission. Every document carries unique marker
words. All five are synced into one real Cairn server over HTTP; then many principals (every person with each
identity form, partial group sets, no groups, an outsider, an admin) × many queries × every route and MCP tool
that returns indexed content are checked against each fake's own statement of its product's rule: every
returned document, and every marker in any answer, must be readable by the caller. Then random tightenings are
made at the fakes, each source's permissions pass runs through `POST /v1/sources/{name}/permissions`, and the
whole check runs again.

Identity: one org directory (persons and groups) feeds every fake. Each person is a Cairn user (OIDC subject
`sub-<name>`, maybe a verified email, all or some of their groups as IdP groups) calling with a personal
token, resolved when each request arrives (indexer/identity/resolver.py); the permissions passes link
them by email in each realm (GitLab, Jira Data Center, Atlassian Cloud) and sync every source's group
memberships, and random admin links cover the rest (Confluence Data Center shows no emails, some Cloud
profiles hide theirs, some emails are unverified). The product's rule for that person, with all their real
groups, is the upper bound of what the token may see."""
from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import json
import random
import re
import string
import sys
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx
import httpx2
import pytest
from sqlalchemy import insert, update

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "connectors"))  # the fake servers and harness
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "api"))  # serve(), git_repo()

from api_harness import git_repo, serve
from fake_confluence import FakeConfluence, FakePage
from fake_gitlab import FakeGitLab, user_id
from fake_jira import FakeIssue, FakeJira, person, user_key
from harness import register, sync
from mcp.client.session import ClientSession
from mcp.client.streamable_http import streamable_http_client

from api.app import create_app
from api.auth import SESSION_COOKIE
from api.tokens import TokenStore
from indexer.catalog.schema import api_tokens, users
from indexer.identity.store import IdentityStore
from indexer.services import IndexServices
from indexer.settings import Settings

pytestmark = pytest.mark.slow

PERSONS = ["alice", "bob", "carol", "dave", "erin", "frank", "gina", "hank", "ivy", "lena"]  # lena: Jira's lead
OUTSIDER = "outsider"  # no account anywhere: reads only what anonymous users may
GROUPS = ["eng", "ops", "sec", "leads"]
ORG = "org-all"  # every person: an IdP group, GitLab's internal_principal (`idp:group:org-all`)
REALMS = {"gl": "gitlab", "jira-dc": "jira", "jira-cloud": "atlassian", "wiki-dc": "confluence",
          "wiki-cloud": "atlassian"}
VOCAB = ["gateway", "ledger", "checkout", "rollout", "invoice", "latency", "refund", "canary", "pager", "vault",
         "billing", "timeout", "cache", "quota", "replica", "backup", "deploy", "incident", "budget", "vendor"]
SHARED = "handbook"  # in every document
MARKER = re.compile(r"\bqz[a-z]{7}\b")
MCP_TOOLS = {"search", "grep", "read_file", "find_symbol", "find_references", "list_sources", "history",
             "related", "locate"}  # what api/mcp_server.py exposes
ROLE_DEV, ROLE_ADMIN = "10002", "10003"  # the fake Jira's project roles (Developers, Administrators)
GUEST, PLANNER, REPORTER, DEVELOPER = 10, 15, 20, 30


# -- the world: a directory, five fakes, markers and who owns them ------------------------------------------------


@dataclass
class Owner:
    """What a marker belongs to: a GitLab repository/ticket/note, a Jira issue/comment, a Confluence page."""

    source: str
    obj: Any  # FakeProject, FakeIssue or FakePage (identity survives moves and renames)
    kind: str = ""  # GitLab: repository / issues / merge_requests
    iid: int | None = None
    sub: str | int | None = None  # GitLab note id, Jira comment id


@dataclass
class Token:
    label: str
    person: str  # a name in PERSONS, or OUTSIDER: a personal token of `sub-<person>`
    admin: bool = False  # a service token of an admin instead
    full: bool = True  # all the person's groups as IdP groups, linked in every realm (for the recall checks)
    secret: str = ""


@dataclass
class World:
    rng: random.Random
    root: Path
    members: dict[str, set[str]] = field(default_factory=dict)  # group → persons (the org directory)
    gitlab: FakeGitLab = field(default_factory=FakeGitLab)
    jira: dict[str, FakeJira] = field(default_factory=dict)  # source name → fake
    wiki: dict[str, FakeConfluence] = field(default_factory=dict)
    owners: dict[str, Owner] = field(default_factory=dict)  # marker → owner
    linked: dict[str, set[str]] = field(default_factory=dict)  # person → realms they are linked in (after passes)
    idp_groups: dict[str, list[str]] = field(default_factory=dict)  # person → the groups their IdP gives

    def marker(self, owner: Owner) -> str:
        while True:
            word = "qz" + "".join(self.rng.choice(string.ascii_lowercase) for _ in range(7))
            if word not in self.owners:
                self.owners[word] = owner
                return word

    def words(self, n: int = 4) -> str:
        return " ".join(self.rng.sample(VOCAB, n))

    def groups_of(self, who: str) -> set[str]:
        return {g for g, people in self.members.items() if who in people}

    def servers(self) -> list[Any]:
        return [self.gitlab, *self.jira.values(), *self.wiki.values()]

    def push_directory(self) -> None:
        """The org's groups, as each product names their members."""
        for fake in self.jira.values():
            fake.groups = {g: sorted(people) for g, people in self.members.items()}
        for fake in self.wiki.values():
            fake.groups = {g: sorted(wiki_user(fake, p) for p in people) for g, people in self.members.items()}


def wiki_user(fake: FakeConfluence, who: str) -> str:
    return f"acc-{who}" if fake.cloud else who


def jira_user(fake: FakeJira, who: str) -> str:
    return f"acc-{who}" if fake.cloud else who


def build_world(rng: random.Random, root: Path) -> World:
    world = World(rng, root)
    world.members = {g: set(rng.sample(PERSONS, rng.randint(2, 5))) for g in GROUPS}
    world.members[ORG] = set(PERSONS)
    seed_gitlab(world)
    for name, cloud in (("jira-cloud", True), ("jira-dc", False)):
        world.jira[name] = FakeJira(cloud=cloud)
    for name, cloud in (("wiki-cloud", True), ("wiki-dc", False)):
        world.wiki[name] = FakeConfluence(cloud=cloud)
    world.push_directory()
    for name, fake in world.jira.items():
        seed_jira(world, name, fake)
    for name, fake in world.wiki.items():
        seed_wiki(world, name, fake)
    return world


def seed_gitlab(world: World) -> None:
    rng, fake = world.rng, world.gitlab
    levels = [0, GUEST, PLANNER, REPORTER, DEVELOPER, 40]
    fake.add_group("corp", members={p: rng.choice(levels[1:]) for p in rng.sample(PERSONS, 2)})
    fake.add_group("corp/team", members={p: rng.choice(levels[1:]) for p in rng.sample(PERSONS, 3)})
    fake.add_group("corp/sre", members={p: rng.choice(levels[1:]) for p in rng.sample(PERSONS, 3)})
    for n, visibility in enumerate(["public", "internal", "private", rng.choice(["internal", "private"])]):
        name = f"proj{n}"
        files: dict[str, str] = {}
        project = fake.add_project(f"corp/team/{name}" if n % 2 else f"corp/{name}", visibility,
                                   members={p: rng.choice(levels[1:]) for p in rng.sample(PERSONS, 3)},
                                   shares=rng.choice([{}, {"corp/sre": rng.choice(levels[1:])}]))
        project.levels = {f: rng.choice(["enabled", "enabled", "private"]) for f in ("issues", "merge_requests",
                                                                                      "repository")}
        if n != 3:  # one project without a repository
            code = world.marker(Owner("gl", project, "repository"))
            files[f"src/{name}.py"] = (f'"""{world.words()} {SHARED} {code}."""\n\n\ndef {code}(cart):\n'
                                       f'    """{world.words()} {code}"""\n    return cart\n')
            project.repo = git_repo(world.root / "git" / name, files)
        for _ in range(4):
            kind = rng.choice(["issues", "issues", "merge_requests"])
            iid = max(project.items[kind], default=0) + 1
            mark = world.marker(Owner("gl", project, kind, iid))
            fake.add_item(project, kind, f"{world.words(2)} {mark}", f"{world.words()} {SHARED} {mark}",
                          confidential=kind == "issues" and rng.random() < 0.4, author=rng.choice(PERSONS),
                          assignees=rng.sample(PERSONS, rng.randint(0, 2)))
            for note_id in (1, 2):
                note = world.marker(Owner("gl", project, kind, iid, note_id))
                fake.add_note(project, kind, iid, f"{world.words()} {SHARED} {note}", author=rng.choice(PERSONS),
                              internal=rng.random() < 0.5)


def seed_jira(world: World, source: str, fake: FakeJira) -> None:
    rng = world.rng

    def holder() -> dict[str, Any]:
        kind = rng.choice(["group", "group", "user", "projectRole", "reporter", "assignee", "projectLead"])
        if kind == "group":
            return {"type": "group", "parameter": rng.choice(GROUPS)}
        if kind == "user":
            return {"type": "user", "parameter": jira_user(fake, rng.choice(PERSONS))}
        if kind == "projectRole":
            return {"type": "projectRole", "parameter": rng.choice([ROLE_DEV, ROLE_ADMIN])}
        return {"type": kind}

    def actor(who: str | None = None, group: str | None = None) -> dict[str, Any]:
        if group:
            return {"type": "atlassian-group-role-actor", "name": group, "displayName": group,
                    "actorGroup": {"name": group, "displayName": group}}
        base = {"type": "atlassian-user-role-actor", "name": who, "displayName": str(who).title()}
        return {**base, "actorUser": {"accountId": jira_user(fake, str(who))}} if fake.cloud else base

    projects = ["APP", "OPS", "SEC"]
    for key in projects:
        for _ in range(rng.randint(1, 3)):
            fake.grant(key, holder())
        if key == "APP" and rng.random() < 0.5:
            fake.grant(key, {"type": "anyone"})
        for rid in (ROLE_DEV, ROLE_ADMIN):
            fake.roles[(key, rid)] = ([actor(p) for p in rng.sample(PERSONS, 2)]
                                      + ([actor(group=rng.choice(GROUPS))] if rng.random() < 0.5 else []))
        for lid, name in (("1", "Staff"), ("2", "Leads")):
            fake.security_level(key, level_id(key, lid), name, [holder() for _ in range(rng.randint(1, 2))])
    for key in projects:
        for n in range(1, 5):
            issue_key = f"{key}-{n}"
            level = rng.choice([None, None, "1", "2"])
            issue = fake.add_issue(issue_key, "", "", reporter=person(rng.choice(PERSONS), fake.cloud),
                                   assignee=person(rng.choice(PERSONS), fake.cloud) if rng.random() < 0.6 else None,
                                   security={"id": level_id(key, level), "name": "Staff" if level == "1" else "Leads"}
                                   if level else None)
            mark = world.marker(Owner(source, issue))
            issue.summary = f"{world.words(2)} {mark}"
            issue.description = f"{world.words()} {SHARED} {mark}"
            for _ in range(rng.randint(1, 3)):
                visibility = rng.choice([None, None, {"type": "role", "value": "Developers"},
                                         {"type": "role", "value": "Administrators"},
                                         {"type": "group", "value": rng.choice(GROUPS)}])
                cid = fake.comment(issue_key, "", author=rng.choice(PERSONS), visibility=visibility)
                comment = next(c for c in issue.comments if c["id"] == cid)
                comment["body"] = f"{world.words()} {SHARED} {world.marker(Owner(source, issue, sub=cid))}"
    keys = list(fake.issues)
    for _ in range(4):
        a, b = rng.sample(keys, 2)
        fake.link(a, b)


def level_id(project: str, level: str) -> str:
    """Numeric ids, as Jira's: 10101 is APP's Staff, 10112 OPS's Leads."""
    return str(10100 + 10 * ["APP", "OPS", "SEC"].index(project) + int(level))


def seed_wiki(world: World, source: str, fake: FakeConfluence) -> None:
    rng = world.rng

    def some_users(n: int) -> list[str]:
        return [wiki_user(fake, p) for p in rng.sample(PERSONS, n)]

    fake.add_space("ENG", users=some_users(2), groups=rng.sample(GROUPS, 2))
    fake.add_space("OPS", users=some_users(3), groups=rng.sample(GROUPS, 1))
    fake.add_space("PUB", anonymous=True)
    for space in ("ENG", "OPS", "PUB"):
        pages: list[FakePage] = []
        for n in range(5):
            parent = rng.choice([None, *pages]) if pages else None
            restricted = rng.random() < 0.35
            page = fake.add_page(space, f"{space} page {n}", "", parent=parent.id if parent else None,
                                 type="blogpost" if n == 4 and parent is None else "page",
                                 users=some_users(rng.randint(1, 3)) if restricted else [],
                                 groups=rng.sample(GROUPS, rng.randint(0, 1)) if restricted else [])
            mark = world.marker(Owner(source, page))
            page.title = f"{space} {mark}"
            page.body = f"<p>{world.words()} {SHARED} {mark}</p>"
            if rng.random() < 0.5:
                fake.comment(page.id, rng.choice(PERSONS),
                             f"<p>{world.words()} {world.marker(Owner(source, page))}</p>")
            pages.append(page)


# -- the products' rules, from the user's side (the oracle) -------------------------------------------------------


def gitlab_allows(world: World, owner: Owner, who: str | None) -> bool:
    """`who` None: an admin, who may read whatever exists."""
    fake, project = world.gitlab, owner.obj
    if project.id not in fake.projects:
        return False
    if who is None:
        if owner.kind == "repository":
            return project.repo is not None
        item = project.items[owner.kind].get(owner.iid or 0)
        return item is not None and (owner.sub is None or any(n["id"] == owner.sub
                                                                for n in project.notes[(owner.kind, owner.iid)]))
    return fake.can_read(who, who != OUTSIDER, project, owner.kind, owner.iid,
                         int(owner.sub) if owner.sub is not None else None)


def jira_allows(fake: FakeJira, issue: FakeIssue | None, cid: str | None, who: str | None) -> bool:
    """Jira's rule: Browse Projects in the issue's project, AND membership of its security level, AND (for a
    comment with a visibility) the role or group it names. `who` None: an admin."""
    if issue is None or fake.issues.get(issue.key) is not issue:
        return False  # deleted
    comment = None
    if cid is not None:
        comment = next((c for c in issue.comments if c["id"] == cid), None)
        if comment is None:
            return False
    if who is None:
        return True
    uid, groups = jira_user(fake, who), {g for g, people in fake.groups.items() if who in people}
    project = issue.key.rsplit("-", 1)[0]

    def ident(user: Any) -> str:
        return (user or {}).get("accountId") or (user or {}).get("name") or ""

    def in_role(rid: str) -> bool:
        for actor in fake.roles.get((project, rid), []):
            if actor["type"] == "atlassian-group-role-actor":
                if actor["name"] in groups:
                    return True
            elif ident(actor.get("actorUser")) == uid or (not fake.cloud and actor.get("name") == uid):
                return True
        return False

    def holds(holder: dict[str, Any]) -> bool:
        kind, param = holder["type"], holder.get("parameter")
        return {"group": lambda: param in groups, "user": lambda: param == uid,
                "projectRole": lambda: in_role(str(param)), "anyone": lambda: True,
                "projectLead": lambda: who == "lena",
                "reporter": lambda: ident(issue.fields.get("reporter")) == uid,
                "assignee": lambda: ident(issue.fields.get("assignee")) == uid}.get(kind, lambda: False)()

    if not any(g["permission"] == "BROWSE_PROJECTS" and holds(g["holder"]) for g in fake.grants.get(project, [])):
        return False
    level = issue.fields.get("security")
    if level:
        scheme = fake.security.get(project) or {"levels": {}}
        members = (scheme["levels"].get(level["id"]) or {}).get("members", [])
        if not any(holds(m) for m in members):
            return False
    visibility = (comment or {}).get("visibility")
    if visibility:
        if visibility["type"] == "group":
            return visibility["value"] in groups
        rid = next((r for r, name in fake.role_names.items() if name == visibility["value"]), None)
        return rid is not None and in_role(rid)
    return True


def wiki_allows(fake: FakeConfluence, page: FakePage | None, who: str | None) -> bool:
    if page is None or fake.pages.get(page.id) is not page:
        return False
    if who is None:
        return page.status == "current"
    return fake.can_read(wiki_user(fake, who), page)


def owner_allows(world: World, owner: Owner, who: str | None) -> bool:
    if owner.source == "gl":
        return gitlab_allows(world, owner, who)
    if owner.source in world.jira:
        return jira_allows(world.jira[owner.source], owner.obj, owner.sub, who)
    return wiki_allows(world.wiki[owner.source], owner.obj, who)


def doc_allows(world: World, doc_id: str, who: str | None) -> bool:
    """Whether the product lets `who` (None: an admin) read what document `doc_id` holds."""
    source, _, rel = doc_id.partition(":")
    if source == "gl":
        base, _, note = rel.partition("#note-")
        for project in world.gitlab.projects.values():
            if base.startswith(project.path + "/"):
                rest = base[len(project.path) + 1:]
                for kind in ("issues", "merge_requests"):
                    if rest.startswith(f"-/{kind}/"):
                        return gitlab_allows(world, Owner("gl", project, kind, int(rest.split("/")[-1]),
                                                          int(note) if note else None), who)
                return gitlab_allows(world, Owner("gl", project, "repository"), who)
        return False
    if source in world.jira:
        fake = world.jira[source]
        key, _, cid = rel.partition("#comment-")
        return jira_allows(fake, fake.resolve(key), cid or None, who)
    if source in world.wiki:
        fake = world.wiki[source]
        return wiki_allows(fake, fake.pages.get(rel.rsplit("/", 1)[-1]), who)
    raise AssertionError(f"a document of an unknown source: {doc_id}")


# -- tightenings at the fakes ---------------------------------------------------------------------------------


def tighten(world: World) -> list[str]:
    """Random tightenings of each product's state, as an admin of each would make them; what was done."""
    rng, done = world.rng, []
    # The org directory: someone leaves a group (every product and every new token sees it).
    group = rng.choice(GROUPS)
    if world.members[group]:
        gone = rng.choice(sorted(world.members[group]))
        world.members[group].discard(gone)
        done.append(f"{gone} left group {group}")
    world.push_directory()
    # GitLab: a member removed, a project made private, a feature made members-only, issues made confidential,
    # an issue deleted, an internal note deleted.
    gl = world.gitlab
    project = rng.choice(list(gl.projects.values()))
    if project.members:
        gone = rng.choice(sorted(project.members))
        project.members.pop(gone)
        done.append(f"gitlab: {gone} removed from {project.path}")
    visible = [p for p in gl.projects.values() if p.visibility != "private"]
    if visible:
        project = rng.choice(visible)
        project.visibility = "private"
        done.append(f"gitlab: {project.path} private")
    project = rng.choice(list(gl.projects.values()))
    feature = rng.choice(["issues", "merge_requests", "repository"])
    project.levels[feature] = "private"
    done.append(f"gitlab: {project.path} {feature} private")
    for p in gl.projects.values():
        for iid in list(p.items["issues"]):
            if rng.random() < 0.3:
                gl.update_item(p, "issues", iid, confidential=True)
                done.append(f"gitlab: {p.path} issue {iid} confidential")
    issues = [(p, iid) for p in gl.projects.values() for iid in p.items["issues"]]
    if issues:
        p, iid = rng.choice(issues)
        gl.delete_item(p, "issues", iid)
        done.append(f"gitlab: {p.path} issue {iid} deleted")
    # Jira: a grant removed, a role actor removed, a security level set, an issue deleted, one moved to another
    # project, a public comment restricted, a restricted comment deleted.
    for fake in world.jira.values():
        key = rng.choice(sorted(fake.grants))
        if len(fake.grants[key]) > 1:
            fake.grants[key].pop(rng.randrange(len(fake.grants[key])))
            done.append(f"{fake.server.url} jira: a grant of {key} removed")
        role = rng.choice(sorted(fake.roles))
        if fake.roles[role]:
            fake.roles[role].pop(0)
            done.append(f"jira: an actor of role {role} removed")
        keys = sorted(fake.issues)
        victim = rng.choice(keys)
        project = victim.rsplit("-", 1)[0]
        fake.update(victim, security={"id": level_id(project, "1"), "name": "Staff"})
        done.append(f"jira: {victim} under Staff")
        fake.delete(rng.choice([k for k in keys if k != victim]))
        moving = rng.choice(sorted(fake.issues))
        target = rng.choice([p for p in ("APP", "OPS", "SEC") if not moving.startswith(p + "-")])
        new_key = f"{target}-{10 + len(fake.moved)}"
        fake.move(moving, new_key)
        done.append(f"jira: {moving} moved to {new_key}")
        public = [(i.key, c["id"]) for i in fake.issues.values() for c in i.comments if not c.get("visibility")]
        if public:
            key, cid = rng.choice(public)
            fake.edit_comment(key, cid, visibility={"type": "role", "value": "Administrators"})
            done.append(f"jira: comment {cid} of {key} restricted to Administrators")
        # (not the one just restricted: its text is in its issue's document, and a deleted comment's text leaves
        # that document with the next sync, as any other edit does)
        restricted = [(i.key, c["id"]) for i in fake.issues.values() for c in i.comments
                      if c.get("visibility") and (not public or (i.key, c["id"]) != (key, cid))]
        if restricted:
            key, cid = rng.choice(restricted)
            fake.edit_comment(key, cid, delete=True)
            done.append(f"jira: restricted comment {cid} of {key} deleted")
    # Confluence: a restriction added, a page moved under a restricted parent, a page trashed, a user's space
    # permission removed (a restriction may still name them), a page moved to another space.
    for fake in world.wiki.values():
        pages = [p for p in fake.pages.values() if p.status == "current"]
        page = rng.choice(pages)
        page.users = [wiki_user(fake, rng.choice(PERSONS))]
        done.append(f"confluence: {page.id} restricted to {page.users}")
        restricted = [p for p in pages if p.users or p.groups]
        mover = rng.choice(pages)
        parent = rng.choice([p for p in restricted if p.space == mover.space and p is not mover
                             and mover not in fake.ancestors(p)] or [None])
        if parent is not None:
            mover.parent = parent.id  # a move changes neither version nor lastmodified
            done.append(f"confluence: {mover.id} moved under {parent.id}")
        trashed = rng.choice(pages)
        trashed.status = "trashed"
        for child in pages:
            if trashed in fake.ancestors(child):
                child.status = "trashed"  # Confluence trashes the children with their parent
        done.append(f"confluence: {trashed.id} trashed")
        space = fake.spaces[rng.choice(["ENG", "OPS"])]
        if space["users"]:
            done.append(f"confluence: {space['users'].pop(0)} loses a space permission")
        movable = [p for p in pages if p.status == "current" and p.parent is None
                   and not any(p in fake.ancestors(c) for c in pages)]
        if movable:
            page = rng.choice(movable)
            page.space = "ENG" if page.space != "ENG" else "OPS"
            done.append(f"confluence: {page.id} moved to space {page.space}")
    return done


# -- the server, tokens and clients --------------------------------------------------------------------------


def sources(world: World) -> list[dict[str, Any]]:
    fast = {"retry_backoff_seconds": 0.02, "timeout_seconds": 5.0}
    out: list[dict[str, Any]] = [{"name": "gl", "kind": "gitlab", "url": world.gitlab.server.url, "group": "corp",
                                  "token_env": "FAKE_GITLAB_TOKEN", "internal_principal": f"idp:group:{ORG}", **fast}]
    for name, fake in world.jira.items():
        flavour = {"deployment": "cloud", "username": "bot@example.com"} if fake.cloud else {"deployment":
                                                                                               "datacenter"}
        out.append({"name": name, "kind": "jira", "url": fake.server.url, "projects": ["APP", "OPS", "SEC"],
                    "token_env": "FAKE_JIRA_TOKEN", **flavour, **fast})
    for name, fake in world.wiki.items():
        flavour = {"deployment": "cloud", "username": "bot@example.com"} if fake.cloud else {"deployment":
                                                                                               "datacenter"}
        out.append({"name": name, "kind": "confluence", "url": fake.url, "spaces": ["ENG", "OPS", "PUB"],
                    "token_env": "FAKE_CONFLUENCE_TOKEN", **flavour, **fast})
    return out


def enrol(world: World, identities: IdentityStore) -> None:
    """Every person a Cairn user: most with a verified email (linked by the passes where the product shows
    it), some unverified; a few Cloud profiles hide their email; admins link the rest at random, and link
    Confluence Data Center (no emails there) for most. Some persons end up linked everywhere, some partly."""
    rng = world.rng
    jira_cloud = world.jira["jira-cloud"]
    now = dt.datetime.now(dt.UTC)
    accounts = {"gitlab": lambda p: str(user_id(p)), "jira": user_key, "atlassian": lambda p: f"acc-{p}",
                "confluence": lambda p: f"key-{p}"}
    for who in [*PERSONS, OUTSIDER]:
        verified = who != OUTSIDER and rng.random() < 0.8
        groups = sorted(world.groups_of(who))
        if groups and rng.random() < 0.3:  # the IdP gives part of them
            groups = sorted(rng.sample(groups, rng.randint(0, len(groups) - 1)))
        world.idp_groups[who] = groups
        with identities.engine.begin() as conn:
            conn.execute(insert(users).values(subject=f"sub-{who}", username=who, email=f"{who}@example.com",
                                              email_verified=verified, created_at=now, last_login_at=now,
                                              groups=groups))
        if who == OUTSIDER:
            continue
        if rng.random() < 0.2:
            jira_cloud.hidden_emails.add(who)
        everywhere = rng.random() < 0.6
        for realm, account in accounts.items():
            by_email = (verified and realm in ("gitlab", "jira")) or (
                realm == "atlassian" and verified and who not in jira_cloud.hidden_emails)
            if not by_email and (everywhere or rng.random() < 0.4):
                identities.link(f"sub-{who}", realm, account(who), who, method="admin")


def mint(world: World, store: TokenStore) -> list[Token]:
    """A personal token for every person and the outsider (its row names its owner, as the Tokens page makes
    them), and an admin's service token. `full`: all their groups, linked in every realm."""
    tokens = [Token(who, who, full=world.linked.get(who, set()) >= set(REALMS.values())
                    and set(world.idp_groups[who]) >= world.groups_of(who)) for who in PERSONS]
    tokens.append(Token("outsider", OUTSIDER, full=False))
    for tok in tokens:
        tok.secret, info = store.create(f"sub-{tok.person}", [], name="randomized")
        with store.engine.begin() as conn:
            conn.execute(update(api_tokens).where(api_tokens.c.id == info.id).values(subject=f"sub-{tok.person}"))
    admin = Token("admin", "root", admin=True, full=False)
    admin.secret = store.create("root", [], admin=True)[0]
    return [*tokens, admin]


@contextlib.asynccontextmanager
async def mcp_session(url: str, secret: str) -> AsyncIterator[ClientSession]:
    async with (httpx2.AsyncClient(headers={"Authorization": f"Bearer {secret}"}, timeout=60) as http,
                streamable_http_client(url + "/mcp", http_client=http) as (read, write),
                ClientSession(read, write) as session):
        await session.initialize()
        yield session


def strip_tags(html: str) -> str:
    return re.sub(r"<[^>]+>", "", html)


class Checker:
    """Every route and MCP tool that returns indexed content, for every token; violations collected."""

    def __init__(self, world: World, url: str, services: Any) -> None:
        self.world, self.url, self.services = world, url, services
        self.violations: list[str] = []
        self.calls = 0
        self.found: dict[str, int] = {}  # source → readable markers a full token found by search
        self.missed: dict[str, int] = {}
        self.doc_reads = {"granted": 0, "allowed": 0}

    def who(self, tok: Token) -> str | None:
        return None if tok.admin else tok.person

    def markers(self, tok: Token, text: str, where: str) -> None:
        for word in set(MARKER.findall(text)):
            owner = self.world.owners.get(word)
            if owner is None:
                self.violations.append(f"{tok.label} {where}: unknown marker {word}")
            elif not owner_allows(self.world, owner, self.who(tok)):
                self.violations.append(f"{tok.label} {where}: marker {word} of {owner.source} "
                                       f"{getattr(owner.obj, 'key', '') or getattr(owner.obj, 'id', '')}"
                                       f"{'#' + str(owner.sub) if owner.sub is not None else ''}")

    def doc(self, tok: Token, doc_id: str, where: str) -> None:
        if not doc_allows(self.world, doc_id, self.who(tok)):
            self.violations.append(f"{tok.label} {where}: document {doc_id}")

    def queries(self, tok: Token) -> list[str]:
        rng = self.world.rng
        marks = rng.sample(sorted(self.world.owners), 3)
        return [marks[0], marks[1], SHARED, " ".join(rng.sample(VOCAB, 2)), f"{rng.choice(VOCAB)} {marks[2]}"]

    def check(self, tokens: list[Token], doc_ids: list[str]) -> None:
        for tok in tokens:
            self.check_token(tok, doc_ids)

    def check_token(self, tok: Token, doc_ids: list[str]) -> None:
        rng = self.world.rng
        queries = self.queries(tok)
        bearer = {"Authorization": f"Bearer {tok.secret}"}
        with (httpx.Client(base_url=self.url, headers=bearer, timeout=60) as api,
              httpx.Client(base_url=self.url, timeout=60) as web):
            signed_in = web.post("/signin", data={"token": tok.secret, "next": "/"}, headers={"Origin": self.url})
            assert signed_in.status_code == 303 and web.cookies.get(SESSION_COOKIE), signed_in.text[:300]
            for q in queries:
                resp = api.post("/v1/search", json={"query": q, "limit": 20})
                assert resp.status_code == 200, resp.text
                for hit in resp.json()["hits"]:
                    self.doc(tok, hit["document_id"], f"/v1/search {q!r}")
                self.markers(tok, resp.text, f"/v1/search {q!r}")
                resp = api.post("/v1/context", json={"fullInput": q, "query": q})
                assert resp.status_code == 200, resp.text
                self.markers(tok, resp.text, f"/v1/context {q!r}")
                for item in resp.json():
                    self.doc(tok, context_doc(item["description"]), f"/v1/context {q!r}")
                resp = web.post("/ui/search", json={"query": q, "limit": 20}, headers={"X-Cairn-UI": "1"})
                assert resp.status_code == 200, resp.text
                for hit in resp.json()["hits"]:
                    self.doc(tok, hit["document_id"], f"/ui/search {q!r}")
                self.markers(tok, strip_tags(resp.text), f"/ui/search {q!r}")
                self.calls += 3
            self.recall(tok, api)
            page = web.get("/")
            assert page.status_code == 200
            self.markers(tok, strip_tags(page.text), "web /")
            for doc_id in doc_ids:  # every document, readable or not
                resp = api.get(f"/v1/documents/{quote(doc_id, safe='')}")
                assert resp.status_code in (200, 404), (doc_id, resp.status_code, resp.text)
                allowed = doc_allows(self.world, doc_id, self.who(tok))
                self.doc_reads["allowed"] += allowed
                if resp.status_code == 200:
                    self.doc_reads["granted"] += 1
                    self.doc(tok, doc_id, "GET /v1/documents")
                    self.markers(tok, resp.text, f"GET /v1/documents/{doc_id}")
                self.calls += 1
            for doc_id in rng.sample(doc_ids, min(8, len(doc_ids))):
                resp = web.get(f"/documents/{quote(doc_id, safe='/')}", params={"q": SHARED})
                assert resp.status_code in (200, 404), (doc_id, resp.status_code)
                if resp.status_code == 200:
                    self.doc(tok, doc_id, "web /documents")
                self.markers(tok, strip_tags(resp.text), f"web /documents/{doc_id}")
                self.calls += 1
        asyncio.run(self.check_mcp(tok, queries, rng.sample(doc_ids, min(8, len(doc_ids)))))

    def recall(self, tok: Token, api: httpx.Client) -> None:
        """The reverse, where cheap: a full token searching a marker it may read finds the marker's document."""
        if tok.admin or not tok.full or tok.person == OUTSIDER:
            return
        mine = [(m, o) for m, o in sorted(self.world.owners.items())
                if owner_allows(self.world, o, tok.person) and REALMS[o.source] in self.world.linked.get(tok.person, ())]
        for word, owner in self.world.rng.sample(mine, min(2, len(mine))):
            hits = api.post("/v1/search", json={"query": word, "limit": 10}).json()["hits"]
            got = any(word in h["snippet"] or word in (h["title"] or "") for h in hits) or any(
                word in api.get(f"/v1/documents/{quote(h['document_id'], safe='')}").text for h in hits[:3])
            bucket = self.found if got else self.missed
            bucket[owner.source] = bucket.get(owner.source, 0) + 1

    async def check_mcp(self, tok: Token, queries: list[str], sample: list[str]) -> None:
        async with mcp_session(self.url, tok.secret) as s:
            tools = {t.name for t in (await s.list_tools()).tools}
            assert tools == MCP_TOOLS, f"the MCP server's tools changed: check them here too: {tools}"
            templates = [t.uri_template for t in (await s.list_resource_templates()).resource_templates]
            assert templates == ["cairn://search/{query}"], templates
            for q in queries:
                result = await s.call_tool("search", {"query": q, "limit": 20})
                self.tool(tok, result, f"mcp search {q!r}")
                word = q.split()[-1]
                result = await s.call_tool("grep", {"pattern": word, "limit": 50})
                self.tool(tok, result, f"mcp grep {word!r}")
                result = await s.call_tool("find_symbol", {"name": word, "limit": 20})
                self.tool(tok, result, f"mcp find_symbol {word!r}")
                result = await s.call_tool("find_references", {"symbol": word, "limit": 50})
                self.tool(tok, result, f"mcp find_references {word!r}")
                result = await s.call_tool("history", {"text": word, "limit": 20})
                self.tool(tok, result, f"mcp history {word!r}")
                result = await s.call_tool("locate", {"query": q, "limit": 20, "budget_seconds": 30})
                self.tool(tok, result, f"mcp locate {q!r}")
                resource = await s.read_resource(f"cairn://search/{quote(q, safe='')}")
                self.markers(tok, " ".join(getattr(c, "text", "") for c in resource.contents),
                             f"mcp resource {q!r}")
                self.calls += 6
            for doc_id in sample:
                result = await s.call_tool("read_file", {"document_id": doc_id})
                if not result.is_error:
                    self.doc(tok, doc_id, "mcp read_file")
                self.tool(tok, result, f"mcp read_file {doc_id}")
                result = await s.call_tool("related", {"item": doc_id})
                self.tool(tok, result, f"mcp related {doc_id}")
            result = await s.call_tool("list_sources", {})
            listed = {row["name"] for row in (result.structured_content or {}).get("result", [])}
            # Sources are listed by their source-level access: none of these has any, so admins only.
            if listed and not tok.admin:
                self.violations.append(f"{tok.label} mcp list_sources: {listed}")
            self.tool(tok, result, "mcp list_sources")

    def tool(self, tok: Token, result: Any, where: str) -> None:
        structured = result.structured_content or {}
        text = json.dumps(structured) + " ".join(getattr(c, "text", "") for c in result.content)
        self.markers(tok, text, where)
        if not result.is_error:
            rows = structured.get("result", structured)
            if isinstance(rows, dict):
                rows = (rows.get("hits") or rows.get("matches") or rows.get("references") or rows.get("commits")
                        or rows.get("items") or rows.get("files") or [])
            for row in rows:
                if isinstance(row, dict) and "document_id" in row:
                    self.doc(tok, row["document_id"], where)


def context_doc(description: str) -> str:
    """The document a Continue context item comes from, by its description (`src/path:1-9 sym` for code,
    `src path: title` for the rest)."""
    code = re.match(r"([\w-]+)/(\S+):\d+-\d+", description)
    if code:
        return f"{code.group(1)}:{code.group(2)}"
    source, _, rest = description.partition(" ")
    return f"{source}:{rest.split(': ', 1)[0]}"


def run_pass(url: str, admin: str, name: str) -> dict[str, Any]:
    """The real permissions pass engine, through its route; waits for the job."""
    headers = {"Authorization": f"Bearer {admin}"}
    job = httpx.post(f"{url}/v1/sources/{quote(name, safe='')}/permissions", headers=headers, timeout=60)
    assert job.status_code == 202, job.text
    deadline = time.monotonic() + 60
    while True:
        state = httpx.get(f"{url}/v1/jobs/{job.json()['id']}", headers=headers, timeout=60).json()
        if state["state"] not in ("queued", "running", "cancelling"):
            return state
        assert time.monotonic() < deadline, f"permissions pass of {name} did not finish: {state}"
        time.sleep(0.1)


def indexed_docs(services: Any, names: list[str]) -> list[str]:
    return sorted(d for name in names for d in services.catalog.document_versions(name))


@pytest.mark.parametrize("seed", [3, 17])
def test_every_route_and_tool_serves_only_what_the_product_allows(seed, tmp_path, embedder, monkeypatch):
    rng = random.Random(seed)
    world = build_world(rng, tmp_path)
    monkeypatch.setenv("FAKE_GITLAB_TOKEN", world.gitlab.token)
    monkeypatch.setenv("FAKE_JIRA_TOKEN", world.jira["jira-cloud"].token)
    monkeypatch.setenv("FAKE_CONFLUENCE_TOKEN", world.wiki["wiki-cloud"].token)
    for server in world.servers():
        server.server.start()
    # No timers: the test decides when syncs and permissions passes run.
    settings = Settings(data_dir=tmp_path / "data", sync_interval_seconds=0, permission_sync_interval_seconds=0,
                        reconcile_interval_seconds=0, scheduler_tick_seconds=0, rate_limit_per_minute=0,
                        identity_cache_seconds=0)  # the checks right after the passes see their memberships
    services = IndexServices.open(settings, embedder=embedder)
    try:
        names = []
        for data in sources(world):
            register(services, data)
            counts = sync(services, data["name"])
            assert counts.files_failed == 0, (data["name"], services.catalog.list_failures(data["name"]))
            names.append(data["name"])
        before = indexed_docs(services, names)
        assert {d.partition(":")[0] for d in before} == set(names)
        assert any("#note-" in d for d in before) and any("#comment-" in d for d in before)
        store = TokenStore(services.catalog.engine)
        identities = IdentityStore(services.catalog.engine)
        enrol(world, identities)
        with serve(create_app(settings, services=services)) as url:
            admin = store.create("root", [], admin=True)[0]
            for name in names:  # memberships synced, accounts linked by email
                job = run_pass(url, admin, name)
                assert job["state"] == "succeeded", (name, job)
            world.linked = {who: {link.realm for link in identities.links(f"sub-{who}")} for who in PERSONS}
            assert any(len(realms) == len(set(REALMS.values())) for realms in world.linked.values())
            assert not identities.links(f"sub-{OUTSIDER}")
            checker = Checker(world, url, services)
            checker.check(mint(world, store), before)
            assert not checker.violations, "\n".join(checker.violations[:30])
            first = dict(checker.found), dict(checker.missed), dict(checker.doc_reads)

            done = tighten(world)
            for name in names:
                job = run_pass(url, admin, name)
                assert job["state"] == "succeeded", (name, job)
            after = indexed_docs(services, names)
            checker.check(mint(world, store), sorted(set(before) | set(after)))
            assert not checker.violations, "\n".join([*checker.violations[:30], "after:", *done])
    finally:
        services.close()
        for server in world.servers():
            server.server.stop()
    # The test can find things at all: documents are served to their readers, markers found by search.
    found, missed, reads = first
    assert reads["granted"] >= reads["allowed"] * 0.5, reads
    assert sum(found.values()) >= 2 * sum(missed.values()), (found, missed)
    assert checker.calls > 1000
