"""`harness sweep` against a server of known capacity: a single FIFO worker with a 10 ms service time
can sustain at most 100 requests/s, so the search must end below that and near its objective's limit."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from harness.processes import free_port

ROOT = Path(__file__).resolve().parents[1]

pytestmark = [pytest.mark.integration, pytest.mark.capacity]


@pytest.fixture
def queue_server() -> Iterator[str]:
    port = free_port()
    process = subprocess.Popen(
        [
            sys.executable,
            str(ROOT / "bench" / "synthetic_server.py"),
            "--port",
            str(port),
            "--mode",
            "queue",
            "--service-ms",
            "10",
            "--max-lifetime-s",
            "600",
        ]
    )
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        process.kill()
        process.wait(10)


def test_sweep_brackets_the_maximum_sustainable_rate(tmp_path: Path, queue_server: str) -> None:
    bodies = tmp_path / "bodies.jsonl"
    bodies.write_text('{"x": 1}\n')
    scenario = tmp_path / "sweep.yaml"
    scenario.write_text(
        yaml.safe_dump(
            {
                "name": "queue",
                "service": {"path": str(tmp_path), "service": "synthetic:Queue", "endpoint": "/predict"},
                "target": {"kind": "external", "urls": [queue_server]},
                "stages": [{"name": "unused", "duration_s": 1, "arrival_rate_rps": 1}],
                "payload": {"source": "jsonl", "file": str(bodies)},
                # A p95 bound keeps probes short (200 samples) while still sitting below capacity.
                "objectives": [{"metric": "latency_p95_ms", "max": 60}, {"metric": "error_rate", "max": 0.01}],
                "output": {"dir": str(tmp_path / "reports")},
            }
        )
    )
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "harness.cli",
            "sweep",
            str(scenario),
            "--initial-rps",
            "40",
            "--max-rps",
            "160",
            "--tolerance",
            "0.5",
            "--probe-s",
            "6",
            # At 10 ms a request, the queue settles within about a second of a new rate.
            "--warmup-s",
            "2",
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    (summary_path,) = (tmp_path / "reports").glob("*-sweep/sweep.json")
    summary = json.loads(summary_path.read_text())
    found = summary["result"]["max_sustainable_rps"]
    # M/D/1 at 10 ms: p95 <= 60 ms holds up to about rho 0.85; the server cannot exceed 100 rps.
    assert 40 <= found < 100
    low, high = summary["result"]["bracket_low"], summary["result"]["bracket_high"]
    assert high is not None and (high - low) / low <= 0.5 + 1e-9
    assert len(summary["probes"]) >= 3
    for probe in summary["probes"]:
        assert Path(probe["run_dir"], "verdict.json").exists(), "every probe is a complete run directory"


@pytest.fixture
def llm_server() -> Iterator[str]:
    """bench/llm_server.py generating 16 tokens for at most 4 requests at once: each takes 0.2 + 15 x 0.02 = 0.5 s
    on average, so it serves at most 8 requests/s, and past that its queue adds to time to first token."""
    port = free_port()
    command = [sys.executable, str(ROOT / "bench" / "llm_server.py"), "--port", str(port), "--slots", "4"]
    process = subprocess.Popen([*command, "--default-max-tokens", "16", "--max-lifetime-s", "600"])
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        process.kill()
        process.wait(10)


def test_sweep_finds_the_highest_rate_that_keeps_goodput(tmp_path: Path, llm_server: str) -> None:
    goodput = {"metric": "goodput_fraction", "min": 0.9, "per_request": {"ttft_ms": 400}}
    scenario = tmp_path / "sweep.yaml"
    scenario.write_text(
        yaml.safe_dump(
            {
                "name": "llm-slots",
                "target": {"kind": "external", "urls": [llm_server]},
                "stages": [{"name": "unused", "duration_s": 1, "arrival_rate_rps": 1}],
                "requests": [
                    {
                        "name": "complete",
                        "path": "/v1/completions",
                        "openai": {"synthetic": {"input_tokens": 8, "output_tokens": 16}},
                    }
                ],
                "objectives": [goodput],
                "output": {"dir": str(tmp_path / "reports")},
            }
        )
    )
    command = [sys.executable, "-m", "harness.cli", "sweep", str(scenario), "--initial-rps", "2", "--max-rps", "32"]
    result = subprocess.run(
        [*command, "--tolerance", "0.5", "--probe-s", "6"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=900,
        check=False,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    (summary_path,) = (tmp_path / "reports").glob("*-sweep/sweep.json")
    summary = json.loads(summary_path.read_text())
    found, high = summary["result"]["max_sustainable_rps"], summary["result"]["bracket_high"]
    # Below the 8 requests/s it can serve at all; at a quarter of that nobody waits for a slot.
    assert 2 <= found < 8 and high is not None and high <= 16, summary["probes"]
    verdicts = [json.loads(Path(probe["run_dir"], "verdict.json").read_text()) for probe in summary["probes"]]
    assert all(v["objectives"][0]["metric"] == "goodput_fraction" for v in verdicts)
