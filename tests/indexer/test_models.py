"""The vocabulary's own checks (indexer/models.py)."""
from __future__ import annotations

import pytest

from indexer.models import KINDS, Access, Document


@pytest.mark.parametrize("kind", KINDS)
def test_every_kind_of_the_vocabulary_makes_a_document(kind: str) -> None:
    doc = Document(id="s:a", source="s", path="a", content="x", version="1", access=Access.of("public"), kind=kind)
    assert doc.kind == kind


@pytest.mark.parametrize("kind", ["ticket", "Issue", ""])
def test_a_kind_outside_the_vocabulary_is_refused_loudly(kind: str) -> None:
    # Plain search filters by kind inside the engines: such a document would be indexed and never found.
    with pytest.raises(ValueError, match="unknown kind"):
        Document(id="s:a", source="s", path="a", content="x", version="1", access=Access.of("public"), kind=kind)
