"""The MCP server (Streamable HTTP, stateless) at /mcp: the same tokens, principals and index as REST."""
# No `from __future__ import annotations`: the MCP SDK reads these tool signatures at runtime.
import contextlib
import logging
import uuid
from collections.abc import Iterator, Sequence
from typing import Annotated, Any
from urllib.parse import unquote

import anyio.to_thread
from mcp.server import CacheHint
from mcp.server.mcpserver import Context, MCPServer, ResourceSecurity
from mcp.server.mcpserver.exceptions import ResourceError, ToolError
from mcp.server.mcpserver.tools.base import Tool
from mcp.server.streamable_http_manager import StreamableHTTPSessionManager
from mcp.server.transport_security import TransportSecuritySettings
from mcp.types import CallToolResult, ToolAnnotations
from mcp_types.methods import CacheableMethod
from pydantic import Field
from starlette.routing import Match, Route
from starlette.types import Receive, Send
from starlette.types import Scope as ASGIScope

from api.audit import FeedbackError
from api.auth import challenge, resolve_bearer
from api.continue_provider import budgeted, candidates, to_item
from api.documents import read_document
from api.errors import BadRequest, NotFound
from api.history import history_answer, related_answer
from api.limits import send_error
from api.locate import MAX_BUDGET_SECONDS, LocateOut, locate_answer, locate_text
from api.mcp_arguments import CairnTool
from api.mcp_render import (
    budget_document,
    definitions_text,
    document_text,
    grep_text,
    history_text,
    references_text,
    references_within,
    related_text,
    reply,
    search_text,
    sources_text,
    within_budget,
)
from api.mcp_schemas import (
    Definition,
    GrepLine,
    GrepOut,
    HistoryOut,
    ReferencesOut,
    RelatedOut,
    SourceBrief,
    reference_out,
)
from api.schemas import MAX_QUERY_CHARS, DocumentOut, HitOut, SearchResponse
from indexer.catalog.schema import SourceRecord
from indexer.models import KINDS, Principal
from retrieval.grep import PatternError
from retrieval.grep import grep as grep_index
from retrieval.locate import DEFAULT_BUDGET_SECONDS
from retrieval.permissions import Scope, ScopeError
from retrieval.query_analysis import QueryError
from retrieval.references import find_definitions, find_references

log = logging.getLogger(__name__)

MCP_PATH = "/mcp"
MAX_READ_LINES = 2000  # read_file without a range returns at most this many lines
SYMBOL_CANDIDATES = 200
INSTRUCTIONS = ("Cairn searches the organization's indexed code, docs and tickets that you may read. Use `search` "
                "for questions, `grep` for exact strings, `find_symbol` for definitions, `find_references` for "
                "uses and callers, `read_file` to open a result, `history` for the commits behind a path or a "
                "change, `related` for the tickets, merge requests, commits, pages and files linked to one of "
                "them, `locate` to find the files a task or a bug report needs (with the evidence for each), "
                "`list_sources` to see what is indexed.")
_ANTICIPATED = (NotFound, BadRequest, PatternError, ScopeError, QueryError, FeedbackError)

Limit = Annotated[int, Field(ge=1, le=100, description="How many results to return (1-100).")]
Names = Annotated[list[str], Field(max_length=100)]
Sources = Annotated[Names | None, Field(description="Only these sources (names from list_sources); all you can "
                                                    "read when left out.")]
Languages = Annotated[Names | None, Field(description='Only these languages, e.g. ["python", "go"].')]
Kinds = Annotated[Names | None, Field(description=f"Only these kinds: {', '.join(KINDS)}.")]
PathPrefix = Annotated[str, Field(max_length=1000, description="Only paths under this folder, e.g. `src/billing/`.")]
MaxTokens = Annotated[Annotated[int, Field(ge=100, le=100_000)] | None,
                      Field(description="Token budget (about 4 characters each, 100-100000) for the code returned.")]
# Every tool only reads Cairn's own index: read-only, and a closed world (it reaches no outside system).
TITLES = {"search": "Search code, docs and tickets", "grep": "Grep indexed text", "read_file": "Read a file",
          "find_symbol": "Find a symbol's definition", "find_references": "Find a symbol's references",
          "list_sources": "List sources", "history": "Commit history of a path or a text",
          "related": "Linked tickets, MRs, commits, pages, files", "locate": "Locate the code for a task"}
# Discovery, the tool list and the template list are the same for every caller and change only with a release.
_HOUR_PUBLIC = CacheHint(ttl_ms=3_600_000, scope="public")
CACHE_HINTS: dict[CacheableMethod, CacheHint] = {"server/discover": _HOUR_PUBLIC, "tools/list": _HOUR_PUBLIC,
                                                 "resources/templates/list": _HOUR_PUBLIC}


def caller(ctx: Context) -> Principal:
    """The Principal the gate resolved for this HTTP request (tools never run without one)."""
    request = ctx.request_context.request
    who = getattr(getattr(request, "state", None), "principal", None)
    if not isinstance(who, Principal):
        raise ToolError("not authenticated")
    return who


def _scope(sources: list[str] | None, path_prefix: str, languages: list[str] | None,
           kinds: list[str] | None) -> Scope:
    return Scope(sources=tuple(sources or ()), path_prefixes=(path_prefix,) if path_prefix else (),
                 languages=tuple(languages or ()), kinds=tuple(kinds or ()))


class CairnTools:
    """The tool bodies, over the app's state; each runs as the calling Principal."""

    def __init__(self, app: Any) -> None:
        self.app = app

    @contextlib.contextmanager
    def call(self, tool: str) -> Iterator[None]:
        """Anticipated errors become tool errors with their message; every call is counted."""
        outcome = "error"
        try:
            yield
            outcome = "ok"
        except _ANTICIPATED as exc:
            raise ToolError(str(exc)) from exc
        finally:
            self.app.state.metrics.tool_calls.labels(tool, outcome).inc()

    def readable_sources(self, who: Principal) -> list[SourceRecord]:
        """The sources `list_sources` shows this caller: those whose access names one of their principals."""
        mine = set(who.principals())
        return [row for row in self.app.state.services.catalog.list_sources() if who.admin or mine & set(row.access)]

    def check_sources(self, who: Principal, names: Sequence[str], argument: str = "sources") -> None:
        """Refuses a source the caller cannot read, naming the ones they can. The message is the same for a
        source that does not exist and one they may not read, so it tells them nothing about the others."""
        readable = [row.name for row in self.readable_sources(who)] if names else []
        if any(name not in readable for name in names):
            raise BadRequest(f"`{argument}` names a source you cannot read or that does not exist. The sources you "
                             f"can read are: {', '.join(readable) or 'none'}.")

    def search(self, who: Principal, query: str, limit: int, scope: Scope, max_tokens: int | None) -> CallToolResult:
        self.check_sources(who, scope.sources)
        state = self.app.state
        result = state.searcher.search(query, who, scope, limit=limit)
        query_id = str(uuid.uuid4())
        state.audit.record(who, "mcp.search", scope=scope, result_ids=[h.chunk_id for h in result.hits],
                           query_id=query_id, query_text=query)
        hits = [HitOut(id=h.chunk_id, document_id=h.doc_id, source=h.source, path=h.path, title=h.title, url=h.url,
                       start_line=h.start_line, end_line=h.end_line, symbol=h.symbol, kind=h.kind,
                       language=h.language, score=h.score, snippet=h.snippet, chunk_ids=list(h.chunk_ids))
                for h in result.hits]
        response = SearchResponse(query_id=query_id, hits=hits, abstained=result.abstained,
                                  timings_ms={k: round(v * 1000, 2) for k, v in result.timings.items()})
        budget = max_tokens or state.settings.context_token_budget
        return reply(response, search_text(query_id, hits, candidates(result.hits), budget))

    def grep(self, who: Principal, pattern: str, is_regex: bool, case_sensitive: bool, limit: int,
             scope: Scope, max_tokens: int | None) -> CallToolResult:
        self.check_sources(who, scope.sources)
        svc = self.app.state.services
        found = grep_index(svc.catalog, svc.fulltext, who, pattern, scope, is_regex=is_regex,
                           case_sensitive=case_sensitive, limit=limit, stale=self.app.state.stale_sources.current())
        self.app.state.audit.record(who, "mcp.grep", scope=scope, result_ids=[], query_text=pattern)
        matches, cut = within_budget(found.matches, max_tokens)
        truncated = found.truncated or cut
        out = GrepOut(matches=[GrepLine(**vars(m)) for m in matches], truncated=truncated)
        return reply(out, grep_text(matches, truncated, max_tokens))

    def read_file(self, who: Principal, document_id: str, source: str, path: str, start_line: int | None,
                  end_line: int | None, max_tokens: int | None) -> CallToolResult:
        if not document_id:
            if not (source and path):
                raise BadRequest("give a document_id, or a source and a path")
            self.check_sources(who, [source], argument="source")
            document_id = f"{source}:{path}"  # documents are keyed "<source>:<path>"
        if start_line is None and end_line is None:
            start_line, end_line = 1, MAX_READ_LINES
        doc = read_document(self.app.state.services.catalog, who, document_id, start_line, end_line,
                            stale=self.app.state.stale_sources.current())
        if (source and doc.source != source) or (path and doc.path != path):
            raise NotFound(f"no document {path!r} in source {source!r}")
        doc = budget_document(doc, max_tokens)
        return reply(doc, document_text(doc))

    def find_symbol(self, who: Principal, name: str, limit: int, scope: Scope) -> CallToolResult:
        self.check_sources(who, scope.sources)
        svc = self.app.state.services
        found = find_definitions(svc.catalog, svc.fulltext, who, name, scope, self.app.state.stale_sources.current(),
                                 limit, candidates=SYMBOL_CANDIDATES)
        self.app.state.audit.record(who, "mcp.find_symbol", scope=scope, query_text=name)
        definitions = [Definition(document_id=d.document_id, source=d.source, path=d.path, symbol=d.symbol,
                                  line=d.line, start_line=d.start_line, end_line=d.end_line, language=d.language,
                                  url=d.url) for d in found]
        return reply(definitions, definitions_text(definitions))

    def find_references(self, who: Principal, symbol: str, limit: int, scope: Scope,
                        max_tokens: int | None) -> CallToolResult:
        self.check_sources(who, scope.sources)
        svc = self.app.state.services
        found = find_references(svc.catalog, svc.fulltext, who, symbol, scope,
                                self.app.state.stale_sources.current(), limit)
        self.app.state.audit.record(who, "mcp.find_references", scope=scope, query_text=symbol)
        refs, cut = references_within([reference_out(r) for r in found.references], max_tokens)
        truncated = found.truncated or cut
        return reply(ReferencesOut(references=refs, truncated=truncated), references_text(refs, truncated, max_tokens))

    def list_sources(self, who: Principal) -> CallToolResult:
        catalog = self.app.state.services.catalog
        out = []
        for row in self.readable_sources(who):
            counts = catalog.counts(row.name)
            out.append(SourceBrief(name=row.name, kind=row.kind, state=row.state, documents=counts["documents"],
                                   chunks=counts["chunks"], last_success_at=row.last_success_at.isoformat()
                                   if row.last_success_at else None))
        return reply(out, sources_text(out))

    def history(self, who: Principal, path: str, text: str, sources: list[str] | None, limit: int,
                max_tokens: int | None) -> CallToolResult:
        self.check_sources(who, sources or ())
        out = history_answer(self.app.state, who, path, text, sources or (), limit, max_tokens)
        return reply(out, history_text(out, path.strip().strip("/"), max_tokens or
                                       self.app.state.settings.context_token_budget))

    def related(self, who: Principal, item: str, limit: int) -> CallToolResult:
        out = related_answer(self.app.state, who, item, limit)
        return reply(out, related_text(out))

    def locate(self, who: Principal, query: str, limit: int, scope: Scope, budget: float,
               max_tokens: int | None) -> CallToolResult:
        self.check_sources(who, scope.sources)
        state = self.app.state
        out, found = locate_answer(state, who, query, scope, limit, budget, action="mcp.locate")
        return reply(out, locate_text(out, found.files, max_tokens or state.settings.context_token_budget))

    def search_resource(self, who: Principal, query: str) -> str:
        """Markdown for the `cairn://search/{query}` resource: the same items as /v1/context."""
        state = self.app.state
        text = unquote(query)[:MAX_QUERY_CHARS]
        hits = state.searcher.search(text, who, Scope(), limit=10).hits
        packed = budgeted(candidates(hits), state.settings.context_token_budget)
        state.audit.record(who, "mcp.resource", result_ids=[c.chunk_id for c in packed], query_id=str(uuid.uuid4()),
                           query_text=text)
        items = [to_item(c) for c in packed]
        return "\n\n".join(f"### {i.description}\n{i.content}" for i in items) or "No results."


def build_mcp(app: Any) -> MCPServer:
    """The MCP server for one app; tools reach the index through `app.state` at call time."""
    # The SDK calls logging.basicConfig; WARNING keeps Python's default when nothing configured logging yet.
    tools = CairnTools(app)
    # No subscriptions/listen (2026-07-28): the tool and template lists never change while a server runs,
    # and such a stream would stay open for ever on a stateless node (as GET would; see MCPGate).
    server = MCPServer("cairn", instructions=INSTRUCTIONS, version="0.1.0", log_level="WARNING",
                       tools=_tools(tools), cache_hints=CACHE_HINTS, subscriptions=False)
    _register_resources(server, tools)
    return server


def _tools(tools: CairnTools) -> list[Tool]:
    """The tools, each a CairnTool (forgiving arguments, short errors) with its title and read-only annotations."""
    def search(query: Annotated[str, Field(min_length=1, max_length=MAX_QUERY_CHARS)], ctx: Context,
               limit: Limit = 10, sources: Sources = None, path_prefix: PathPrefix = "",
               languages: Languages = None, kinds: Kinds = None,
               max_tokens: MaxTokens = None) -> Annotated[CallToolResult, SearchResponse]:
        """Hybrid (keyword + semantic) search over code, docs and tickets you may read. The text answer is
        the best hits' code as fenced blocks headed `source:path:start-end`, within max_tokens (6000 by
        default); the structured answer lists every hit with a snippet, plus a query_id."""
        with tools.call("search"):
            return tools.search(caller(ctx), query, limit, _scope(sources, path_prefix, languages, kinds), max_tokens)

    def grep(pattern: Annotated[str, Field(description="The text to find, or a regex with regex=true.")],
             ctx: Context, regex: bool = False, case_sensitive: bool = True, limit: Limit = 50,
             sources: Sources = None, path_prefix: PathPrefix = "", languages: Languages = None,
             kinds: Kinds = None, max_tokens: MaxTokens = None) -> Annotated[CallToolResult, GrepOut]:
        """Exact string (or regex with regex=true) search over indexed text, line by line. The pattern's
        longest literal word (whole identifier parts, at least 3 characters) narrows the search first."""
        with tools.call("grep"):
            return tools.grep(caller(ctx), pattern, regex, case_sensitive, limit,
                              _scope(sources, path_prefix, languages, kinds), max_tokens)

    def read_file(ctx: Context, document_id: str = "", source: str = "", path: str = "",
                  start_line: Annotated[int, Field(ge=1)] | None = None,
                  end_line: Annotated[int, Field(ge=1)] | None = None,
                  max_tokens: MaxTokens = None) -> Annotated[CallToolResult, DocumentOut]:
        """A document (by document_id, or source + path) or a 1-based inclusive line range of it.
        Without a range at most the first 2000 lines are returned; total_lines tells the length."""
        with tools.call("read_file"):
            return tools.read_file(caller(ctx), document_id, source, path, start_line, end_line, max_tokens)

    def find_symbol(name: Annotated[str, Field(min_length=1, max_length=300)], ctx: Context, limit: Limit = 20,
                    sources: Sources = None, languages: Languages = None,
                    kinds: Kinds = None) -> Annotated[CallToolResult, list[Definition]]:
        """Where a function, class or other symbol is defined, by name (`render_invoice`,
        `Catalog.get_chunks`)."""
        with tools.call("find_symbol"):
            return tools.find_symbol(caller(ctx), name, limit, _scope(sources, "", languages, kinds))

    def find_references(symbol: Annotated[str, Field(min_length=1, max_length=200, description="The name, e.g. "
                                                     "`render_invoice` or `Invoice.render`.")],
                        ctx: Context, limit: Limit = 50, sources: Sources = None, path_prefix: PathPrefix = "",
                        max_tokens: MaxTokens = None) -> Annotated[CallToolResult, ReferencesOut]:
        """Where a symbol is defined and used or called (`obj.method()` counts for `method`), from the
        syntax tree: never text in strings or comments. Definitions first, then uses by proximity (same
        file, same folder, files importing its module, the rest), each with its caller and line."""
        with tools.call("find_references"):
            return tools.find_references(caller(ctx), symbol, limit, _scope(sources, path_prefix, None, None),
                                         max_tokens)

    def list_sources(ctx: Context) -> Annotated[CallToolResult, list[SourceBrief]]:
        """The indexed sources you may read, with their state and size."""
        with tools.call("list_sources"):
            return tools.list_sources(caller(ctx))

    def history(ctx: Context, path: Annotated[str, Field(max_length=1000, description=(
                    "A file (`src/app.py`) or a folder (`src/`): the commits that changed it, with its diff in each."
                ))] = "",
                text: Annotated[str, Field(max_length=300, description=(
                    "Text to find in commit messages, e.g. a ticket key or an error message."))] = "",
                limit: Limit = 10, sources: Sources = None,
                max_tokens: MaxTokens = None) -> Annotated[CallToolResult, HistoryOut]:
        """Commits of the git sources you may read (up to the indexed commit) that touched `path` and/or whose
        message contains `text`, newest first: message, date, author, link, the tickets and merge requests they
        reference, and for a path its diff hunks (within max_tokens, 6000 by default). Give path, text or both."""
        with tools.call("history"):
            return tools.history(caller(ctx), path, text, sources, limit, max_tokens)

    def related(item: Annotated[str, Field(min_length=1, max_length=300, description=(
                    "A Jira key (`ABC-12`), a merge request (`group/project!3`), a commit sha, or a document id "
                    "(`source:path`) of a ticket, merge request, commit, page or file."))],
                ctx: Context, limit: Limit = 30) -> Annotated[CallToolResult, RelatedOut]:
        """What is linked to a ticket, merge request, commit, page or file: the ticket a key names, merge
        requests and pages mentioning it, commits referencing it, the files those commits changed, each with a
        link and why it is linked. Only items you may read."""
        with tools.call("related"):
            return tools.related(caller(ctx), item, limit)

    def locate(query: Annotated[str, Field(min_length=1, max_length=MAX_QUERY_CHARS, description=(
                   "The task or the bug report, as written (tracebacks, error messages, paths and identifiers help)."))],
               ctx: Context, limit: Limit = 10, sources: Sources = None, path_prefix: PathPrefix = "",
               languages: Languages = None,
               budget_seconds: Annotated[float, Field(gt=0, le=MAX_BUDGET_SECONDS, description=(
                   "Time budget in seconds (default 2); steps that would start later are skipped."))
               ] = DEFAULT_BUDGET_SECONDS,
               max_tokens: MaxTokens = None) -> Annotated[CallToolResult, LocateOut]:
        """The files a task or a bug report needs, best first, each with a line range and the evidence that
        chose it: hybrid search, then the traceback frames, paths and identifiers the text names (their
        definitions), the files changed by similar commits and by the commits of linked tickets, and the
        definitions the best hits call; no LLM, within a time budget. The text answer is each file's range
        as a fenced block headed `source:path:start-end` with a `Why:` line, within max_tokens (6000 by default)."""
        with tools.call("locate"):
            return tools.locate(caller(ctx), query, limit, _scope(sources, path_prefix, languages, None),
                                budget_seconds, max_tokens)

    return [CairnTool.from_function(fn, title=TITLES[fn.__name__],
                                    annotations=ToolAnnotations(title=TITLES[fn.__name__], read_only_hint=True,
                                                                open_world_hint=False))
            for fn in (search, grep, read_file, find_symbol, find_references, list_sources, history, related, locate)]


def _register_resources(server: MCPServer, tools: CairnTools) -> None:
    @server.resource("cairn://search/{query}", name="cairn-search", mime_type="text/markdown",
                     description="The code and docs most relevant to a question (fill in the query).",
                     security=ResourceSecurity(exempt_params={"query"}))
    def search_resource(query: str, ctx: Context) -> str:
        try:
            return tools.search_resource(caller(ctx), query)
        except _ANTICIPATED as exc:
            raise ResourceError(str(exc)) from exc


def session_manager(server: MCPServer) -> StreamableHTTPSessionManager:
    """A fresh session manager (one per app run: the SDK's manager runs once).

    Stateless JSON mode: every request carries its own token, so any API node can answer it.
    Host/Origin checks are off because every request must carry a bearer token, which a page
    reached through DNS rebinding does not have."""
    server.streamable_http_app(stateless_http=True, json_response=True, streamable_http_path=MCP_PATH,
                               transport_security=TransportSecuritySettings(enable_dns_rebinding_protection=False))
    return server.session_manager


class MCPGate:
    """ASGI endpoint at /mcp: resolves the bearer token, an API token or the IdP's JWT access token (401
    before the SDK sees anything, naming the resource metadata when OAuth is configured), puts the
    Principal on the request for the tools, then hands the request to the session manager."""

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: ASGIScope, receive: Receive, send: Send) -> None:
        header = next((v.decode("latin-1") for k, v in scope.get("headers", ()) if k == b"authorization"), "")
        kind, _, token = header.partition(" ")
        who, detail = None, "missing bearer token"
        if kind.lower() == "bearer" and token.strip():
            who, detail = await anyio.to_thread.run_sync(resolve_bearer, self.app, token)
        if who is None:
            value = challenge(self.app, "invalid_token" if token.strip() else "")
            await send_error(send, 401, "Unauthorized", detail, headers={"WWW-Authenticate": value})
            return
        if scope.get("method") == "GET":
            # Stateless server: no server-initiated stream to offer, and an SSE stream opened here
            # would never end (the Streamable HTTP spec allows 405 for GET).
            await send_error(send, 405, "Method Not Allowed", "this MCP server takes POST requests only",
                             headers={"Allow": "POST"})
            return
        scope.setdefault("state", {})["principal"] = who
        await self.app.state.mcp_manager.handle_request(scope, receive, send)


class MCPRoute(Route):
    """The /mcp route; like FastAPI's own routes it names itself in the scope (for per-route metrics)."""

    def __init__(self, app: Any) -> None:
        super().__init__(MCP_PATH, MCPGate(app), include_in_schema=False)

    def matches(self, scope: ASGIScope) -> tuple[Match, ASGIScope]:
        match, child_scope = super().matches(scope)
        if match != Match.NONE:
            child_scope["route"] = self
        return match, child_scope
