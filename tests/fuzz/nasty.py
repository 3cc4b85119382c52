"""Hand-made hostile inputs shared by the fuzz tests: each one once broke (or could break) a parser."""
from __future__ import annotations

MB = 1_000_000


def deep_adf(depth: int, kind: str = "blockquote") -> dict:
    root: dict = {"type": "doc", "content": []}
    node = root
    for i in range(depth):
        child = {"type": kind, "content": [{"type": "text", "text": f"level {i}"}]}
        node["content"].append(child)
        node = child
    return root


CODE = {
    "10 MB single line of text": ("big.txt", "a" * 10 * MB),
    "10 MB single Python expression": ("expr.py", "x = " + "1+" * (5 * MB) + "1\n"),
    "1 MB string literal": ("lit.py", 'x = "' + "a" * MB + '"\n'),
    "100k nested parentheses": ("paren.py", "x = " + "(" * 100_000 + ")" * 100_000 + "\n"),
    "500 nested Python defs": ("defs.py", "".join("    " * i + f"def f{i}():\n" for i in range(500)) + " " * 2000 + "pass\n"),
    "100k nested braces (JS)": ("braces.js", "{" * 100_000 + "}" * 100_000),
    "20k nested functions (JS)": ("fns.js", "function f(){" * 20_000 + "}" * 20_000),
    "100k nested blocks (C)": ("deep.c", "int f(){" + "{" * 100_000 + "}" * 100_000 + "}"),
    "NUL bytes in code": ("nul.py", "x = 1\x00\x00\ny = 2\n" * 1000),
    "lone surrogates": ("sur.py", 'x = "\udcff\ud800"\n' * 1000),
    "replacement characters (bad UTF-8 decoded)": ("bad.go", "package x\n" + "\ufffd" * 50_000),
    "mixed encodings decoded as UTF-8": ("mix.java", ("café ".encode("latin-1") + "naïve ".encode()).decode("utf-8", "replace") * 20_000),
    "500k short lines": ("lines.py", "x=1\n" * 500_000),
    "markdown heading of 40k chars": ("h.md", "# " + " a" * 20_000 + "\n"),
    "markdown heading of tabs and spaces": ("t.md", "# " + " \t" * 20_000 + "x\n"),
    "20k fence openers": ("f.md", "```" * 20_000),
    "rst underline storm": ("u.rst", "===\n" * 20_000),
    "CR-only line ends": ("cr.py", "def f():\r    return 1\r" * 20_000),
    "only whitespace": ("ws.py", " \t\n" * 100_000),
}

WIKI = {
    "NUL placeholder collision": "a \x0099\x00 b",
    "unclosed code blocks": "{code}" + "x" * 20_000 + "{code:a}" * 20_000,
    "unclosed quotes": "{quote}" * 20_001 + "x",
    "unclosed monospace": "{{" * 50_000,
    "unclosed links": "[" * 50_000 + "|",
    "link openers": "[a|" * 50_000,
    "mention openers": "[~" * 50_000,
    "bare link openers": "[http:" * 50_000,
    "panel openers": "{panel:" * 50_000,
    "emphasis openers": " -a" * 100_000,
    "image openers": "!a|" * 50_000,
    "10 MB line": "a" * 10 * MB,
    "pipes": "|" * 100_000,
}

STORAGE = {
    "100k unclosed divs": "<div>" * 100_000,
    "3k nested lists": "<ul><li>" * 3000,
    "3k nested tables": "<table><tr><td>" * 3000,
    "3k nested macros": '<ac:structured-macro ac:name="info"><ac:rich-text-body>' * 3000,
    "100k unclosed tags": "<a " * 100_000,
    "100k unclosed comments": "<!--" * 100_000,
    "100k unclosed CDATA": "<![CDATA[" * 100_000,
    "100k unclosed attributes": '<a b="' * 100_000,
    "unclosed script": "<script>" + "<a " * 100_000,
    "tags in attributes": '<a b="<">' * 100_000,
    "10 MB of text": "a " * 5 * MB,
    "NUL bytes": "<p>\x00</p>" * 10_000,
}

ADF = {
    "5000 nested blockquotes": deep_adf(5000),
    "5000 nested panels": deep_adf(5000, "panel"),
    "5000 nested unknown inline nodes": {"type": "paragraph", "content": [deep_adf(5000, "mystery")]},
    "5000 nested lists": deep_adf(5000, "bulletList"),
    "heading level not a number": {"type": "heading", "attrs": {"level": "x"}},
    "heading level infinite": {"type": "heading", "attrs": {"level": 1e400}},
    "attrs a list": {"type": "heading", "attrs": [1]},
    "mark attrs a list": {"type": "paragraph", "content": [
        {"type": "text", "text": "a", "marks": [{"type": "link", "attrs": [1]}]}]},
    "marks a string": {"type": "paragraph", "content": [{"type": "text", "text": "a", "marks": "strong"}]},
    "list order not a number": {"type": "orderedList", "attrs": {"order": "zz"}, "content": []},
    "content a dict": {"type": "doc", "content": {"type": "text"}},
    "date out of range": {"type": "date", "attrs": {"timestamp": "9" * 40}},
}
