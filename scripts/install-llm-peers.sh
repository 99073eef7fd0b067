#!/bin/bash
# The peers `make bench-llm` measures beside the harness, each in a virtual environment of its own under DIR
# (default .venv-bench-llm): they pin packages the harness does not (transformers, numpy >= 2.2, datasets), so
# they stay out of the project's environment. Idempotent; wheels come from PyPI (or uv's cache).
#   DIR/guidellm         GuideLLM and the `tokenizers` library (bench/llm_tokenizer.py builds the tokenizer with it)
#   DIR/inference-perf   kubernetes-sigs/inference-perf
set -euo pipefail

DIR="${1:-.venv-bench-llm}"
PYTHON="${PYTHON:-python3}"
GUIDELLM_VERSION="0.8.1"
INFERENCE_PERF_VERSION="0.7.0"

venv() {
    test -x "$1/bin/python" || "$PYTHON" -m venv "$1"
    "$1/bin/python" -m pip install --quiet --upgrade pip uv
}

venv "$DIR/guidellm"
"$DIR/guidellm/bin/uv" pip install --quiet --python "$DIR/guidellm/bin/python" \
    "guidellm==$GUIDELLM_VERSION" tokenizers

# inference-perf declares Requires-Python >= 3.12 while Debian 12 has 3.11, and no 3.12 interpreter can be
# installed here (uv downloads its Pythons from GitHub). Its code parses and runs on 3.11, so its dependencies
# are resolved for this Python by uv, and then it alone is installed with that declaration ignored.
venv "$DIR/inference-perf"
wheels="$(mktemp -d)"
trap 'rm -rf "$wheels"' EXIT
"$DIR/inference-perf/bin/python" -m pip download --quiet --no-deps --ignore-requires-python \
    --dest "$wheels" "inference-perf==$INFERENCE_PERF_VERSION"
mapfile -t requirements < <("$DIR/inference-perf/bin/python" - "$wheels"/inference_perf-*.whl <<'PY'
import sys, zipfile
from email.parser import Parser
with zipfile.ZipFile(sys.argv[1]) as wheel:
    name = next(n for n in wheel.namelist() if n.endswith(".dist-info/METADATA"))
    metadata = Parser().parsestr(wheel.read(name).decode())
for requirement in metadata.get_all("Requires-Dist") or []:
    if "extra ==" not in requirement:
        print(requirement.split(";")[0].strip())
PY
)
"$DIR/inference-perf/bin/uv" pip install --quiet --python "$DIR/inference-perf/bin/python" "${requirements[@]}" tokenizers
"$DIR/inference-perf/bin/python" -m pip install --quiet --no-deps --ignore-requires-python "$wheels"/inference_perf-*.whl
echo "install-llm-peers: $("$DIR/guidellm/bin/guidellm" --version), inference-perf $INFERENCE_PERF_VERSION in $DIR" >&2
