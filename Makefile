# The two set-up commands for a fresh machine are `make run` and `make test` (see README).
SHELL := /bin/bash
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-stamp

.PHONY: install system-deps compile pure run test check lint format typecheck contracts protos \
        protos-check buf-lint dockerfile-lint bench-engine clean

$(STAMP): pyproject.toml constraints.txt
	@test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -c constraints.txt -e '.[dev]'
	@touch $(STAMP)

install: system-deps $(STAMP)

system-deps:
	@bash tools/install_system_deps.sh

# The hot path compiled with mypyc (tools/hot_path.py, decision 0021); a no-op when the
# extensions match their sources. `make pure` removes them.
compile: install
	$(PY) -m tools.hot_path

pure:
	$(PY) -m tools.hot_path --clean

run: install compile
	$(VENV)/bin/spotmatch demo

test: install check compile
	$(PY) -m pytest

check: lint typecheck contracts protos-check buf-lint dockerfile-lint

lint:
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

format:
	$(VENV)/bin/ruff format .
	$(VENV)/bin/ruff check --fix .

typecheck:
	$(VENV)/bin/mypy

contracts:
	$(VENV)/bin/lint-imports

protos:
	PYTHON=$(PY) bash tools/gen_protos.sh

protos-check:
	PYTHON=$(PY) bash tools/check_protos_fresh.sh

buf-lint:
	bash tools/buf_lint.sh

dockerfile-lint:
	$(VENV)/bin/hadolint Dockerfile

bench-engine: install compile
	$(VENV)/bin/spotmatch bench engine --json

clean:
	-$(PY) -m tools.hot_path --clean
	rm -rf $(VENV) .tools build *.egg-info bench-results .mypy_cache .ruff_cache .pytest_cache
