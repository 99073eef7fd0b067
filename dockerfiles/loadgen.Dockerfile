# The load generator image: Locust and the harness package, so harness/load/locustfile.py runs in a pod
# or container next to the service. Build it with harness.build.build_tool_image, which sends only the
# package's modules and ca-bundle.crt (empty when there is none) as the context.
#   docker run --rm IMAGE locust -f /opt/harness/locustfile.py ...   (HARNESS_LOAD_PLAN as for a local run)
# The base is BentoML's own default for Python 3.11 (bentoml's CONTAINER_METADATA, debian), or the scenario's
# build.base_image: any image with python3 and pip (uv is installed when it lacks it), root or not.
ARG BASE_IMAGE=python:3.11-slim
FROM ${BASE_IMAGE}
USER root

# pip/uv trust this bundle during the build only (a TLS-inspecting proxy); an empty file means none.
COPY ca-bundle.crt /usr/local/share/harness/build-ca-bundle.crt
# UV_COMPILE_BYTECODE: the pods run with a read-only root file system, where Python cannot write the bytecode
# of its imports: without it every Locust process would compile them all at its start (seconds).
ENV VIRTUAL_ENV=/opt/harness/venv PATH=/opt/harness/venv/bin:${PATH} PYTHONUNBUFFERED=1 UV_NO_PROGRESS=1 \
    UV_COMPILE_BYTECODE=1
WORKDIR /opt/harness/src

# Only what harness.load needs (no BentoML, Kubernetes or Docker clients): a third of the full install.
# The import check below fails the build when harness.load gains a dependency missing here.
RUN set -eu; \
    ca=/usr/local/share/harness/build-ca-bundle.crt; \
    if [ -s "$ca" ]; then export PIP_CERT="$ca" SSL_CERT_FILE="$ca" REQUESTS_CA_BUNDLE="$ca" UV_NATIVE_TLS=true; fi; \
    command -v uv >/dev/null || python3 -m pip install --no-cache-dir uv; \
    uv venv --python python3 "$VIRTUAL_ENV"; \
    uv pip install --no-cache "locust>=2.30" "psutil>=5.9" "hdrhistogram>=0.10" "numpy>=1.26" "scipy>=1.11" \
        "scikit-learn>=1.4" "pydantic>=2.6" "PyYAML>=6"

# The package's modules as installed where the image is built (a clone or a wheel alike): on the path, not
# installed, so no project file is needed; compiled here for the read-only root file system.
COPY harness ./harness
ENV PYTHONPATH=/opt/harness/src
RUN python -m compileall -q harness \
    && cd / \
    && ln -s "$(python -c 'import harness.load, pathlib; print(pathlib.Path(harness.load.__file__).parent)')/locustfile.py" \
        /opt/harness/locustfile.py \
    && python -c "import locust, gevent, harness.load.shape, harness.load.payloads, harness.load.arrivals, \
harness.analysis.latency, harness.model; print('locust', locust.__version__)" \
    && locust --version

USER nobody
WORKDIR /tmp
ENTRYPOINT ["locust"]
CMD ["--help"]
