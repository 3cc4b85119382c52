"""Per-file caps, merging of nearby hits, packing under a token budget and snippets."""
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from retrieval.hits import Candidate
from retrieval.packing import cap_per_file, estimate_tokens, merge_nearby, pack, snippet, truncate


def lines(start: int, end: int, tag: str = "L") -> str:
    return "\n".join(f"{tag}{n}" for n in range(start, end + 1))


def cand(doc: str, start: int, end: int, score: float = 1.0, content: str | None = None, **kw) -> Candidate:
    return Candidate(chunk_id=f"{doc}#{start}-{end}", doc_id=doc, source="s", path=doc, start_line=start,
                     end_line=end, content=lines(start, end) if content is None else content, score=score, **kw)


@pytest.mark.parametrize("docs, cap, kept", [
    ("aaabbc", 1, "abc"),
    ("aaabbc", 2, "aabbc"),
    ("abacab", 2, "abacb"),
    ("", 3, ""),
])
def test_cap_per_file(docs, cap, kept):
    cands = [cand(d, i, i) for i, d in enumerate(docs, 1)]
    assert "".join(c.doc_id for c in cap_per_file(cands, cap)) == kept


def test_cap_per_file_rejects_zero():
    with pytest.raises(ValueError):
        cap_per_file([], 0)


def document(size: int, blank: set[int] = frozenset(), text: dict[int, str] | None = None) -> list[str]:
    """A stored document's lines: `L<n>`, blank (a few spaces) at `blank`, or as `text` says."""
    return [(text or {}).get(n, "   " if n in blank else f"L{n}") for n in range(1, size + 1)]


def reader(docs: dict[str, list[str]]):
    reads = []

    def read(doc_id: str, first: int, last: int) -> list[str] | None:
        reads.append((doc_id, first, last))
        lines = docs.get(doc_id)
        return None if lines is None or first < 1 or last > len(lines) else lines[first - 1:last]
    read.reads = reads
    return read


@pytest.mark.parametrize("spans, blank, merged", [
    pytest.param([(1, 10), (11, 20)], set(), [(1, 20)], id="touching"),
    pytest.param([(1, 10), (8, 15)], set(), [(1, 15)], id="overlapping"),
    pytest.param([(1, 20), (5, 10)], set(), [(1, 20)], id="contained"),
    pytest.param([(1, 10), (12, 20)], {11}, [(1, 20)], id="one-blank-line-apart"),
    pytest.param([(1, 10), (14, 20)], {11, 12, 13}, [(1, 20)], id="three-blank-lines-apart"),
    pytest.param([(1, 10), (15, 20)], {11, 12, 13, 14}, [(1, 10), (15, 20)], id="four-lines-apart"),
    pytest.param([(14, 20), (1, 10)], {11, 12, 13}, [(1, 20)], id="second-hit-above"),
    pytest.param([(1, 10), (12, 14)], set(), [(1, 10), (12, 14)], id="a-line-of-another-chunk-between"),
    pytest.param([(21, 30), (1, 10), (12, 20)], {11}, [(1, 30)], id="chain-out-of-order"),
    pytest.param([(1, 5), (3, 40), (6, 8), (41, 41)], set(), [(1, 41)], id="long-middle"),
])
def test_merge_nearby_spans(spans, blank, merged):
    docs = {"a.py": document(60, blank)}
    out = merge_nearby([cand("a.py", s, e, score=1.0 - i / 10) for i, (s, e) in enumerate(spans)], 10,
                       reader(docs))
    assert [(c.start_line, c.end_line) for c in out] == merged
    for c in out:
        assert c.content.split("\n") == docs["a.py"][c.start_line - 1:c.end_line]  # every line once, as stored


def test_lines_between_merged_hits_are_read_from_the_stored_document():
    """The blank lines between two hits come from the document as stored (here with trailing spaces),
    and nothing outside the two hits and the lines between them is read into the item."""
    docs = {"a.py": document(30, {11, 12}, {11: "", 12: "    "})}
    read = reader(docs)
    [item] = merge_nearby([cand("a.py", 1, 10), cand("a.py", 13, 20, score=0.5)], 5, read)
    assert item.content == lines(1, 10) + "\n\n    \n" + lines(13, 20)
    assert read.reads == [("a.py", 10, 13)]  # the lines between, and the hits' edge lines to check alignment


def test_hits_with_another_chunks_lines_between_stay_apart():
    """A non-blank line between two hits belongs to a chunk that did not come back from the filtered
    search (maybe one the caller may not read): the hits stay two items and its text is in neither."""
    docs = {"a.py": document(30, text={11: "SECRET = 'other chunk'"})}
    out = merge_nearby([cand("a.py", 1, 10), cand("a.py", 12, 20, score=0.5)], 5, reader(docs))
    assert [(c.start_line, c.end_line) for c in out] == [(1, 10), (12, 20)]
    assert not any("SECRET" in c.content for c in out)


@pytest.mark.parametrize("stored", [
    pytest.param(None, id="document-gone"),
    pytest.param(document(30, {11}, {10: "changed"}), id="document-does-not-match-the-chunks"),
    pytest.param(document(11, {11}), id="document-shorter"),
])
def test_hits_apart_merge_only_when_the_stored_lines_line_up(stored):
    docs = {"a.py": stored} if stored is not None else {}
    out = merge_nearby([cand("a.py", 1, 10), cand("a.py", 12, 20, score=0.5)], 5, reader(docs))
    assert len(out) == 2


def test_without_a_reader_only_touching_hits_merge():
    out = merge_nearby([cand("a.py", 1, 10), cand("a.py", 12, 20), cand("a.py", 21, 22)], 5)
    assert [(c.start_line, c.end_line) for c in out] == [(1, 10), (12, 22)]


def test_two_windows_of_one_long_line_stay_apart():
    """A line longer than a chunk is cut across chunks with the same line number: their texts differ."""
    first = cand("a.py", 7, 7, content="x = '" + "a" * 20)
    second = cand("a.py", 7, 7, score=0.5, content="b" * 20 + "'")
    assert len(merge_nearby([first, second], 5)) == 2


def test_merge_keeps_best_member_and_position():
    other = cand("b.py", 1, 3, score=0.9)
    high = cand("a.py", 11, 20, score=0.8, lexical_rank=None, dense_rank=2, symbol="high")
    low = cand("a.py", 1, 10, score=0.5, lexical_rank=7, dense_rank=None, symbol="low")
    out = merge_nearby([other, high, low], 10)
    assert [c.doc_id for c in out] == ["b.py", "a.py"]
    merged = out[1]
    assert (merged.chunk_id, merged.symbol, merged.score) == (high.chunk_id, "high", 0.8)
    assert (merged.lexical_rank, merged.dense_rank) == (7, 2)
    assert (merged.start_line, merged.end_line) == (1, 20)
    assert merged.chunk_ids == (high.chunk_id, low.chunk_id)
    assert other.chunk_ids == (other.chunk_id,)


def test_merged_hits_free_places_within_the_limit():
    ranked = [cand("a.py", 1, 10, 0.9), cand("a.py", 11, 20, 0.8), cand("b.py", 1, 5, 0.7), cand("c.py", 1, 5, 0.6),
              cand("d.py", 1, 5, 0.5)]
    assert [c.doc_id for c in merge_nearby(ranked, 3)] == ["a.py", "b.py", "c.py"]


def test_hits_after_the_limit_are_not_merged_in():
    """Only hits that are returned merge: a hit ranked after the last place does not grow an item."""
    ranked = [cand("a.py", 1, 10, 0.9), cand("b.py", 1, 5, 0.8), cand("a.py", 11, 20, 0.7)]
    out = merge_nearby(ranked, 2)
    assert [(c.doc_id, c.start_line, c.end_line) for c in out] == [("a.py", 1, 10), ("b.py", 1, 5)]


def test_a_hit_between_two_items_joins_them():
    ranked = [cand("a.py", 1, 10, 0.9), cand("b.py", 1, 5, 0.8), cand("a.py", 21, 30, 0.7), cand("a.py", 12, 19, 0.6)]
    out = merge_nearby(ranked, 5, reader({"a.py": document(40, {11, 20})}))
    assert [(c.doc_id, c.start_line, c.end_line) for c in out] == [("a.py", 1, 30), ("b.py", 1, 5)]
    assert out[0].content.split("\n")[10] == "   "


def test_merge_never_crosses_documents():
    out = merge_nearby([cand("a.py", 1, 10), cand("b.py", 11, 20)], 5)
    assert len(out) == 2


def test_the_budget_counts_a_merged_item_whole():
    """Packing sees the merged text, blank lines between the hits included."""
    docs = {"a.py": document(30, {11, 12, 13})}
    [item] = merge_nearby([cand("a.py", 1, 10), cand("a.py", 14, 20, score=0.5)], 5, reader(docs))
    cost = estimate_tokens(item.content)
    assert cost > estimate_tokens(lines(1, 10)) + estimate_tokens(lines(14, 20))
    assert pack([item], cost) == [item]
    assert pack([item, cand("b.py", 1, 1, score=0.1, content="y" * 8)], cost)[0] == item
    assert pack([item], cost - 1)[0].end_line < 20  # cut to fit, never overflowing


def sized(doc: str, score: float, tokens: int) -> Candidate:
    return cand(doc, 1, 1, score=score, content="x" * (tokens * 4))


def test_pack_greedy_by_score_skips_what_does_not_fit():
    cands = [sized("small", 0.1, 10), sized("big", 0.8, 60), sized("best", 0.9, 50)]
    assert [c.doc_id for c in pack(cands, 70)] == ["best", "small"]


def test_pack_truncates_only_the_first():
    first = cand("a.py", 10, 59, score=0.9, content=lines(10, 59, tag="line-"))
    out = pack([first, sized("b", 0.1, 5)], 20)
    assert out[0].start_line == 10 and out[0].end_line < 59
    assert out[0].content == lines(10, out[0].end_line, tag="line-")
    assert sum(estimate_tokens(c.content) for c in out) <= 20


def test_pack_cuts_a_single_long_line():
    out = pack([cand("a", 3, 3, content="y" * 1000)], 10)
    assert out[0].content == "y" * 40 and out[0].end_line == 3


@pytest.mark.parametrize("budget", [0, -5])
def test_pack_without_budget(budget):
    assert pack([sized("a", 1.0, 1)], budget) == []


def test_pack_with_another_counter():
    def words(text: str) -> int:
        return len(text.split())

    cands = [cand("a", 1, 1, 0.9, content="one two three"), cand("b", 1, 1, 0.5, content="four five")]
    assert [c.doc_id for c in pack(cands, 4, count_tokens=words)] == ["a"]


def test_truncate_none_when_nothing_fits():
    assert truncate(cand("a", 1, 1, content="abc"), 1, count_tokens=lambda t: 5) is None


@settings(max_examples=60, deadline=None)
@given(sizes=st.lists(st.tuples(st.integers(0, 400), st.floats(0, 1)), max_size=12), budget=st.integers(1, 500))
def test_pack_never_exceeds_budget(sizes, budget):
    cands = [cand(f"d{i}", 1, 1, score=s, content="\n".join(["abcdefg"] * n)) for i, (n, s) in enumerate(sizes)]
    out = pack(cands, budget)
    assert sum(estimate_tokens(c.content) for c in out) <= budget
    assert [c.score for c in out] == sorted((c.score for c in out), reverse=True)


CODE = "\n".join(
    ["import os"] + [f"x{i} = {i}" for i in range(20)]
    + ["def hash_token(token):", "    digest = hashToken(token)", "    return digest"]
    + [f"y{i} = {i}" for i in range(20)]
)


def test_snippet_picks_the_densest_window():
    out = snippet(CODE, ["hashtoken", "token", "digest"], max_lines=3)
    assert out.split("\n") == ["def hash_token(token):", "    digest = hashToken(token)", "    return digest"]


def test_snippet_without_hits_is_the_head():
    assert snippet(CODE, ["nothing"], max_lines=2) == "import os\nx0 = 0"


def test_snippet_of_short_content_is_the_content():
    assert snippet("a\nb", ["zzz"], max_lines=12) == "a\nb"
