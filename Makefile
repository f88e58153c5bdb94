# Everything runs from the project's own virtualenv; `make test` installs what it needs.
SHELL := /bin/bash
PYTHON ?= python3.11
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: install lock tools lint fmt examples jaeger asyncapi test test-fast test-unit test-integration test-cluster test-image test-testcontainers test-k8s soak image kafka-image image-archive demo check-deploy chart-docs bench bench-quick profile kafka-start kafka-stop kafka-cluster-up kafka-cluster-down registry-start registry-stop k8s-up k8s-down clean

install: $(STAMP)

# Every dependency comes from a lock file, with its hash: the versions the tests passed with.
# The package itself goes in editable, built from the locked build tools, resolving nothing.
LOCKS := requirements/dev.lock requirements/build.lock
# The native modules (bridge/**/*.c) are compiled by the editable install, so a change to
# one reinstalls.
NATIVE := $(wildcard bridge/*.c bridge/*/*.c)
$(STAMP): pyproject.toml simulator/pyproject.toml $(LOCKS) $(NATIVE)
	@command -v $(PYTHON) >/dev/null || { echo "need $(PYTHON) on PATH" >&2; exit 1; }
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	@echo "install: the locked dependencies into $(VENV) (about a minute the first time)"
	set -o pipefail; $(BIN)/pip install --progress-bar off --require-hashes \
		-r requirements/dev.lock -r requirements/build.lock \
		| { grep --line-buffered -E '^(Collecting|Successfully installed)' || true; } | cut -c1-100
	$(BIN)/pip install -q --no-deps --no-build-isolation -e . -e ./simulator
	touch $(STAMP)

# Re-resolve within pyproject.toml's ranges and rewrite the lock files: runtime.lock (what the
# image installs), dev.lock (tests, lint, bench) and build.lock (setuptools for the wheel).
# The runtime lock is constrained by the dev lock, so both pin the same versions.
UV_COMPILE := $(BIN)/uv pip compile --python-version 3.11 --generate-hashes --quiet
lock: install
	$(UV_COMPILE) pyproject.toml --extra dev --extra bench --upgrade -o requirements/dev.lock
	$(UV_COMPILE) pyproject.toml --constraint requirements/dev.lock -o requirements/runtime.lock
	$(UV_COMPILE) requirements/build.in --upgrade -o requirements/build.lock
	$(UV_COMPILE) requirements/deploy-tools.in --constraint requirements/dev.lock -o requirements/deploy-tools.lock

# Every shell script of the repository (by its first line).
SHELL_SCRIPTS = $(shell grep -lsE '^\#!(/usr/bin/env (ba)?sh|/bin/(ba)?sh)' scripts/* .ci/run kafka/image/entrypoint) scripts/lib/*.sh

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy
	$(BIN)/shellcheck -x $(SHELL_SCRIPTS)
	$(BIN)/passentry-bridge config lint examples/bridge.yaml

fmt: install
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

# The pinned helm, hadolint, promtool/prometheus and kubernetes-validate the deploy tests and
# the Prometheus end-to-end test use; quick when they are already there.
tools: install
	scripts/install-deploy-tools

# The example consumers of examples/ (Go, Java, and the schema-evolution test's Java v2)
# into .local/examples/; the consumer tests build them too.
examples:
	scripts/build-examples

# Jaeger (tools/jaeger/go.mod) into .local/bin/jaeger, for the tracing test; cached, quick
# when built already.
jaeger:
	scripts/build-jaeger

# Regenerate schemas/asyncapi.yaml from the default configuration and validate it with the
# official AsyncAPI CLI (installed from asyncapi/package-lock.json into .local/asyncapi).
asyncapi: install
	$(BIN)/passentry-bridge schema asyncapi > schemas/asyncapi.yaml
	scripts/asyncapi-validate

# All tests. Integration tests start the local Kafka broker themselves (scripts/kafka-local)
# unless KAFKA_BOOTSTRAP_SERVERS points at one; tests/k8s start the local Kubernetes cluster
# (scripts/k8s-local, as root) and build the image. They, tests/integration/secure and
# tests/cluster (the three-node cluster, scripts/kafka-cluster) mostly wait, so they run in a
# lane beside the rest (scripts/test-all).
test: install tools
	@PYTEST=$(BIN)/pytest scripts/test-all --durations=15

test-unit: install
	$(BIN)/pytest tests/unit

# The quick loop (under two minutes): unit tests and the deploy checks' chart and alert
# rendering, no broker. (A bare `pytest` runs tests/unit.)
test-fast: install tools
	$(BIN)/pytest tests/unit tests/deploy

test-integration: install
	$(BIN)/pytest tests/integration

# Only tests/cluster: broker faults on the three-node cluster (scripts/kafka-cluster), each
# under live traffic with two replicas, checked exactly once (make test runs it too).
test-cluster: install
	$(BIN)/pytest tests/cluster

# The failover and exactly-once suites SOAK_RUNS times (10) beside a CPU hog on every core;
# prints each run's outcome and the slowest takeover (scripts/soak).
soak: install
	PYTEST=$(BIN)/pytest scripts/soak $(SOAK_RUNS)

# Build the image and run it: CLI, uid, read-only root, a real run, SIGTERM, labels, the chart.
test-image: install tools
	$(BIN)/pytest tests/image

# A few end-to-end and exactly-once tests with the broker started by testcontainers (through
# podman's Docker API where there is no Docker engine); scripts/test-testcontainers says which.
test-testcontainers: install
	scripts/test-testcontainers

# The image, passentry-bridge:<version>: Docker with the official base where a Docker engine
# answers, else podman (installed with apt if missing) on a local debootstrap base, cached
# under ~/.cache/passentry-bridge (scripts/image says more).
image:
	scripts/image build

# The single-node Kafka image the testcontainers mode starts (jars from kafka/pom.xml).
kafka-image:
	scripts/image kafka

# The image as a docker-archive tar in .local/image/, for `docker load`, `podman load` or
# `ctr images import` (keeps the name localhost/passentry-bridge:<version> with podman).
image-archive:
	scripts/image archive

# Only tests/k8s (also part of `make test`): the chart with the image on a local single-node
# Kubernetes (scripts/k8s-local; the first run on a machine builds Kubernetes: 8 minutes or more).
test-k8s: install tools
	$(BIN)/pytest tests/k8s

# The README's first command: local Kafka + PassEntry simulator + the bridge + tail.
demo: install
	scripts/demo

# hadolint, helm lint/template + Kubernetes schemas, promtool checks and rule tests.
check-deploy: tools
	scripts/check-deploy

# The chart's README values table and values.schema.json's descriptions, from values.yaml's
# "# --" comments (helm-docs); check-deploy fails when they drift.
chart-docs: tools
	scripts/chart-docs

# Benchmarks against the real broker and the simulator (bench/README.md).
bench: install
	$(BIN)/python -m bench.run --full

bench-quick: install
	$(BIN)/python -m bench.run --quick

profile: install
	$(BIN)/python -m bench.profile --scans 50000

# A real Confluent-compatible schema registry (Apicurio, from Maven Central; needs Java 21+).
registry-start:
	scripts/registry-local start

registry-stop:
	scripts/registry-local stop

kafka-start:
	scripts/kafka-local start

kafka-stop:
	scripts/kafka-local stop

# Three combined broker+controller nodes, RF 3, min.insync.replicas 2 (scripts/kafka-cluster).
kafka-cluster-up:
	scripts/kafka-cluster up

kafka-cluster-down:
	scripts/kafka-cluster down

# A local single-node Kubernetes cluster; `scripts/k8s-local up --netns NAME` for pod networking.
k8s-up:
	scripts/k8s-local up

k8s-down:
	scripts/k8s-local down

clean:
	rm -rf $(VENV) .local build dist *.egg-info .mypy_cache .ruff_cache .pytest_cache
	rm -f bridge/*.so bridge/*/*.so
