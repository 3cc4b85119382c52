"""MCP tool arguments as models send them: common slips coerced, the rest refused in one line saying what to send."""
from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from mcp.server.mcpserver.exceptions import ToolError
from mcp.server.mcpserver.tools.base import Tool
from pydantic import ValidationError

from api.continue_provider import as_list

# What models write for "no value" in an optional argument; dropped so the argument's default applies.
_BLANK = frozenset({"", "null", "none", "undefined"})
_SHOWN_CHARS = 40  # how much of a refused value the error repeats


class CairnTool(Tool):
    """A tool that forgives the argument slips models make (a string where a list belongs, "null" for an
    optional argument) and answers other bad arguments with a short tool error (isError) naming each
    argument and what to send, instead of pydantic's report and its documentation URLs."""

    async def run(self, arguments: dict[str, Any], context: Any, convert_result: bool = False) -> Any:
        arguments = coerce(self.name, self.parameters, arguments)
        try:
            self.fn_metadata.validate_arguments(arguments)
        except ValidationError as exc:
            raise ToolError(explain(self.name, self.parameters, exc)) from exc
        return await super().run(arguments, context, convert_result=convert_result)


def coerce(tool: str, schema: Mapping[str, Any], arguments: Mapping[str, Any]) -> dict[str, Any]:
    """The arguments with blanks of optional arguments dropped and lone strings made lists where the schema
    wants a list (`"pytest"` → `["pytest"]`, `"eng, web"` → `["eng", "web"]`); unknown names are refused."""
    properties: Mapping[str, Any] = schema.get("properties", {})
    required = set(schema.get("required", ()))
    unknown = sorted(set(arguments) - set(properties))
    if unknown:
        raise ToolError(f"{tool} takes no argument {', '.join(map(repr, unknown))}; it takes: "
                        f"{', '.join(properties) or 'no arguments'}.")
    out: dict[str, Any] = {}
    for name, value in arguments.items():
        if name in required or not _blank(value):
            types = _types(properties[name])
            listed = isinstance(value, str) and "array" in types and "string" not in types
            out[name] = _as_list(value) if listed else value
    return out


def explain(tool: str, schema: Mapping[str, Any], exc: ValidationError) -> str:
    """One line per refused argument: its name, what it must be, and (shortened) what was sent."""
    properties: Mapping[str, Any] = schema.get("properties", {})
    problems: dict[str, str] = {}
    for error in exc.errors():
        name = str(error["loc"][0]) if error["loc"] else ""
        want = describe(properties.get(name, {}))
        if error["type"] == "missing":
            problems.setdefault(name, f"`{name}` is required: send {want}")
        else:
            problems.setdefault(name, f"`{name}` must be {want} (got {_shown(error.get('input'))})")
    return f"Invalid arguments for {tool}: {'; '.join(problems.values())}."


def describe(prop: Mapping[str, Any]) -> str:
    """What a JSON-schema property accepts, in words a model can act on."""
    arms = [arm for arm in prop.get("anyOf", [prop]) if arm.get("type") != "null"]
    return " or ".join(_describe_one(arm) for arm in arms) or "a value"


def _describe_one(prop: Mapping[str, Any]) -> str:
    kind = prop.get("type")
    if "enum" in prop:
        return "one of " + ", ".join(json.dumps(v) for v in prop["enum"])
    if kind == "integer":
        low, high = prop.get("minimum"), prop.get("maximum")
        if low is not None and high is not None:
            return f"an integer from {low} to {high}"
        return f"an integer of at least {low}" if low is not None else "an integer"
    if kind == "string":
        low, high = prop.get("minLength"), prop.get("maxLength")
        return f"a string of {low or 0} to {high} characters" if high else "a non-empty string" if low else "a string"
    if kind == "boolean":
        return "true or false"
    if kind == "array":
        most = f" (at most {prop['maxItems']})" if "maxItems" in prop else ""
        return f'a list of strings such as ["name"]{most}'
    return f"a {kind}" if kind else "a value"


def _types(prop: Mapping[str, Any]) -> set[str]:
    return {arm.get("type", "") for arm in prop.get("anyOf", [prop])}


def _blank(value: Any) -> bool:
    return value is None or (isinstance(value, str) and value.strip().lower() in _BLANK)


def _as_list(value: str) -> Any:
    """A JSON array sent as text stays that array; anything else is a comma-separated list."""
    if value.lstrip().startswith("["):
        try:
            return json.loads(value)
        except ValueError:
            return value  # left for validation to refuse with its message
    return as_list(value)


def _shown(value: Any) -> str:
    text = json.dumps(value, default=str)
    return text if len(text) <= _SHOWN_CHARS else text[:_SHOWN_CHARS] + "…"
