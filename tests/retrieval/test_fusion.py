"""Reciprocal rank fusion against hand-computed scores."""
import pytest

from retrieval.fusion import reciprocal_rank_fusion

# Each case: lists, k, weights, expected [(id, score)] worked out by hand (rank r earns w / (k + r)).
CASES = [
    pytest.param([["a", "b", "c"], ["b", "d", "a"]], 60, None,
                 [("b", 1 / 62 + 1 / 61), ("a", 1 / 61 + 1 / 63), ("d", 1 / 62), ("c", 1 / 63)], id="two-lists"),
    pytest.param([["a", "b", "c"], ["b", "d", "a"]], 60, [2.0, 1.0],
                 [("a", 2 / 61 + 1 / 63), ("b", 2 / 62 + 1 / 61), ("c", 2 / 63), ("d", 1 / 62)], id="weighted"),
    pytest.param([["x", "y"], ["y", "x"]], 0, None, [("x", 1.5), ("y", 1.5)], id="tie-keeps-first-seen"),
    pytest.param([["a", "a", "b"]], 1, None, [("a", 1 / 2), ("b", 1 / 4)], id="repeat-counts-once"),
    pytest.param([["a"], []], 60, None, [("a", 1 / 61)], id="empty-list"),
    pytest.param([], 60, None, [], id="no-lists"),
    pytest.param([["a", "b"], ["c"]], 60, [1.0, 0.0], [("a", 1 / 61), ("b", 1 / 62), ("c", 0.0)], id="zero-weight"),
]


@pytest.mark.parametrize("lists, k, weights, expected", CASES)
def test_fused_scores(lists, k, weights, expected):
    got = reciprocal_rank_fusion(lists, k=k, weights=weights)
    assert [i for i, _ in got] == [i for i, _ in expected]
    assert [s for _, s in got] == pytest.approx([s for _, s in expected])


def test_accepts_tuples_and_generators_of_ids():
    assert reciprocal_rank_fusion((("a",), tuple("ba")))[0][0] == "a"


@pytest.mark.parametrize("kwargs", [{"k": -1}, {"weights": [1.0]}, {"weights": [1.0, -1.0]}])
def test_bad_arguments(kwargs):
    with pytest.raises(ValueError):
        reciprocal_rank_fusion([["a"], ["b"]], **kwargs)
