"""A shortened loadtests/autoscale.yaml on real replicas: the local HPA scales out under a load step,
and the verdict's autoscaling figures agree with the recorded timeline."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]

pytestmark = [pytest.mark.integration, pytest.mark.load_timing]


def test_replicas_rise_under_a_load_step_and_figures_match_the_timeline(tmp_path: Path) -> None:
    data = yaml.safe_load((ROOT / "loadtests" / "autoscale.yaml").read_text())
    data["service"]["path"] = str(ROOT / "examples" / "digits")
    # Shortened: a quicker start (a core each, at most three replicas so that two start at once) and a
    # shorter step. make test runs this test once the other lanes are done, where the new replicas were ready
    # 28 s into the step (decided at 16 s); the quiet tail stage gives slower ones 20 s more.
    data["resources"]["limits"]["cpu"] = "1000m"
    data["autoscaling"]["maxReplicas"] = 3
    data["stages"] = [
        {"name": "baseline", "duration_s": 10, "arrival_rate_rps": 10},
        {"name": "step-up", "duration_s": 45, "arrival_rate_rps": 70},
        {"name": "settle", "duration_s": 20, "arrival_rate_rps": 10},
    ]
    data["output"] = {"dir": str(tmp_path / "reports")}
    scenario = tmp_path / "autoscale.yaml"
    scenario.write_text(yaml.safe_dump(data))

    result = subprocess.run(
        [sys.executable, "-m", "harness.cli", "run", str(scenario)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=400,
        check=False,
    )
    assert result.returncode in (0, 1, 3), result.stderr[-3000:]
    (run_dir,) = [p for p in (tmp_path / "reports").iterdir() if p.is_dir()]
    events = [json.loads(line) for line in (run_dir / "events.jsonl").read_text().splitlines()]
    counts = [json.loads(line) for line in (run_dir / "replica_counts.jsonl").read_text().splitlines()]
    verdict = json.loads((run_dir / "verdict.json").read_text())
    stages = {s["name"]: s for s in json.loads((run_dir / "stages.json").read_text())}

    scale_ups = [e for e in events if e["kind"] == "scale_decision" and e["detail"]["to"] > e["detail"]["from"]]
    assert scale_ups, "the autoscaler scaled out under the load step"
    assert max(c["desired"] for c in counts) >= 2
    timeline = [
        (round(e["t_s"] - stages["step-up"]["start_s"], 1), e["kind"], e["detail"].get("replica"))
        for e in events
        if e["kind"] in ("scale_decision", "replica_started", "replica_ready", "replica_unready")
    ]
    assert max(c["ready"] for c in counts) >= 2, f"new replicas became ready and served: {timeline}"
    assert all(1 <= c["desired"] <= 3 for c in counts), "never outside minReplicas..maxReplicas"

    (step,) = verdict["autoscaling"]
    assert step["stage"] == "step-up"
    step_start = stages["step-up"]["start_s"]
    assert step["step_at_s"] == pytest.approx(step_start)
    first_up = min(e["t_s"] for e in scale_ups if e["t_s"] >= step_start)
    assert step["first_scale_up_decision_s"] == pytest.approx(first_up - step_start, abs=1e-6)
    in_step = [c for c in counts if step_start < c["t_s"] <= stages["step-up"]["end_s"]]
    assert step["replicas_max"] == max(c["ready"] for c in in_step)
    if step["new_replicas_ready_s"] is not None:
        ready_at = step_start + step["new_replicas_ready_s"]
        target = max(c["desired"] for c in in_step)
        assert any(c["t_s"] == pytest.approx(ready_at) and c["ready"] >= target for c in in_step)
    syncs = [e for e in events if e["kind"] == "autoscaler_sync"]
    metrics_seen = {p["metric"] for e in syncs for p in e["detail"]["proposals"]}
    assert metrics_seen == {"cpu", "bentoml_service_request_in_progress"}, "both signals are evaluated"
