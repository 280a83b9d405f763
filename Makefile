# logcanary: `make demo` and `make test` are all a newcomer needs.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp
EVAL ?= ../shared/eval

.PHONY: install browser prometheus test lint typecheck unit demo schemas bench score-grouping score-canary clean

$(STAMP): pyproject.toml
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "logcanary needs Python >= 3.11 (set PYTHON=...)")'
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

install: $(STAMP)

lint: $(STAMP)
	$(BIN)/ruff check service tests bench
	$(BIN)/ruff format --check service tests bench

typecheck: $(STAMP)
	$(BIN)/mypy

# tests/test_ui.py drives a real headless Chromium: installed here when missing and we are root (as in CI);
# otherwise those tests skip, saying so.
# Debian's Chromium for the UI tests. A failed install does not stop `make test`: the UI tests then
# skip, saying why, in pytest's summary.
browser:
	@if command -v chromium >/dev/null; then :; \
	elif [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
		(apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null) \
			|| echo "could not install chromium: tests/test_ui.py will skip"; \
	else echo "chromium not installed (needs root): tests/test_ui.py will skip"; fi

# Debian's Prometheus for tests/test_prometheus.py (the Flagger MetricTemplate example, evaluated for real).
# A failed install does not stop `make test`: that test then skips, saying why.
prometheus:
	@if command -v prometheus >/dev/null || [ -x /usr/bin/prometheus ]; then :; \
	elif [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
		(apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends prometheus >/dev/null) \
			|| echo "could not install prometheus: tests/test_prometheus.py will skip"; \
	else echo "prometheus not installed (needs root): tests/test_prometheus.py will skip"; fi

# pytest exits 5 when it collects no test: that is a failure here, never a silent pass.
unit: $(STAMP) browser prometheus
	$(BIN)/python -m pytest

test: lint typecheck unit

demo: $(STAMP)
	$(BIN)/logcanary demo

schemas: $(STAMP)
	$(BIN)/logcanary schemas --out schemas

bench: $(STAMP)
	$(BIN)/python bench/bench_engine.py
	$(BIN)/python bench/bench_analysis.py
	$(BIN)/python bench/bench_kafka.py
	$(BIN)/python bench/bench_memory.py

score-grouping: $(STAMP)
	$(BIN)/python $(EVAL)/grouping.py --cmd "$(BIN)/logcanary" $(EVAL)/data/loghub2k/*.csv

score-canary: $(STAMP)
	rm -rf bench/out/scenarios
	$(BIN)/python $(EVAL)/scenarios.py --seeds 5 $(EVAL)/data/loghub2k/*.csv --out bench/out/scenarios > /dev/null
	$(BIN)/python $(EVAL)/score_canary.py --cmd "$(BIN)/logcanary" bench/out/scenarios

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache .hypothesis bench/out
