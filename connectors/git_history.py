"""Commit history as documents: the commits reachable from the indexed ref, and the ticket and merge
request references in their messages.

A commit document's text is written by `render` and read back by `parse` (the catalog keeps a document's
text, not its metadata), so both live here, next to the git plumbing that reads commits and diffs."""
from __future__ import annotations

import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

from connectors.base import ConnectorError, document_id
from connectors.git_process import Git

COMMIT_KIND = "commit"
COMMIT_PATH_PREFIX = "commit:"  # a commit document's path is `commit:<sha>`, its id `<source>:commit:<sha>`
HISTORY_VERSION = "commit1"  # every commit document's version (the sha is in its id); bump when `render` changes
MAX_FILES_LISTED = 200  # a commit touching more paths lists these and counts the rest
MAX_MESSAGE_CHARS = 20_000
READ_BATCH = 300  # commits named per `git log --no-walk` (argv stays far below the kernel's limit)
_FIELD, _RECORD = "\x1f", "\x1e"
_LOG_FORMAT = "--format=%x1e%H%x1f%aI%x1f%an%x1f%B%x1f"
_SHA = re.compile(r"^[0-9a-f]{40}$|^[0-9a-f]{64}$")
# Jira keys: a project key (a capital letter, then capitals, digits or `_`) and an issue number.
JIRA_KEY = re.compile(r"(?<![\w-])([A-Z][A-Z0-9_]{1,9}-[1-9][0-9]{0,6})(?![\w-])")
# GitLab merge requests: `!12` in the same project, or `group/sub/project!12`.
MR_REF = re.compile(r"(?<![\w!/.-])((?:[A-Za-z0-9_.-]+/)+[A-Za-z0-9_.-]+)?!([1-9][0-9]{0,6})(?![\w])")
# Prefixes of things that look like Jira keys and are not (UTF-8, SHA-256, ISO-8601, RFC-7231 ...).
NOT_TICKETS = frozenset({"UTF", "SHA", "ISO", "RFC", "PEP", "CVE", "HTTP", "TLS", "SSL", "AES", "MD", "CRC",
                         "ECMA", "IEEE", "WIN", "ARM", "GPL", "LGPL", "BSD", "PY", "TCP", "UDP", "IPV"})
_TRAILER = ("Commit: ", "Author: ", "Date: ")


@dataclass(frozen=True)
class CommitRecord:
    """One commit as git reports it: what a commit document is made of."""

    sha: str
    date: str  # author date, ISO 8601 with offset
    author: str  # the author's name (their e-mail address is not indexed)
    message: str
    paths: tuple[str, ...] = ()  # paths the commit touched (none for a merge)


@dataclass(frozen=True)
class CommitText:
    """A commit document's text read back: what `history` and `related` show and follow."""

    sha: str
    date: str
    author: str
    message: str
    references: tuple[str, ...]
    paths: tuple[str, ...]
    more_paths: int = 0

    @property
    def subject(self) -> str:
        return self.message.split("\n", 1)[0]


def commit_id(source: str, sha: str) -> str:
    return document_id(source, f"{COMMIT_PATH_PREFIX}{sha}")


def is_commit_id(source: str, doc_id: str) -> bool:
    return doc_id.startswith(f"{source}:{COMMIT_PATH_PREFIX}")


def commit_url(web_blob_base: str, sha: str) -> str:
    """The commit's web page, from the base of the source's file links (`.../-/blob` or `.../blob`)."""
    if not web_blob_base.endswith("/blob"):
        return ""
    return f"{web_blob_base.removesuffix('blob')}commit/{sha}"


def references(text: str, project: str = "") -> tuple[str, ...]:
    """Jira keys and merge requests a message names, in order of first mention: `ABC-12`, `group/project!3`
    (a bare `!3` is qualified with `project` when the source's project path is known)."""
    found: dict[str, None] = {}
    for match in JIRA_KEY.finditer(text):
        if match.group(1).split("-")[0] not in NOT_TICKETS:
            found.setdefault(match.group(1))
    for match in MR_REF.finditer(text):
        where = match.group(1) or project
        found.setdefault(f"{where}!{match.group(2)}")
    return tuple(found)


def render(record: CommitRecord, refs: Sequence[str]) -> str:
    """The commit document's text: the message, then a trailer `parse` reads back, then the touched paths."""
    message = record.message.strip()[:MAX_MESSAGE_CHARS]
    lines = [message, "", f"Commit: {record.sha}", f"Author: {record.author}", f"Date: {record.date}"]
    if refs:
        lines.append(f"References: {', '.join(refs)}")
    if record.paths:
        lines.append("Files:")
        lines += record.paths[:MAX_FILES_LISTED]
        if len(record.paths) > MAX_FILES_LISTED:
            lines.append(f"(and {len(record.paths) - MAX_FILES_LISTED} more files)")
    return "\n".join(lines) + "\n"


def parse(text: str) -> CommitText | None:
    """A commit document's text (as `render` wrote it, possibly redacted) read back; None if it is not one."""
    lines = text.rstrip("\n").split("\n")
    at = next((i for i in range(len(lines) - 3, -1, -1)
               if all(lines[i + k].startswith(_TRAILER[k]) for k in range(3))), None)
    if at is None:
        return None
    sha, author, date = (lines[at + k][len(_TRAILER[k]):] for k in range(3))
    rest = lines[at + 3:]
    refs: tuple[str, ...] = ()
    if rest and rest[0].startswith("References: "):
        refs = tuple(r for r in rest.pop(0)[len("References: "):].split(", ") if r)
    paths, more = [], 0
    if rest and rest[0] == "Files:":
        for line in rest[1:]:
            counted = re.fullmatch(r"\(and (\d+) more files\)", line)
            if counted:
                more = int(counted.group(1))
            elif line:
                paths.append(line)
    return CommitText(sha, date, author, "\n".join(lines[:at]).strip(), refs, tuple(paths), more)


class HistoryReader:
    """Reads commits and diffs from one git directory, never past the commit it is given."""

    def __init__(self, git: Git, git_dir: str, timeout: float) -> None:
        self.git, self.git_dir, self.timeout = git, git_dir, timeout

    def _run(self, *args: str) -> bytes:
        # Literal pathspecs: a path is a path, never a glob or a `:(magic)` pattern.
        return self.git.run([f"--git-dir={self.git_dir}", "--literal-pathspecs", *args], timeout=self.timeout)

    def reachable(self, commit: str, limit: int) -> list[str]:
        """The newest `limit` commits reachable from `commit` (itself first), newest first."""
        out = self._run("rev-list", f"--max-count={limit}", "--end-of-options", commit)
        return [line for line in out.decode("ascii").split("\n") if _SHA.match(line)]

    def read(self, shas: Sequence[str]) -> Iterator[CommitRecord]:
        """The named commits (in the given order), with the paths each touched."""
        for start in range(0, len(shas), READ_BATCH):
            batch = [s for s in shas[start:start + READ_BATCH] if _SHA.match(s)]
            if batch:
                out = self._run("log", "--no-walk=unsorted", "-z", "--name-only", "--no-renames", _LOG_FORMAT,
                                "--end-of-options", *batch)
                yield from parse_log(out)

    def resolve(self, name: str) -> str:
        """The full sha of the commit an abbreviated sha names ("" when none does, or it is ambiguous)."""
        if not re.fullmatch(r"[0-9a-f]{4,64}", name):
            return ""
        try:
            out = self._run("rev-parse", "--verify", "--quiet", "--end-of-options", f"{name}^{{commit}}")
        except ConnectorError:
            return ""
        return out.decode("ascii").strip()

    def touching(self, commit: str, path: str, limit: int) -> list[str]:
        """Commits reachable from `commit` that changed `path` (a file, or everything under a folder), newest first."""
        out = self._run("log", f"--max-count={limit}", "--format=%H", "--end-of-options", commit, "--", path)
        return [line for line in out.decode("ascii").split("\n") if _SHA.match(line)]

    def diff(self, sha: str, path: str) -> str:
        """The commit's patch for `path` (a file or a folder) against its first parent."""
        out = self._run("diff-tree", "-p", "--root", "-r", "--no-commit-id", "--no-color", "--no-ext-diff",
                        "--no-textconv", "--end-of-options", sha, "--", path)
        return out.decode("utf-8", "replace")


def parse_log(out: bytes) -> Iterator[CommitRecord]:
    """Records of `git log -z --name-only` with `_LOG_FORMAT`."""
    for record in out.decode("utf-8", "replace").split(_RECORD):
        parts = record.split(_FIELD, 4)
        if len(parts) < 5 or not _SHA.match(parts[0]):
            continue
        sha, date, author, message, rest = parts
        paths = tuple(p.lstrip("\n") for p in rest.split("\0") if p.strip("\n"))
        yield CommitRecord(sha, date, author, message, paths)


def split_patch(patch: str) -> list[tuple[str, str]]:
    """A multi-file patch as (path, that file's part) pairs, in order."""
    parts: list[tuple[str, str]] = []
    for block in re.split(r"(?m)^(?=diff --git )", patch):
        if not block.strip():
            continue
        head = block.split("\n", 1)[0]
        named = re.match(r"diff --git a/(.*) b/(.*)$", head)
        parts.append((named.group(2) if named else head, block.rstrip("\n")))
    return parts
