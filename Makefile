# Two commands set everything up on a fresh machine: `make loadtest` and `make test`.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
SCENARIO ?= loadtests/default.yaml
TARGET ?= local
# Debian packages the tests use for real: Prometheus, Pushgateway, Chromium (report test), and the test
# cluster's container runtime, CNI plugins, iptables and image registry (scripts/cluster/cluster.sh). Docker:
# docker-setup.
TEST_PACKAGES := prometheus prometheus-pushgateway chromium containerd runc containernetworking-plugins iptables wrk \
	openssl curl docker-registry
# The test cluster's binaries are built with Go (Debian 12's is too old; the machine's is in /usr/local/go).
export PATH := $(PATH):/usr/local/go/bin

.PHONY: setup dist loadtest test lint format system-packages docker-setup cluster cluster-down bench bench-ci bench-compare bench-hpa bench-example bench-startup bench-install-size clean \
	wine-model bench-llm bench-llm-peers

setup: $(STAMP)

# Installs the package with the extras $(1) (e.g. [dev]) into the venv. The distribution was called `harness`
# before; an install of it under that name is removed, since both provide the `harness` command.
# uv writes no bytecode unless asked, and where PYTHONDONTWRITEBYTECODE is set Python never writes it either:
# every process (the harness, each Locust and BentoML process) would compile its imports again, about a
# second for scipy.stats alone, so the install compiles them once.
define install_package
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip uv
	$(BIN)/uv pip uninstall --quiet --python $(BIN)/python harness 2>/dev/null || true
	$(BIN)/uv pip install --quiet --compile-bytecode --python $(BIN)/python -e '.$(1)'
endef

$(STAMP): pyproject.toml
	$(call install_package,[dev])
	touch $(STAMP)

# The wheel and sdist in dist/ (uv builds the wheel from the sdist, so both carry the package data: charts/,
# dockerfiles/ and the schemas, through the symlinks in harness/_data), checked by twine as PyPI would.
dist: setup
	rm -rf dist
	$(BIN)/uv build --quiet --out-dir dist
	$(BIN)/twine check --strict dist/*

# `make loadtest` installs only what its target uses (pyproject.toml): on every target the report's plots and
# the digits example with its payloads (scikit-learn, which the local replicas import from this venv), and
# the other targets' extras. A venv that already has more (make setup) keeps it.
LOADTEST_EXTRAS_local := plots,digits
LOADTEST_EXTRAS_external := plots,digits
LOADTEST_EXTRAS_docker := plots,digits,docker
LOADTEST_EXTRAS_cluster := plots,digits,docker,kubernetes,helm
LOADTEST_EXTRAS_kind := plots,digits,docker,kubernetes,helm

$(VENV)/.installed-loadtest-%: pyproject.toml
	$(call install_package,$(if $(LOADTEST_EXTRAS_$*),[$(LOADTEST_EXTRAS_$*)]))
	touch $@

# On a machine that reaches no container registry, the Docker target builds on a local base image
# (scripts/docker-setup.sh makes it) and installs packages with this machine's CA bundle.
DOCKER_BUILD_FLAGS ?= --base-image harness-python:bookworm --ca-bundle /etc/ssl/certs/ca-certificates.crt

KIND_CLUSTER ?= harness
KIND_BUILD_FLAGS ?=
CLUSTER_FLAGS := --set target.kubernetes.kubeconfig=$(CURDIR)/.cluster/kubeconfig \
	--set target.kubernetes.node_containerd=/run/harness-cluster/containerd/containerd.sock \
	--set target.kubernetes.load_route=pod-ip

loadtest: $(VENV)/.installed-loadtest-$(TARGET)
ifeq ($(TARGET),docker)
	bash scripts/docker-setup.sh
	$(BIN)/harness run $(SCENARIO) --target docker $(DOCKER_BUILD_FLAGS)
else ifeq ($(TARGET),cluster)
	# The single-node cluster of scripts/cluster on this machine (make cluster); the image goes into its containerd.
	$(MAKE) cluster
	$(BIN)/harness run $(SCENARIO) --target kubernetes $(DOCKER_BUILD_FLAGS) $(CLUSTER_FLAGS)
else ifeq ($(TARGET),kind)
	# kind: the harness creates (or reuses) the cluster, loads the image, installs metrics-server, runs the
	# scenario under the chart's real HPA, and deletes a cluster it created. The image builds on BentoML's
	# own base image from a registry; where none is reachable pass KIND_BUILD_FLAGS="$(DOCKER_BUILD_FLAGS)".
	$(BIN)/harness run $(SCENARIO) --target kubernetes $(KIND_BUILD_FLAGS) \
		--set target.kubernetes.kind_cluster=$(KIND_CLUSTER)
else
	$(BIN)/harness run $(SCENARIO) --target $(TARGET)
endif

# The wine example's model (loadtests/wine.yaml): trained and saved to the model store of BENTOML_HOME.
wine-model: setup
	$(BIN)/python examples/wine/train.py

# actionlint checks the GitHub workflow as GitHub would read it (expressions, the actions' inputs, and the
# shell of its run steps through shellcheck); no runner is reachable from here. Built once with Go.
ACTIONLINT := $(HOME)/.cache/harness-tools/actionlint-v1.7.12/actionlint
$(ACTIONLINT):
	GOBIN=$(dir $@) go install github.com/rhysd/actionlint/cmd/actionlint@v1.7.12

# Helm's CLI, built once with Go: the Kubernetes target renders charts/ with a `helm` on PATH, else with Helm's
# engine from helm-python-sdk. make test puts this one on the tests' PATH, so every machine tests the same engine
# (the chart tests pin the SDK; tests/targets/test_helm.py renders with both and compares).
HELM_VERSION := v4.3.2
HELM := $(HOME)/.cache/harness-tools/helm-$(HELM_VERSION)/helm
$(HELM):
	GOBIN=$(dir $@) go install helm.sh/helm/v4/cmd/helm@$(HELM_VERSION)

lint: setup $(ACTIONLINT)
	$(BIN)/ruff format --check harness tests bench examples
	$(BIN)/ruff check harness tests bench examples
	$(BIN)/mypy
	bash scripts/install-system-packages.sh shellcheck
	shellcheck --severity=warning scripts/*.sh scripts/cluster/*.sh .ci/run
	$(ACTIONLINT)

format: setup
	$(BIN)/ruff format harness tests bench examples
	$(BIN)/ruff check --fix harness tests bench examples

system-packages:
	bash scripts/install-system-packages.sh $(TEST_PACKAGES)

docker-setup:
	bash scripts/docker-setup.sh

# A real single-node Kubernetes cluster on this machine (scripts/cluster/cluster.sh), with its image registry on
# 127.0.0.1:15000 and kubectl in .cluster/bin; idempotent.
cluster: system-packages docker-setup
	bash scripts/cluster/cluster.sh up

cluster-down:
	bash scripts/cluster/cluster.sh down

# Lanes on a 2-core machine, measured with a CPU sampler (CI25): the CPU was only 75% busy while the light
# tests ran beside the cluster tests, and 10-45% busy while the old `exclusive` phase (5.3 min) ran alone. So:
# - the cluster tests one at a time, in the background (9-10 min, mostly waiting on the controller and the
#   HPA; on two workers of their own they measured 14:26-16:44 in all, no better and more variable);
# - the unit tests on one pytest-xdist worker, in the background from the start: spread over the light
#   tests' idle CPU rather than crowding the cluster tests' first pods (on two workers the first cluster test
#   took 122 s instead of 79 s);
# - the light local integration tests on two workers (--dist loadfile: a test file stays on one worker, its
#   module fixtures start servers once); then, once the unit tests are done, the tests marked `quiet` (load
#   with timing bounds) two at a time, beside only the cluster tests' end;
# - last, every test marked `exclusive` alone (CPU-share and load-rate measurements, sweeps of dead
#   harnesses, an image prune). Each lane's output is printed after it ends.
# Measured from fresh clones: 11:46, 12:32 and 11:36 (the previous two-phase layout: 15:23-16:27).
PYTEST = PATH=$(CURDIR)/$(BIN):$(dir $(HELM)):$$PATH $(BIN)/pytest --durations=15
test: setup system-packages docker-setup cluster lint $(HELM)
	@mkdir -p test-output
	@# The project's own bytecode, for the same reason as the install's (its sources change, so here).
	@$(BIN)/python -m compileall -q harness bench examples tests > /dev/null
	@$(PYTEST) -m "cluster and not exclusive and not quiet" --basetemp=/tmp/harness-test-cluster-lane \
		> test-output/cluster-lane.log 2>&1 & cluster=$$!; \
	$(PYTEST) -n 1 -m "not integration and not exclusive and not quiet" --basetemp=/tmp/harness-test-unit-lane \
		> test-output/unit-lane.log 2>&1 & unit=$$!; \
	trap 'kill $$cluster $$unit 2>/dev/null' INT TERM; \
	$(PYTEST) -n 2 --dist loadfile -m "integration and not cluster and not exclusive and not quiet" \
		--basetemp=/tmp/harness-test-local-lane; local=$$?; \
	wait $$unit; unit_status=$$?; \
	echo "---- unit tests (run beside the ones above) ----"; cat test-output/unit-lane.log; \
	$(PYTEST) -n 2 --dist loadfile -m quiet --basetemp=/tmp/harness-test-quiet-lane; quiet=$$?; \
	wait $$cluster; cluster_status=$$?; \
	echo "---- cluster tests (run beside the ones above) ----"; cat test-output/cluster-lane.log; \
	[ $$local -eq 0 ] && [ $$unit_status -eq 0 ] && [ $$quiet -eq 0 ] && [ $$cluster_status -eq 0 ]
	$(PYTEST) -m exclusive

# wrk measures the same servers beside the harness (a Debian package).
bench: setup
	bash scripts/install-system-packages.sh wrk
	PATH=$(CURDIR)/$(BIN):$$PATH $(BIN)/python -m bench.accuracy

# LLM streaming figures side by side: GuideLLM and inference-perf (each in its own venv under .venv-bench-llm,
# scripts/install-llm-peers.sh) against bench/llm_server.py, whose TTFT and inter-token gaps are known; prints each
# tool's TTFT, ITL and TPOT p50/p95/p99 as ratios to the truth (about 6 min on a busy 2-core machine).
bench-llm: setup bench-llm-peers
	PATH=$(CURDIR)/$(BIN):$$PATH $(BIN)/python -m bench.llm_accuracy --peers .venv-bench-llm

bench-llm-peers: .venv-bench-llm/.installed
.venv-bench-llm/.installed: scripts/install-llm-peers.sh
	bash scripts/install-llm-peers.sh .venv-bench-llm
	touch $@

# Coverage and width of the percentile confidence intervals on simulated bench stages (about 90 s, no servers).
bench-ci: setup
	$(BIN)/python -m bench.ci_coverage

# False-regression rate of harness compare: 21 short runs against one synthetic server, each compared with the next.
bench-compare: setup
	PATH=$(CURDIR)/$(BIN):$$PATH $(BIN)/python -m bench.self_compare

# The digits example against BentoML's own ceiling: a no-op endpoint and the example, one local replica each at
# 16 users (about 3 min); prints rps, the example's share of the no-op's, p95, p99 and p99/p95.
bench-example: setup
	PATH=$(CURDIR)/$(BIN):$$PATH $(BIN)/python -m bench.example_ceiling

# Start-up time: fresh processes importing the harness, validating and starting a run up to its build, against
# the goal of 1 s of wall time (median of 7). COMPARE=<checkout> measures another revision alongside.
bench-startup: setup
	$(BIN)/python -m bench.startup $(if $(COMPARE),--compare $(COMPARE))

# Size of the default install (no extras) in a fresh venv, with bytecode as pip writes it, and its 10 largest
# distributions, against the goal of 400 MB (about a minute; wheels from uv's cache or PyPI).
bench-install-size: setup
	$(BIN)/python -m bench.install_size

# The harness's HPA emulation (local target) against the real controller (the test cluster), side by side.
bench-hpa: setup cluster
	PATH=$(CURDIR)/$(BIN):$$PATH $(BIN)/python -m bench.hpa_parity

clean:
	rm -rf $(VENV) .venv-bench-llm reports test-output dist build .pytest_cache .mypy_cache .ruff_cache
