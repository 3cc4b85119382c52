"""Git repositories as a source: the tracked files of one commit, read incrementally by blob hash."""
from __future__ import annotations

import hashlib
import logging
import re
import shutil
import uuid
from collections import Counter
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote, unquote, urlsplit, urlunsplit

from connectors.base import Checkpoint, Connector, ConnectorError, RefNotFound, SourceNotFound, SyncItem, document_id
from connectors.git_history import (
    COMMIT_KIND,
    HISTORY_VERSION,
    CommitRecord,
    HistoryReader,
    commit_id,
    commit_url,
    is_commit_id,
    references,
    render,
)
from connectors.git_process import BlobReader, Git, GitRetry, MissingObject, redact
from connectors.rendering.notebook import NotANotebook, notebook_to_text
from indexer.languages import decode_text, detect_language, kind_for, skip_reason_for_content, skip_reason_for_path
from indexer.models import Access, Deletion, Document, Skipped, SkipReason, SyncFailure

log = logging.getLogger(__name__)

URL_SCHEMES = ("https", "http", "ssh", "git", "file")
_SCHEME = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]*)://")
# git@host:group/proj.git, but not `transport::address` (helpers such as ext:: can run commands).
_SCP = re.compile(r"^(?:[^@/:]+@)?([^/:]+):(?!:)(.+)$")
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")
SYMLINK_MODE, GITLINK_MODE = "120000", "160000"
HEAD_CHARS = 1024


def is_remote(location: str) -> bool:
    """A clone URL (scheme:// or scp-like user@host:path) rather than a local path."""
    return bool(_SCHEME.match(location)) or (not Path(location).exists() and bool(_SCP.match(location)))


def web_blob_base(location: str) -> str:
    """`https://host/group/proj/-/blob` (GitLab) or `.../blob` (GitHub) for a web-hosted clone URL, else ""."""
    scp = None if _SCHEME.match(location) else _SCP.match(location)
    if scp:
        scheme, host, path = "https", scp.group(1), scp.group(2)
    else:
        parts = urlsplit(location)
        if parts.scheme not in ("https", "http", "ssh", "git") or not parts.hostname:
            return ""
        web = parts.scheme in ("https", "http")  # ssh/git ports are not the web server's
        host = f"{parts.hostname}:{parts.port}" if web and parts.port else parts.hostname
        scheme, path = (parts.scheme if web else "https"), parts.path
    path = path.strip("/").removesuffix(".git")
    if not path:
        return ""
    if "gitlab" in host:
        return f"{scheme}://{host}/{path}/-/blob"
    if "github" in host:
        return f"{scheme}://{host}/{path}/blob"
    return ""


# git asks this helper for HTTP credentials; they come from its environment, never from argv, so
# other users of the machine cannot read the token in the process list (`ps`). The empty helper
# first clears any helper configured globally (a credential store must not learn our token).
_CREDENTIAL_HELPER = ('!f() { test "$1" = get || exit 0; '
                      'printf "username=%s\\npassword=%s\\n" "$CAIRN_GIT_USERNAME" "$CAIRN_GIT_PASSWORD"; }; f')


DEFAULT_USERNAME = "oauth2"  # GitLab's name for token logins; GitHub and most servers take any name with a token


def credential_env(username: str, password: str) -> dict[str, str]:
    """The environment that makes git answer an HTTP auth challenge with `username`/`password`."""
    return {"GIT_CONFIG_COUNT": "2",
            "GIT_CONFIG_KEY_0": "credential.helper", "GIT_CONFIG_VALUE_0": "",
            "GIT_CONFIG_KEY_1": "credential.helper", "GIT_CONFIG_VALUE_1": _CREDENTIAL_HELPER,
            "CAIRN_GIT_USERNAME": username, "CAIRN_GIT_PASSWORD": password}


def split_credentials(location: str) -> tuple[str, dict[str, str]]:
    """An http(s) URL without its `user:password@`, and the environment that hands them to git (the
    GitLab connector builds such URLs in memory; stored sources never hold one, see connectors.config)."""
    parts = urlsplit(location)
    if parts.scheme.lower() not in ("http", "https") or parts.password is None:
        return location, {}
    host = f"{parts.hostname}:{parts.port}" if parts.port else str(parts.hostname)
    bare = urlunsplit((parts.scheme, host, parts.path, parts.query, parts.fragment))
    return bare, credential_env(unquote(parts.username or ""), unquote(parts.password))


def unsafe_path_reason(path: str) -> str:
    """Why a tree path must not be used ("" when it is fine)."""
    if path.startswith("/"):
        return "absolute path"
    if any(part in ("", ".", "..") for part in path.split("/")):
        return "empty, '.' or '..' path component"
    if ".." in re.split(r"[\\/]", path):  # `x\..\..\y`: a traversal to tools that take `\` for a separator
        return "'..' path component between backslashes"
    if _CONTROL.search(path):
        return "control character in path"
    return ""


@dataclass(frozen=True)
class TreeEntry:
    """One line of `git ls-tree -r --long`."""

    mode: str
    type: str
    sha: str
    size: int
    path: str
    problem: str = ""  # set when the path cannot be used (then `path` is a printable rendering)


def parse_ls_tree(output: bytes) -> list[TreeEntry]:
    """Parse `git ls-tree -r -z --long` output."""
    entries: list[TreeEntry] = []
    for record in output.split(b"\0"):
        if not record:
            continue
        header, _, raw_path = record.partition(b"\t")
        mode, kind, sha, size = header.decode("ascii").split()
        try:
            path, problem = raw_path.decode("utf-8"), ""
        except UnicodeDecodeError:
            path, problem = raw_path.decode("utf-8", "replace"), "path is not valid UTF-8"
        problem = problem or unsafe_path_reason(path)
        entries.append(TreeEntry(mode, kind, sha, int(size) if size.isdigit() else 0, path, problem))
    return entries


class GitRepoConnector(Connector):
    """Indexes the tracked files of a repository at a ref: a local work tree or bare repo, or a clone URL."""

    def __init__(self, name: str, location: str, ref: str | None = None, access: Access | None = None,
                 workdir: Path | None = None, max_file_bytes: int = 1_000_000, timeout: float = 600.0,
                 token: Callable[[], str] | None = None, username: str = "",
                 retry: GitRetry | None = None, history_commits: int = 0) -> None:
        self.name = name
        self.location = location
        self.ref = ref
        self.access = access or Access()  # no principals: only admins may read
        self.workdir = Path(workdir) if workdir else None
        self.max_file_bytes = max_file_bytes
        self.remote = is_remote(location)
        self.display = redact(location)  # what logs and errors may show
        # What git is told: the URL without credentials, which travel in the environment instead.
        self.fetch_url, self.credential_env = split_credentials(location) if self.remote else (location, {})
        self.web_base = web_blob_base(location) if self.remote else ""
        self.git = Git(timeout, secret=location if self.remote else "")
        self.token = token  # read at sync time (an environment variable or file), handed to git in its env
        self.username = username or DEFAULT_USERNAME
        self.retry = retry or GitRetry()
        self.local_timeout = min(timeout, 120.0)
        self.history_commits = history_commits  # commits indexed as documents (0: none)
        self._finished: tuple[str, set[str]] | None = None

    # -- the Connector contract -----------------------------------------------------------------

    def sync(self, checkpoint: Checkpoint | None, known: Mapping[str, str]) -> Iterator[SyncItem]:
        """Yield changed files, skips, failures, then deletions of known ids that are gone."""
        self._finished = None
        git_dir = self._prepare(fetch=True)
        commit = self._resolve(git_dir)
        entries = self._tree(git_dir, commit)
        previous = (checkpoint or {}).get("commit")
        log.info("sync %s: %s at %s (previously %s), %d tree entries", self.name, self.display, commit[:12],
                 str(previous)[:12], len(entries))
        present: set[str] = set()
        tally: Counter[str] = Counter()
        with BlobReader(self.git, git_dir) as reader:
            for entry in entries:
                item, keep = self._visit(entry, known, reader, commit)
                if keep:
                    present.add(document_id(self.name, entry.path))
                tally[type(item).__name__ if item else "unchanged"] += 1
                if item is not None:
                    yield item
        for item in self._history(git_dir, commit, known, present):
            tally[type(item).__name__] += 1
            yield item
        for doc_id in sorted(set(known) - present):
            tally["Deletion"] += 1
            yield Deletion(doc_id)
        log.info("sync %s done at %s: %s", self.name, commit[:12], dict(tally))
        self._finished = (commit, present)

    def next_checkpoint(self) -> Checkpoint:
        if self._finished is None:
            raise ConnectorError("next_checkpoint() called before the sync was consumed")
        return {"commit": self._finished[0], "ref": self.ref}

    def list_ids(self) -> set[str]:
        """Ids of the indexable files at the synced commit (or, before a sync, judged by path alone)."""
        if self._finished is not None:
            return set(self._finished[1])
        git_dir = self._prepare(fetch=False)
        commit = self._resolve(git_dir)
        entries = self._tree(git_dir, commit)
        ids = {document_id(self.name, e.path) for e in entries if self._path_skip(e) is None}
        if self.history_commits > 0:
            ids |= {commit_id(self.name, sha) for sha in self.history_reader(git_dir).reachable(commit,
                                                                                                self.history_commits)}
        return ids

    def history_git_dir(self) -> str:
        """The git directory to read history from at query time: the local repository, or the clone a sync
        made (never cloned or fetched here: a query must not move what was indexed)."""
        if not self.remote:
            return self._local_git_dir()
        dest = self._clone_dir()
        if not (dest.is_dir() and self._is_repo(dest)):
            raise SourceNotFound(f"source {self.name!r} has no clone yet: sync it first")
        return str(dest)

    def history_reader(self, git_dir: str) -> HistoryReader:
        return HistoryReader(self.git, git_dir, self.local_timeout)

    # -- commit history -------------------------------------------------------------------------

    def _history(self, git_dir: str, commit: str, known: Mapping[str, str], present: set[str]) -> Iterator[SyncItem]:
        """Documents for the newest `history_commits` commits reachable from `commit` (never one after it)
        that are not indexed yet; every one of them stays present. A commit's text never changes, so a
        later sync reads only the commits that are new since (plus any indexed under another version)."""
        if self.history_commits <= 0:
            return
        reader = self.history_reader(git_dir)
        try:
            shas = reader.reachable(commit, self.history_commits)
        except ConnectorError as exc:
            present.update(d for d in known if is_commit_id(self.name, d))  # kept until history reads again
            yield SyncFailure(self.name, "commit history", self.git.clean(str(exc)))
            return
        ids = {sha: commit_id(self.name, sha) for sha in shas}
        present.update(ids.values())
        new = [sha for sha in shas if known.get(ids[sha]) != HISTORY_VERSION]
        log.info("sync %s: %d commits in history, %d to read", self.name, len(shas), len(new))
        try:
            for record in reader.read(new):
                yield self._commit_document(record)
        except ConnectorError as exc:
            yield SyncFailure(self.name, "commit history", self.git.clean(str(exc)))

    def _commit_document(self, record: CommitRecord) -> Document:
        refs = references(record.message, self._project_path())
        subject = record.message.strip().split("\n", 1)[0]
        return Document(id=commit_id(self.name, record.sha), source=self.name, path=f"commit:{record.sha}",
                        content=render(record, refs), version=HISTORY_VERSION, access=self.access,
                        kind=COMMIT_KIND, language="text", title=f"{record.sha[:12]} {subject}",
                        url=commit_url(self.web_base, record.sha),
                        metadata={"commit": record.sha, "date": record.date, "author": record.author,
                                  "references": " ".join(refs)})

    def _project_path(self) -> str:
        """`group/project` of a web-hosted clone URL (what a bare `!12` in a message refers to), else ""."""
        if not self.web_base:
            return ""
        path = urlsplit(self.web_base).path.strip("/")
        return path.removesuffix("/-/blob").removesuffix("/blob")

    # -- one tree entry -------------------------------------------------------------------------

    def _visit(self, entry: TreeEntry, known: Mapping[str, str], reader: BlobReader,
               commit: str) -> tuple[SyncItem | None, bool]:
        """What to yield for one entry, and whether its document stays in the index."""
        skip = self._path_skip(entry)
        if skip is not None:
            return skip, False
        doc_id = document_id(self.name, entry.path)
        if known.get(doc_id) == _version(entry):
            return None, True
        try:
            data = reader.read(entry.sha)
            reason = skip_reason_for_content(entry.path, data)
            if reason is not None:
                return Skipped(self.name, entry.path, reason[0], reason[1]), False
            if not _is_notebook(entry.path):
                return self._document(entry, decode_text(data), commit), True
            return self._notebook(entry, decode_text(data), commit)
        except MissingObject:
            return Skipped(self.name, entry.path, SkipReason.MISSING_OBJECT, f"blob {entry.sha}"), False
        except Exception as exc:  # noqa: BLE001 - one unreadable file must never stop the sync
            # the blob, not the path: a credential in a file's name must not reach the log (the failure record
            # below carries the path, which the sync loop redacts before storing it)
            log.warning("sync %s: reading blob %s failed: %s", self.name, entry.sha[:12], type(exc).__name__)
            return SyncFailure(self.name, entry.path, self.git.clean(f"{type(exc).__name__}: {exc}")), True

    def _path_skip(self, entry: TreeEntry) -> Skipped | None:
        if entry.problem:
            return Skipped(self.name, entry.path, SkipReason.UNSAFE_PATH, entry.problem)
        if entry.mode == SYMLINK_MODE:
            return Skipped(self.name, entry.path, SkipReason.SYMLINK, "symbolic link (not followed)")
        if entry.mode == GITLINK_MODE or entry.type == "commit":
            return Skipped(self.name, entry.path, SkipReason.SUBMODULE, f"submodule at {entry.sha}")
        if entry.type != "blob":
            return Skipped(self.name, entry.path, SkipReason.UNSAFE_PATH, f"unexpected {entry.type} entry")
        # a notebook's outputs (images, HTML) go: its raw size may be larger, the cells' text may not
        limit = self.max_file_bytes * (NOTEBOOK_RAW_FACTOR if _is_notebook(entry.path) else 1)
        reason = skip_reason_for_path(entry.path, entry.size, limit)
        return Skipped(self.name, entry.path, reason[0], reason[1]) if reason else None

    def _notebook(self, entry: TreeEntry, raw: str, commit: str) -> tuple[SyncItem, bool]:
        """A notebook's cells as a script in its kernel's language (connectors/rendering/notebook.py)."""
        try:
            text, language = notebook_to_text(raw)
        except NotANotebook as exc:
            return Skipped(self.name, entry.path, SkipReason.UNDECODABLE, f"not a notebook ({exc})"), False
        if len(text.encode()) > self.max_file_bytes:
            return Skipped(self.name, entry.path, SkipReason.TOO_LARGE,
                           f"cells of {len(text.encode())} bytes > {self.max_file_bytes}"), False
        return self._document(entry, text, commit, language), True

    def _document(self, entry: TreeEntry, text: str, commit: str, language: str = "") -> Document:
        language = language or detect_language(entry.path, text[:HEAD_CHARS])
        url = f"{self.web_base}/{commit}/{quote(entry.path, safe='/')}" if self.web_base else ""
        return Document(id=document_id(self.name, entry.path), source=self.name, path=entry.path, content=text,
                        version=_version(entry), access=self.access, kind=kind_for(language), language=language,
                        title=entry.path, url=url, metadata={"commit": commit})

    # -- repository access ----------------------------------------------------------------------

    def _prepare(self, fetch: bool) -> str:
        """The git directory to read: the local repository, or our bare clone of the URL (fetched)."""
        if not self.remote:
            return self._local_git_dir()
        scheme = _SCHEME.match(self.location)
        if scheme and scheme.group(1).lower() not in URL_SCHEMES:
            raise SourceNotFound(f"unsupported clone URL scheme in {self.display}")
        if self.token is not None and not self.credential_env:
            secret = self.token()
            self.git.hide(secret)
            self.credential_env = credential_env(self.username, secret)
        dest = self._clone_dir()
        if dest.is_dir() and self._is_repo(dest):
            if fetch:
                self._fetch(dest)
        else:
            self._clone(dest)
        return str(dest)

    def _clone_dir(self) -> Path:
        if self.workdir is None:
            raise ConnectorError(f"source {self.name!r}: a workdir is needed to clone {self.display}")
        return self.workdir / f"{_safe_name(self.name)}-{hashlib.sha256(self.display.encode()).hexdigest()[:10]}.git"

    def _local_git_dir(self) -> str:
        path = Path(self.location).expanduser().resolve()
        if not path.is_dir():
            raise SourceNotFound(f"source {self.name!r}: {self.display} is not a directory")
        try:
            # The ceiling stops git from finding an enclosing repository of a plain subdirectory.
            out = self.git.run(["rev-parse", "--absolute-git-dir"], cwd=path, timeout=self.local_timeout,
                               env={"GIT_CEILING_DIRECTORIES": str(path.parent)})
        except ConnectorError as exc:
            raise SourceNotFound(f"source {self.name!r}: {self.display} is not a git repository ({exc})") from None
        return out.decode("utf-8", "surrogateescape").strip()

    def _is_repo(self, dest: Path) -> bool:
        try:
            self.git.run([f"--git-dir={dest}", "rev-parse", "--git-dir"], timeout=self.local_timeout)
            return True
        except ConnectorError:
            return False

    def _clone(self, dest: Path) -> None:
        shutil.rmtree(dest, ignore_errors=True)
        tmp = dest.with_name(f"{dest.name}.tmp-{uuid.uuid4().hex[:8]}")
        log.info("cloning %s for source %s", self.display, self.name)
        try:
            dest.parent.mkdir(parents=True, exist_ok=True)
            self.git.run_retrying(["clone", "--bare", "--quiet", "--", self.fetch_url, str(tmp)], self.retry,
                                  env=self.credential_env, before_retry=lambda: shutil.rmtree(tmp, ignore_errors=True))
            # The clone keeps no credentials on disk: fetches pass the URL explicitly.
            self.git.run([f"--git-dir={tmp}", "remote", "set-url", "origin", self.display])
            tmp.rename(dest)
        except OSError as exc:
            shutil.rmtree(tmp, ignore_errors=True)
            if not self._is_repo(dest):  # else another sync of this source finished its clone first
                raise ConnectorError(f"source {self.name!r}: cannot store the clone: {exc.strerror}") from None
        except ConnectorError as exc:
            shutil.rmtree(tmp, ignore_errors=True)
            raise type(exc)(f"source {self.name!r}: cloning {self.display} failed: {exc}") from None

    def _fetch(self, dest: Path) -> None:
        log.info("fetching %s for source %s", self.display, self.name)
        refspecs = ["+refs/heads/*:refs/heads/*", "+refs/tags/*:refs/tags/*"]
        try:
            self.git.run_retrying([f"--git-dir={dest}", "fetch", "--quiet", "--prune", "--", self.fetch_url,
                                   *refspecs], self.retry, env=self.credential_env)
        except ConnectorError as exc:
            raise type(exc)(f"source {self.name!r}: fetching {self.display} failed: {exc}") from None

    def _resolve(self, git_dir: str) -> str:
        ref = self.ref or "HEAD"
        if ref.startswith("-") or _CONTROL.search(ref) or " " in ref:
            raise RefNotFound(f"source {self.name!r}: invalid ref {ref!r}")
        try:
            out = self.git.run([f"--git-dir={git_dir}", "rev-parse", "--verify", "--quiet", "--end-of-options",
                                f"{ref}^{{commit}}"], timeout=self.local_timeout)
        except ConnectorError:
            raise RefNotFound(f"source {self.name!r}: ref {ref!r} not found in {self.display}") from None
        return out.decode("ascii").strip()

    def _tree(self, git_dir: str, commit: str) -> list[TreeEntry]:
        out = self.git.run([f"--git-dir={git_dir}", "ls-tree", "-r", "-z", "--long", "--full-tree", commit],
                           timeout=self.local_timeout)
        return parse_ls_tree(out)


NOTEBOOK_RAW_FACTOR = 10  # a notebook file may be this many times max_file_bytes before its outputs go
NOTEBOOK_VERSION = "cells1"  # in a notebook's version: a change of the rendering reads notebooks again


def _is_notebook(path: str) -> bool:
    return path.lower().endswith(".ipynb")


def _version(entry: TreeEntry) -> str:
    """A document's version: its blob hash, plus the rendering for notebooks (they are not the blob)."""
    return f"{entry.sha}+{NOTEBOOK_VERSION}" if _is_notebook(entry.path) else entry.sha


def _safe_name(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]", "_", name)[:64] or "source"
