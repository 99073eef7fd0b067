# Two commands set everything up on a fresh machine: `make loadtest` and `make test`.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
# On kind the default scenario autoscales (the chart's real HPA is what a kind cluster is for).
ifeq ($(TARGET),kind)
SCENARIO ?= loadtests/autoscale-cpu.yaml
endif
SCENARIO ?= loadtests/default.yaml
TARGET ?= local
# Debian packages the tests use for real: Prometheus, Pushgateway, Chromium (report test), and the test
# cluster's container runtime, CNI plugins, iptables and image registry (scripts/cluster/cluster.sh). Docker:
# docker-setup.
TEST_PACKAGES := prometheus prometheus-pushgateway chromium containerd runc containernetworking-plugins iptables wrk \
	openssl curl docker-registry
# The test cluster's binaries are built with Go (Debian 12's is too old; the machine's is in /usr/local/go).
export PATH := $(PATH):/usr/local/go/bin

.PHONY: setup dist loadtest test lint format system-packages docker-setup cluster cluster-down kind-setup bench bench-ci bench-compare bench-hpa bench-example bench-startup bench-install-size bench-large-bodies clean \
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

# kind: the cluster's name (an existing one is reused and kept) and the node image: `offline` builds one here
# from the test cluster's binaries and Debian packages (scripts/kind/node-image.sh, cached by a content key);
# empty: kind's own default image (a registry must be reachable, as on a CI runner); anything else: that image.
# kind itself is installed with `go install`, as kind's quick start documents (KIND); the kind on PATH is used
# when there is one. docs/kind.md says what ran here.
KIND_VERSION := v0.33.0
KIND := $(HOME)/.cache/harness-tools/kind-$(KIND_VERSION)/kind
KIND_CLUSTER ?= harness
KIND_NODE_IMAGE ?= offline
KIND_BUILD_FLAGS ?= $(if $(filter offline,$(KIND_NODE_IMAGE)),$(DOCKER_BUILD_FLAGS))
KIND_FLAGS = --set target.kubernetes.kind_cluster=$(KIND_CLUSTER) --set target.kubernetes.load_route=node-port \
	--set target.kubernetes.kubeconfig=$(CURDIR)/.cluster/kind-$(KIND_CLUSTER).kubeconfig
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
	# kind: the harness checks kind and Docker, creates (or reuses) the cluster, loads the image, installs
	# metrics-server, runs the autoscaling scenario under the chart's real HPA with load through the Service's
	# NodePort on 127.0.0.1, and deletes a cluster it created. Offline, the service image builds on the local
	# base image (KIND_BUILD_FLAGS); with a registry, on BentoML's own.
ifeq ($(KIND_NODE_IMAGE),offline)
	$(MAKE) docker-setup
	command -v kind >/dev/null || $(MAKE) $(KIND)
	@set -e; image=$$(bash scripts/kind/node-image.sh build); echo "kind node image: $$image"; \
	PATH="$$PATH:$(dir $(KIND))" $(BIN)/harness run $(SCENARIO) \
		--target kubernetes $(KIND_BUILD_FLAGS) $(KIND_FLAGS) --set target.kubernetes.kind_node_image=$$image
else
	command -v kind >/dev/null || $(MAKE) $(KIND)
	PATH="$$PATH:$(dir $(KIND))" $(BIN)/harness run $(SCENARIO) \
		--target kubernetes $(KIND_BUILD_FLAGS) $(KIND_FLAGS) \
		$(if $(KIND_NODE_IMAGE),--set target.kubernetes.kind_node_image=$(KIND_NODE_IMAGE))
endif
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

# mypy's cache outside the clone: a fresh clone of unchanged sources is checked in 0.5 s instead of 15 s (mypy
# validates each cached module by its content).
MYPY_CACHE ?= $(HOME)/.cache/harness-mypy
lint: setup $(ACTIONLINT)
	$(BIN)/ruff format --check harness tests bench examples
	$(BIN)/ruff check harness tests bench examples
	$(BIN)/mypy --cache-dir $(MYPY_CACHE)
	bash scripts/install-system-packages.sh shellcheck
	shellcheck --severity=warning scripts/*.sh scripts/cluster/*.sh scripts/kind/*.sh .ci/run
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

$(KIND):
	GOBIN=$(dir $@) CGO_ENABLED=0 go install sigs.k8s.io/kind@$(KIND_VERSION)

# kind and its node image, built offline once (scripts/kind/node-image.sh: the test cluster's binaries reused,
# kubeadm, kubectl, crictl and CoreDNS built, Debian's containerd, runc and CNI plugins); the kind tests and
# `make loadtest TARGET=kind` use them. Prints the image. docs/kind.md has the measured costs.
kind-setup: docker-setup $(KIND)
	bash scripts/kind/node-image.sh build

# Lanes on a 2-core machine (each test's lane is derived from its markers in tests/lanes.py). Measured with
# per-lane cpuacct cgroups: the CPU is saturated until the heavy lanes end (about 1,600 CPU-seconds in all, the
# local tests the largest share), so the layout keeps waits overlapping and leaves only light work for the end:
# - the cluster tests two at a time, in the background (--dist loadgroup: the two HPA-timed tests, and the
#   cluster-wide cleanups with the watchdog test, never beside each other; mostly waiting on the controller and
#   the HPA: 13:28 one at a time with the machine to itself, 10-11 min two at a time inside make test);
# - the kind tests one at a time, in the background beside them (tests/targets/test_kind_cluster.py: the
#   nightly's `make loadtest TARGET=kind` with the HPA 1 -> >= 2 and back, the three kill cases, preflight;
#   6-7.5 min inside make test);
# - the unit tests on two pytest-xdist workers under SCHED_IDLE (chrt --idle), in the background from the start:
#   pure CPU (about 100 CPU-seconds) that runs only on a core nothing else wants, so it never slows the lanes
#   that decide the total; it finishes in the idle gaps of the waits at the end and is waited for last;
# - the local integration tests on two workers (--dist loadfile: a test file stays on one worker, its module
#   fixtures start servers once; files with a test marked starts_first, the README quick start's and the run
#   integration tests', are handed out first: tests/conftest.py orders them, --no-loadscope-reorder keeps it);
# - once the local, cluster and kind lanes ended, the tests marked `load_timing` (load with timing bounds) two at
#   a time beside the two `capacity` sweeps (light: about a fifth of a core each);
# - last, every test marked `machine_wide` alone (CPU-share measurements, sweeps of dead harnesses, an image
#   prune). Each lane's output is printed after it ends.
# Measured from fresh clones with the machine to itself: 14:52 (15:01 before the last cut; 15:26-16:33 before
# this session's; with the cluster tests one at a time: 19:44-20:32); lane by lane in docs/development.md.
# No line of this recipe may contain $(MAKE): the program audit (tests/program_audit) reads the install steps with
# `make -n -B test`, and make runs such a line even under -n, so every pytest process would start the lanes again.
# pytest caches each test module as it rewrote its asserts, in __pycache__, unless PYTHONDONTWRITEBYTECODE is set:
# then each of make test's 15 pytest processes rewrites and compiles every test module again at collection (7.4
# against 3.2 CPU-seconds). Empty, the variable is unset for Python, in the tests and every process they start.
PYTEST_PATH = PYTHONDONTWRITEBYTECODE= PATH=$(CURDIR)/$(BIN):$(dir $(HELM)):$(dir $(KIND)):$$PATH
PYTEST = $(PYTEST_PATH) $(BIN)/pytest --durations=15
test: setup system-packages docker-setup cluster kind-setup lint $(HELM)
	@mkdir -p test-output
	@# The project's own bytecode, for the same reason as the install's (its sources change, so here).
	@$(BIN)/python -m compileall -q harness bench examples tests > /dev/null
	@$(PYTEST) -n 2 --dist loadgroup --lane cluster --basetemp=/tmp/harness-test-cluster-lane \
		> test-output/cluster-lane.log 2>&1 & cluster=$$!; \
	$(PYTEST) --lane kind --basetemp=/tmp/harness-test-kind-lane \
		> test-output/kind-lane.log 2>&1 & kind=$$!; \
	$(PYTEST_PATH) chrt --idle 0 $(BIN)/pytest --durations=15 -n 2 --lane unit --basetemp=/tmp/harness-test-unit-lane \
		> test-output/unit-lane.log 2>&1 & unit=$$!; \
	trap 'kill $$cluster $$kind $$unit $$timing 2>/dev/null' INT TERM; \
	$(PYTEST) -n 2 --dist loadfile --no-loadscope-reorder --lane local \
		--basetemp=/tmp/harness-test-local-lane; local=$$?; \
	wait $$cluster; cluster_status=$$?; \
	echo "---- cluster tests (run beside the ones above) ----"; cat test-output/cluster-lane.log; \
	wait $$kind; kind_status=$$?; \
	echo "---- kind tests (run beside the ones above) ----"; cat test-output/kind-lane.log; \
	$(PYTEST) -n 2 --dist loadfile --lane load-timing --basetemp=/tmp/harness-test-load-timing-lane \
		> test-output/load-timing-lane.log 2>&1 & timing=$$!; \
	$(PYTEST) -n 2 --lane capacity --basetemp=/tmp/harness-test-capacity-lane; capacity=$$?; \
	wait $$timing; quiet=$$?; \
	echo "---- load-timing tests (run beside the capacity tests) ----"; cat test-output/load-timing-lane.log; \
	wait $$unit; unit_status=$$?; \
	echo "---- unit tests (run beside all of the above, on idle CPU only) ----"; cat test-output/unit-lane.log; \
	[ $$local -eq 0 ] && [ $$unit_status -eq 0 ] && [ $$quiet -eq 0 ] && [ $$capacity -eq 0 ] \
		&& [ $$cluster_status -eq 0 ] && [ $$kind_status -eq 0 ]
	$(PYTEST) --lane machine-wide

# wrk measures the same servers beside the harness (a Debian package).
bench: setup
	bash scripts/install-system-packages.sh wrk
	PATH=$(CURDIR)/$(BIN):$$PATH $(BIN)/python -m bench.accuracy

# LLM streaming figures side by side: the harness, GuideLLM and inference-perf (each peer in its own venv under
# .venv-bench-llm, scripts/install-llm-peers.sh) against bench/llm_server.py, whose TTFT and inter-token gaps are
# known; prints each tool's TTFT, ITL and TPOT p50/p95/p99 as ratios to the truth, then how many concurrent streams
# one generator process holds on one core and its CPU per token (bench/llm_generator.py).
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

# Large request bodies (4 KiB to 16 MiB) through the load generator's HTTP client with Nagle's algorithm on and off,
# side by side (about a minute): latency p50/p90 and client CPU per request.
bench-large-bodies: setup
	$(BIN)/python -m bench.large_bodies

# Size of the default install (no extras) in a fresh venv, with bytecode as pip writes it, and its 10 largest
# distributions, against the goal of 400 MB (about a minute; wheels from uv's cache or PyPI).
bench-install-size: setup
	$(BIN)/python -m bench.install_size

# The harness's HPA emulation (local target) against the real controller (the test cluster), side by side.
bench-hpa: setup cluster
	PATH=$(CURDIR)/$(BIN):$$PATH $(BIN)/python -m bench.hpa_parity

clean:
	rm -rf $(VENV) .venv-bench-llm reports test-output dist build .pytest_cache .mypy_cache .ruff_cache
