"""Occurrences of a name from the syntax tree: definitions and uses with their callers, never strings or comments."""
from __future__ import annotations

import pytest

from indexer.chunking import occurrences

PYTHON = '''"""Billing. def render_total(x): in a docstring is no definition."""
RATE = 3


def render_total(order):
    """render_total() sums the lines."""
    return sum(order.lines) * RATE  # not render_total() either


class Invoice:
    def render(self):
        text = "render_total(self) in a string"
        return render_total(self.order) + f"{render_total(self.extra)}"

    def again(self, printer):
        return printer.render_total()
'''

JAVASCRIPT = '''// renderTotal is exported for the page
export function renderTotal(items) {
  return items.reduce((a, b) => a + b, 0);
}

export const LIMIT = 10;

export class Cart {
  show() { return renderTotal(this.items) + " renderTotal()"; }
  draw(view) { return view.renderTotal(LIMIT); }
}
'''

GO = '''package billing

// Total is documented here: Total()
var Rate = 2

func Total(xs []int) int { return len(xs) * Rate }

func (i *Invoice) Sum() int { s := "Total(nothing)"; _ = s; return Total(i.items) + i.calc.Total() }
'''


def table(content: str, language: str, path: str, name: str) -> list[tuple[int, str, bool]]:
    found = occurrences(content, language, path, name)
    assert found is not None
    return [(o.line, o.symbol, o.definition) for o in found]


@pytest.mark.parametrize("content, language, path, name, expected", [
    (PYTHON, "python", "billing/invoice.py", "render_total",
     [(5, "invoice.render_total", True), (13, "invoice.Invoice.render", False),
      (16, "invoice.Invoice.again", False)]),
    (PYTHON, "python", "billing/invoice.py", "RATE", [(2, "invoice.RATE", True), (7, "invoice.render_total", False)]),
    (JAVASCRIPT, "javascript", "web/total.js", "renderTotal",
     [(2, "total.renderTotal", True), (9, "total.Cart.show", False), (10, "total.Cart.draw", False)]),
    (JAVASCRIPT, "javascript", "web/total.js", "LIMIT", [(6, "total.LIMIT", True), (10, "total.Cart.draw", False)]),
    (GO, "go", "billing/total.go", "Total",
     [(6, "billing.Total", True), (8, "billing.Invoice.Sum", False)]),
    (GO, "go", "billing/total.go", "Rate", [(4, "billing.Rate", True), (6, "billing.Total", False)]),
])
def test_definitions_and_uses_come_from_the_syntax_tree(content, language, path, name, expected):
    assert table(content, language, path, name) == expected


def test_a_definition_spans_its_node_and_a_use_carries_its_line():
    found = occurrences(PYTHON, "python", "billing/invoice.py", "render_total")
    assert found is not None
    definition, use = found[0], found[1]
    assert (definition.start_line, definition.end_line, definition.context) == (5, 7, "def render_total(order):")
    assert (use.start_line, use.end_line) == (13, 13)
    assert use.context == '        return render_total(self.order) + f"{render_total(self.extra)}"'


def test_text_that_only_looks_like_code_is_no_occurrence():
    fake = 'TEMPLATE = """\ndef fake_name(x):\n    return x\n"""\n# def fake_name(y): in a comment\n'
    assert table(fake, "python", "notes.py", "fake_name") == []
    assert occurrences("fake_name is prose", "markdown", "README.md", "fake_name") is None
