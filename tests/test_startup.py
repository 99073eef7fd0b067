"""Start-up stays fast: importing the CLI and the run orchestration loads none of the heavy libraries
(scipy, plotly, matplotlib, jsonschema, helm-python-sdk, the Docker and Kubernetes clients), nor what a run
needs only once its replicas are up (numpy, rich, prometheus_client); they are imported where they are used.
The times themselves are measured by `make bench-startup`, not here."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

HEAVY = ("scipy", "plotly", "matplotlib", "jsonschema", "helm_python", "sklearn", "pandas", "docker", "kubernetes")


@pytest.mark.integration
def test_importing_the_cli_and_a_run_loads_no_heavy_library() -> None:
    code = (
        "import json, sys\n"
        "import harness.cli, harness.run\n"
        f"print(json.dumps(sorted({{m.split('.')[0] for m in sys.modules}} & set({list(HEAVY)!r}))))\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert json.loads(result.stdout) == []


@pytest.mark.integration
def test_a_run_up_to_its_load_imports_neither_numpy_nor_rich_nor_prometheus_client() -> None:
    # What `harness run` imports before it builds (off a terminal), and the load generator's histograms.
    code = (
        "import io, json, sys\n"
        "import harness.cli, harness.commands, harness.run\n"
        "from harness.analysis.latency import LatencyHistogram\n"
        "from harness.report.progress import ProgressReporter\n"
        "ProgressReporter(mode='plain', stream=io.StringIO()).close()\n"
        "histogram = LatencyHistogram()\n"
        "histogram.record_s(0.01)\n"
        "LatencyHistogram.decode(histogram.encode())\n"
        "print(json.dumps(sorted({m.split('.')[0] for m in sys.modules} & {'numpy', 'rich', 'prometheus_client'})))\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert json.loads(result.stdout) == []


@pytest.mark.integration
def test_the_helm_sdk_is_optional_and_its_absence_is_named() -> None:
    code = (
        "import sys\n"
        "sys.modules['helm_python'] = None  # as if the helm extra were not installed\n"
        "from harness.errors import DeployError\n"
        "from harness.targets.helm import MODEL_SERVICE_CHART, render_chart\n"
        "try:\n"
        "    render_chart(MODEL_SERVICE_CHART, {}, release='r', namespace='n', engine='sdk')\n"
        "except DeployError as error:\n"
        "    print(error)\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert "helm-python-sdk is not installed" in result.stdout
    assert f"pip install -e '{Path(__file__).resolve().parents[1]}[helm]'" in result.stdout
