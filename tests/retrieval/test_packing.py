"""Per-file caps, merging of touching chunks, packing under a token budget and snippets."""
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from retrieval.hits import Candidate
from retrieval.packing import cap_per_file, estimate_tokens, merge_adjacent, pack, snippet, truncate


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


@pytest.mark.parametrize("spans, merged", [
    pytest.param([(1, 10), (11, 20)], [(1, 20)], id="touching"),
    pytest.param([(1, 10), (8, 15)], [(1, 15)], id="overlapping"),
    pytest.param([(1, 20), (5, 10)], [(1, 20)], id="contained"),
    pytest.param([(1, 10), (12, 20)], [(1, 10), (12, 20)], id="gap"),
    pytest.param([(21, 30), (1, 10), (11, 20)], [(1, 30)], id="chain-out-of-order"),
    pytest.param([(1, 5), (3, 40), (6, 8), (41, 41)], [(1, 41)], id="long-middle"),
])
def test_merge_adjacent_spans(spans, merged):
    out = merge_adjacent([cand("a.py", s, e, score=1.0 - i / 10) for i, (s, e) in enumerate(spans)])
    assert [(c.start_line, c.end_line) for c in out] == merged
    for c in out:
        assert c.content == lines(c.start_line, c.end_line)  # every line once, in order


def test_merge_keeps_best_member_and_position():
    other = cand("b.py", 1, 3, score=0.9)
    low = cand("a.py", 1, 10, score=0.5, lexical_rank=7, dense_rank=None, symbol="low")
    high = cand("a.py", 11, 20, score=0.8, lexical_rank=None, dense_rank=2, symbol="high")
    out = merge_adjacent([other, high, low])
    assert [c.doc_id for c in out] == ["b.py", "a.py"]
    merged = out[1]
    assert (merged.chunk_id, merged.symbol, merged.score) == (high.chunk_id, "high", 0.8)
    assert (merged.lexical_rank, merged.dense_rank) == (7, 2)
    assert (merged.start_line, merged.end_line) == (1, 20)


def test_merge_never_crosses_documents():
    out = merge_adjacent([cand("a.py", 1, 10), cand("b.py", 11, 20)])
    assert len(out) == 2


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
