"""Renders the Cairn chart's templates without helm (no helm binary here): the subset of Go templates and
Sprig functions the chart uses, evaluated for real — `if`/`range`/`with`/`define`/`include`, whitespace trim
markers, pipelines, `.Values` from values.yaml — so tests read the manifests helm would produce.

An action or function outside that subset raises `Unsupported`, so a template that grows past it fails its
test instead of being rendered wrongly."""
from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

ACTION = re.compile(r"{{(-?)(.*?)(-?)}}", re.DOTALL)
TOKEN = re.compile(r'"(?:\\.|[^"\\])*"|:=|[(),|]|[^\s(),|]+')


class Unsupported(ValueError):
    """A template construct this renderer does not implement."""


@dataclass
class Node:
    kind: str  # text, expr, if, range, with, define
    value: str = ""
    body: list[Node] = field(default_factory=list)
    orelse: list[Node] = field(default_factory=list)


def _lex(source: str) -> list[tuple[str, str]]:
    """Text and actions, with `{{-` / `-}}` trimming the whitespace next to them."""
    parts: list[tuple[str, str]] = []
    pos, trim_next = 0, False
    for match in ACTION.finditer(source):
        text = source[pos:match.start()]
        if trim_next:
            text = text.lstrip()
        if match.group(1):
            text = text.rstrip()
        parts.append(("text", text))
        parts.append(("action", match.group(2).strip()))
        pos, trim_next = match.end(), bool(match.group(3))
    tail = source[pos:]
    parts.append(("text", tail.lstrip() if trim_next else tail))
    return parts


def parse(source: str) -> list[Node]:
    root: list[Node] = []
    stack: list[tuple[Node | None, list[Node]]] = [(None, root)]
    for kind, value in _lex(source):
        target = stack[-1][1]
        if kind == "text":
            target.append(Node("text", value))
            continue
        word = value.split(None, 1)[0] if value else ""
        if value.startswith("/*"):
            continue
        if word in ("if", "range", "with", "define"):
            node = Node(word, value[len(word):].strip())
            target.append(node)
            stack.append((node, node.body))
        elif word == "else":
            node = stack[-1][0]
            if node is None or value != "else":
                raise Unsupported(f"{{{{ {value} }}}}")
            stack[-1] = (node, node.orelse)
        elif word == "end":
            stack.pop()
        else:
            target.append(Node("expr", value))
    if len(stack) != 1:
        raise Unsupported("unclosed block")
    return root


def _truthy(value: Any) -> bool:
    return value not in (None, False, 0, "") and not (isinstance(value, (dict, list)) and not value)


def to_yaml(value: Any) -> str:
    """Sprig's toYaml: block style, sorted keys, `{}` / `[]` / `null` for empty values, no trailing newline."""
    if value is None:
        return "null"
    return yaml.safe_dump(value, default_flow_style=False, sort_keys=True).removesuffix("\n").removesuffix("\n...")


class Renderer:
    """One chart: its values, its defines, its templates by name (`<chart>/templates/<file>`)."""

    def __init__(self, chart: Path, values: dict[str, Any] | None = None, release: str = "cairn") -> None:
        meta = yaml.safe_load((chart / "Chart.yaml").read_text(encoding="utf-8"))
        self.root = {"Values": values if values is not None else
                     yaml.safe_load((chart / "values.yaml").read_text(encoding="utf-8")),
                     "Release": {"Name": release, "Namespace": "default", "Service": "Helm"},
                     "Chart": {"Name": meta["name"], "Version": meta["version"], "AppVersion": meta["appVersion"]},
                     "Template": {"BasePath": f"{meta['name']}/templates"}}
        self.templates = {f"{meta['name']}/templates/{p.name}": parse(p.read_text(encoding="utf-8"))
                          for p in sorted((chart / "templates").iterdir())}
        self.defines: dict[str, list[Node]] = {}
        for nodes in self.templates.values():
            for node in nodes:
                if node.kind == "define":
                    self.defines[self._literal(node.value)] = node.body

    def render(self, name: str) -> str:
        return self._run(self.templates[f"{self.root['Chart']['Name']}/templates/{name}"], self.root, {})

    # -- blocks

    def _run(self, nodes: list[Node], dot: Any, env: dict[str, Any]) -> str:
        out = []
        for node in nodes:
            if node.kind == "text":
                out.append(node.value)
            elif node.kind == "expr":
                out.append(self._str(self._pipeline(node.value, dot, env)))
            elif node.kind == "if":
                chosen = node.body if _truthy(self._pipeline(node.value, dot, env)) else node.orelse
                out.append(self._run(chosen, dot, env))
            elif node.kind == "with":
                value = self._pipeline(node.value, dot, env)
                out.append(self._run(node.body, value, env) if _truthy(value) else self._run(node.orelse, dot, env))
            elif node.kind == "range":
                out.append(self._range(node, dot, env))
        return "".join(out)

    def _range(self, node: Node, dot: Any, env: dict[str, Any]) -> str:
        names, _, expr = node.value.rpartition(":=")
        items = self._pipeline(expr if names else node.value, dot, env) or {}
        pairs = sorted(items.items()) if isinstance(items, dict) else list(enumerate(items))
        keys = [n.strip() for n in names.split(",")] if names else []
        out = []
        for key, value in pairs:
            scope = dict(env)
            if len(keys) == 2:
                scope[keys[0]], scope[keys[1]] = key, value
            elif len(keys) == 1:
                scope[keys[0]] = value
            out.append(self._run(node.body, value, scope))
        return "".join(out)

    # -- expressions

    def _pipeline(self, source: str, dot: Any, env: dict[str, Any]) -> Any:
        tokens = TOKEN.findall(source)
        value, _ = self._commands(tokens, 0, dot, env)
        return value

    def _commands(self, tokens: list[str], pos: int, dot: Any, env: dict[str, Any]) -> tuple[Any, int]:
        """A pipeline up to a closing parenthesis or the end: `cmd | cmd ...`, each fed the one before."""
        value: Any = None
        piped = False
        while pos < len(tokens) and tokens[pos] != ")":
            words: list[Any] = []
            while pos < len(tokens) and tokens[pos] not in ("|", ")"):
                if tokens[pos] == "(":
                    inner, pos = self._commands(tokens, pos + 1, dot, env)
                    words.append(("value", inner))
                else:
                    words.append(("token", tokens[pos]))
                pos += 1
            value = self._command(words, dot, env, [value] if piped else [])
            piped = True
            if pos < len(tokens) and tokens[pos] == "|":
                pos += 1
        return value, pos

    def _command(self, words: list[tuple[str, Any]], dot: Any, env: dict[str, Any], piped: list[Any]) -> Any:
        kind, head = words[0]
        if kind == "token" and re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", head) and head not in ("true", "false"):
            args = [self._operand(w, dot, env) for w in words[1:]] + piped
            return self._call(head, args)
        if len(words) != 1 or piped:
            raise Unsupported(f"not a function: {head}")
        return self._operand(words[0], dot, env)

    def _operand(self, word: tuple[str, Any], dot: Any, env: dict[str, Any]) -> Any:
        kind, token = word
        if kind == "value":
            return token
        if token.startswith('"'):
            return self._literal(token)
        if re.fullmatch(r"-?\d+", token):
            return int(token)
        if token in ("true", "false"):
            return token == "true"
        if token == ".":
            return dot
        if token.startswith("$"):
            name, _, path = token.partition(".")
            base = self.root if name == "$" else env[name]
            return self._field(base, path)
        if token.startswith("."):
            return self._field(dot, token[1:])
        raise Unsupported(f"operand {token}")

    @staticmethod
    def _field(base: Any, path: str) -> Any:
        for part in filter(None, path.split(".")):
            base = base.get(part) if isinstance(base, dict) else None
        return base

    @staticmethod
    def _literal(token: str) -> str:
        return bytes(token.strip()[1:-1], "utf-8").decode("unicode_escape")

    @staticmethod
    def _str(value: Any) -> str:
        if value is None:
            return ""
        if isinstance(value, bool):
            return "true" if value else "false"
        return str(value)

    def _call(self, name: str, args: list[Any]) -> Any:
        if name == "include":
            body = self.defines.get(args[0]) or self.templates.get(args[0])
            if body is None:
                raise Unsupported(f"include of unknown template {args[0]!r}")
            return self._run(body, args[1], {})
        functions = {
            "nindent": lambda n, s: "\n" + "\n".join(" " * n + line if line else line for line in str(s).split("\n")),
            "indent": lambda n, s: "\n".join(" " * n + line for line in str(s).split("\n")),
            "toYaml": to_yaml,
            "quote": lambda s: '"' + self._str(s).replace("\\", "\\\\").replace('"', '\\"') + '"',
            "toString": self._str,
            "sha256sum": lambda s: hashlib.sha256(str(s).encode()).hexdigest(),
            "print": lambda *a: "".join(self._str(x) for x in a),
            "printf": lambda f, *a: re.sub(r"%[sd]", "{}", f).format(*a),
            "trunc": lambda n, s: str(s)[:n],
            "trimSuffix": lambda suffix, s: str(s).removesuffix(suffix),
            "default": lambda d, v=None: v if _truthy(v) else d,
            "dict": lambda *a: dict(zip(a[::2], a[1::2], strict=True)),
            "not": lambda v: not _truthy(v),
            "and": lambda *a: next((x for x in a if not _truthy(x)), a[-1]),
            "or": lambda *a: next((x for x in a if _truthy(x)), a[-1]),
            "eq": lambda a, b: a == b,
        }
        if name == "required":
            if not _truthy(args[1]):
                raise ValueError(args[0])
            return args[1]
        if name not in functions:
            raise Unsupported(f"function {name}")
        return functions[name](*args)
