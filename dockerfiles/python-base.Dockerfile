# The local Python base image for bento containers and the load generator: Debian bookworm's
# python3 (3.11, what BentoML's generated Dockerfile asks `uv venv` for) plus uv, so no registry is needed.
# Built by scripts/docker-setup.sh as harness-python:bookworm on top of harness-base:bookworm.
ARG BASE_IMAGE=harness-base:bookworm
FROM ${BASE_IMAGE}

# The machine's CA bundle (an empty file when none is given): pip needs it behind a TLS-inspecting proxy.
COPY ca-bundle.crt /usr/local/share/harness/ca-bundle.crt
ARG PIP_CERT=/usr/local/share/harness/ca-bundle.crt
ENV DEBIAN_FRONTEND=noninteractive LANG=C.UTF-8 LC_ALL=C.UTF-8

# EXTERNALLY-MANAGED goes because BentoML's Dockerfile may `pip install` into the system Python.
# uv is pinned to the version BentoML's Dockerfile installs, so that step is skipped in every bento build.
RUN apt-get update \
    && apt-get install -q -y --no-install-recommends python3 python3-venv python3-pip ca-certificates \
    && rm -rf /var/lib/apt/lists/* /var/cache/apt/archives/*.deb /usr/share/doc/* /usr/share/man/* \
    && rm -f /usr/lib/python3.*/EXTERNALLY-MANAGED \
    && ln -sf python3 /usr/bin/python \
    && if [ ! -s "$PIP_CERT" ]; then unset PIP_CERT; fi \
    && python3 -m pip install --no-cache-dir --disable-pip-version-check uv==0.13.4 \
    && uv --version
