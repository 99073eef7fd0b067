# The harness CLI in an image, for in-cluster (nightly) jobs: `harness run loadtests/X.yaml --target kubernetes`.
# Build it with harness.build.build_tool_image, which sends only the package sources, loadtests/, charts/
# (empty when absent) and ca-bundle.crt (empty when there is none) as the context.
ARG BASE_IMAGE=harness-python:bookworm
FROM ${BASE_IMAGE}

# pip/uv trust this bundle during the build only (a TLS-inspecting proxy); an empty file means none.
COPY ca-bundle.crt /usr/local/share/harness/build-ca-bundle.crt
ENV VIRTUAL_ENV=/opt/harness/venv PATH=/opt/harness/venv/bin:${PATH} PYTHONUNBUFFERED=1 UV_NO_PROGRESS=1 \
    UV_COMPILE_BYTECODE=1
WORKDIR /opt/harness

# Dependencies first (from pyproject.toml alone), so editing the harness does not reinstall them: the default
# ones and the kubernetes extra's, since this image runs the Kubernetes target.
COPY pyproject.toml ./
RUN set -eu; \
    ca=/usr/local/share/harness/build-ca-bundle.crt; \
    if [ -s "$ca" ]; then export PIP_CERT="$ca" SSL_CERT_FILE="$ca" REQUESTS_CA_BUNDLE="$ca" UV_NATIVE_TLS=true; fi; \
    command -v uv >/dev/null || python3 -m pip install --no-cache-dir uv; \
    uv venv --python python3 "$VIRTUAL_ENV"; \
    python3 -c "import tomllib; p = tomllib.load(open('pyproject.toml', 'rb'))['project']; \
        print('\n'.join(p['dependencies'] + p['optional-dependencies']['kubernetes']))" \
        > /tmp/requirements.txt; \
    uv pip install --no-cache -r /tmp/requirements.txt; \
    rm /tmp/requirements.txt

COPY harness ./harness
COPY loadtests ./loadtests
COPY charts ./charts
RUN ca=/usr/local/share/harness/build-ca-bundle.crt; \
    if [ -s "$ca" ]; then export PIP_CERT="$ca" SSL_CERT_FILE="$ca" REQUESTS_CA_BUNDLE="$ca" UV_NATIVE_TLS=true; fi; \
    uv pip install --no-cache --no-deps . && harness --help >/dev/null

# Reports go to the working directory; mount a volume there to keep them.
RUN mkdir -p /work && chown nobody /work
USER nobody
WORKDIR /work
ENTRYPOINT ["harness"]
CMD ["--help"]
