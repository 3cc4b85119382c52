"""Property-based fuzzing of the published OpenAPI schema against a live server: never a 5xx."""
from __future__ import annotations

import pytest
import schemathesis
from api_harness import auth, serve, token
from hypothesis import HealthCheck, Phase, given, settings
from schemathesis.generation.modes import GenerationMode

from api.app import create_app

EXAMPLES = 100  # per generation mode, over all operations: bounded to well under a minute


@pytest.fixture(scope="module")
def url(corpus):
    with serve(create_app(corpus.settings, services=corpus)) as base:
        yield base


@pytest.mark.parametrize("mode", [GenerationMode.POSITIVE, GenerationMode.NEGATIVE])
def test_fuzzed_requests_never_get_a_server_error(url, corpus, mode):
    schema = schemathesis.openapi.from_url(url + "/openapi.json")
    # An admin token reaches every route's body; the corpus is this module's own.
    headers = auth(token(corpus, user="fuzzer", groups=["eng"], admin=True))
    seen: dict[int, int] = {}

    @settings(max_examples=EXAMPLES, deadline=None, database=None, phases=[Phase.generate],
              suppress_health_check=list(HealthCheck))
    @given(case=schema.as_strategy(generation_mode=mode, headers=headers))
    def check(case) -> None:
        response = case.call(base_url=url, headers=headers, timeout=60)
        seen[response.status_code] = seen.get(response.status_code, 0) + 1
        assert response.status_code < 500, f"{case.method} {case.formatted_path}: {response.status_code} " \
                                           f"{response.content[:300]!r}"

    check()
    assert sum(seen.values()) >= EXAMPLES // 2  # the run really exercised the API
