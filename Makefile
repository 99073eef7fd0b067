# Two commands set everything up on a fresh machine: `make loadtest` and `make test`.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
SCENARIO ?= loadtests/default.yaml
TARGET ?= local
# Debian packages the tests use for real: Prometheus, Pushgateway, Chromium (report test), Docker.
TEST_PACKAGES := prometheus prometheus-pushgateway chromium

.PHONY: setup loadtest test lint format system-packages docker-setup bench clean

setup: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip uv
	$(BIN)/uv pip install --quiet --python $(BIN)/python -e '.[dev]'
	touch $(STAMP)

# On a machine that reaches no container registry, the Docker target builds on a local base image
# (scripts/docker-setup.sh makes it) and installs packages with this machine's CA bundle.
DOCKER_BUILD_FLAGS ?= --base-image harness-python:bookworm --ca-bundle /etc/ssl/certs/ca-certificates.crt

KIND_CLUSTER ?= harness

loadtest: setup
ifeq ($(TARGET),docker)
	bash scripts/docker-setup.sh
	$(BIN)/harness run $(SCENARIO) --target docker $(DOCKER_BUILD_FLAGS)
else ifeq ($(TARGET),kind)
	# kind: the harness creates (or reuses) the cluster, loads the image, installs metrics-server,
	# runs the scenario under the chart's real HPA, and deletes a cluster it created.
	bash scripts/docker-setup.sh
	$(BIN)/harness run $(SCENARIO) --target kubernetes $(DOCKER_BUILD_FLAGS) \
		--set target.kubernetes.kind_cluster=$(KIND_CLUSTER)
else
	$(BIN)/harness run $(SCENARIO) --target $(TARGET)
endif

lint: setup
	$(BIN)/ruff format --check harness tests bench examples
	$(BIN)/ruff check harness tests bench examples
	$(BIN)/mypy

format: setup
	$(BIN)/ruff format harness tests bench examples
	$(BIN)/ruff check --fix harness tests bench examples

system-packages:
	bash scripts/install-system-packages.sh $(TEST_PACKAGES)

docker-setup:
	bash scripts/docker-setup.sh

test: setup system-packages docker-setup lint
	PATH=$(CURDIR)/$(BIN):$$PATH $(BIN)/pytest

bench: setup
	PATH=$(CURDIR)/$(BIN):$$PATH $(BIN)/python -m bench.accuracy

clean:
	rm -rf $(VENV) reports test-output .pytest_cache .mypy_cache .ruff_cache
