"""The relevance floor's evidence: how the two engines' numbers combine, and editors' empty inputs."""
from __future__ import annotations

import pytest

from retrieval.relevance import DENSE_HIGH, DENSE_LOW, Evidence, dense_evidence, is_empty_input


@pytest.mark.parametrize("lexical, dense, lexical_alone, relevance", [
    (0.0, 0.0, True, 0.0),
    (1.0, 0.0, True, 1.0),  # an identifier only BM25 knows is enough
    (0.0, 0.8, True, 0.8),
    (0.2, 0.2, True, 0.25),  # weak evidence from both stays weak
    (0.9, 0.9, True, 1.0),
    (1.0, 0.0, False, 0.25),  # plain words found somewhere are not enough alone
    (0.0, 0.8, False, 0.8),  # a paraphrase only the model gets is
    (0.8, 0.3, False, 0.5),
])
def test_relevance_combines_the_engines_by_the_shape_of_the_query(lexical, dense, lexical_alone, relevance):
    assert Evidence(lexical, dense, lexical_alone).relevance == pytest.approx(relevance)


def test_dense_evidence_maps_the_cosine_band_to_zero_one():
    assert dense_evidence(DENSE_LOW - 0.1) == 0.0 and dense_evidence(DENSE_HIGH + 0.1) == 1.0
    assert dense_evidence((DENSE_LOW + DENSE_HIGH) / 2) == pytest.approx(0.5)


@pytest.mark.parametrize("text, empty", [
    ("null", True), (" NULL ", True), ("undefined", True), ("[object Object]", True), ("None", True),
    ("null pointer in send", False), ("nullable", False), ("keep_alive_seconds", False),
])
def test_editor_placeholders_count_as_empty(text, empty):
    assert is_empty_input(text) is empty
