# EC Lab. `make run` starts the dashboard (and a worker) on http://localhost:8501;
# `make test` runs the test suite. Both create or reuse .venv from requirements.txt.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
REQ_HASH := $(shell sha1sum requirements.txt | cut -c1-12)
STAMP := $(VENV)/.installed-$(REQ_HASH)
PORT ?= 8501

.PHONY: venv run test test-fast bench compare clean-runs

$(STAMP): requirements.txt
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --disable-pip-version-check -r requirements.txt
	@$(PY) -c 'from engine.embed import numba_cache_dir, warm_umap; print(f"compiled UMAP once ({warm_umap():.0f} s), cached in {numba_cache_dir()}")'
	@rm -f $(VENV)/.installed-*
	@touch $(STAMP)

venv: $(STAMP)

run: venv
	$(PY) -m engine serve --port $(PORT)

test: venv
	$(PY) -m pytest

# unit tests only (no worker processes, no browser)
test-fast: venv
	$(PY) -m pytest -m "not slow and not browser"

compare: venv
	$(PY) -m engine compare --preset digits --out runs/compare-digits

bench: venv
	$(PY) bench/bench_compare.py
	$(PY) bench/bench_jobs.py
	$(PY) bench/bench_pages.py

clean-runs:
	rm -rf runs
