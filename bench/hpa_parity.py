"""The harness's HPA emulation against the real controller (`make bench-hpa`): one autoscaling scenario, run
on the local target (the harness's own autoscaling/v2 algorithm, harness/autoscaling.py) and on the test
cluster of scripts/cluster (kube-controller-manager's HorizontalPodAutoscaler over metrics-server and
prometheus-adapter), printed side by side: the first scale-up decision after the step, when the new
replicas were ready, seconds above the latency objective, and the desired replicas every 10 s.

Both runs use loadtests/autoscale.yaml unchanged but for the target; the cluster run sends load to the pod
IPs. Writes the table to reports/bench-hpa-parity.md. Needs `make cluster` and Docker (the image).
"""

from __future__ import annotations

import subprocess
import sys
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from harness.model import ReplicaCount
from harness.rundir import RunDirectory

ROOT = Path(__file__).resolve().parents[1]
SCENARIO = ROOT / "loadtests" / "autoscale.yaml"
STEP_STAGE = "step-up"
BUCKET_S = 10.0
CLUSTER_FLAGS = (
    "--target",
    "kubernetes",
    "--base-image",
    "harness-python:bookworm",
    "--ca-bundle",
    "/etc/ssl/certs/ca-certificates.crt",
    "--set",
    f"target.kubernetes.kubeconfig={ROOT / '.cluster' / 'kubeconfig'}",
    "--set",
    "target.kubernetes.node_containerd=/run/harness-cluster/containerd/containerd.sock",
    "--set",
    "target.kubernetes.load_route=pod-ip",
)


@dataclass(frozen=True)
class AutoscalingRun:
    """What one run says about its autoscaler around the load step."""

    target: str
    status: str
    first_scale_up_decision_s: float | None
    new_replicas_ready_s: float | None
    violation_s: float | None
    replicas_max: int | None
    replicas_final: int | None
    # Desired replicas at step start + k * BUCKET_S (k = 0, 1, ...), through the end of the run.
    desired_every_bucket: tuple[int, ...]


def desired_timeline(counts: Sequence[ReplicaCount], start_s: float, end_s: float) -> tuple[int, ...]:
    """The desired replica count in force at start_s, start_s + BUCKET_S, ... up to end_s (last record at or
    before each instant; the first record's count before it)."""
    ordered = sorted(counts, key=lambda c: c.t_s)
    timeline = []
    t_s = start_s
    while t_s <= end_s and ordered:
        before = [c for c in ordered if c.t_s <= t_s]
        timeline.append((before[-1] if before else ordered[0]).desired)
        t_s += BUCKET_S
    return tuple(timeline)


def read_run(path: Path, target: str) -> AutoscalingRun:
    run_dir = RunDirectory(path)
    verdict = run_dir.read_verdict()
    stages = {s.name: s for s in run_dir.read_stages()}
    step = next((s for s in verdict.autoscaling if s.stage == STEP_STAGE), None)
    last_end_s = max(s.end_s for s in stages.values())
    return AutoscalingRun(
        target=target,
        status=verdict.status.value,
        first_scale_up_decision_s=step.first_scale_up_decision_s if step else None,
        new_replicas_ready_s=step.new_replicas_ready_s if step else None,
        violation_s=step.violation_s if step else None,
        replicas_max=step.replicas_max if step else None,
        replicas_final=step.replicas_final if step else None,
        desired_every_bucket=desired_timeline(
            run_dir.read_records(ReplicaCount), stages[STEP_STAGE].start_s, last_end_s
        ),
    )


def _seconds(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.1f} s"


def parity_table(local: AutoscalingRun, cluster: AutoscalingRun) -> str:
    """A Markdown table of both runs' figures and the difference (cluster - local)."""

    def difference(a: float | None, b: float | None) -> str:
        return "n/a" if a is None or b is None else f"{b - a:+.1f} s"

    rows = [
        ("verdict", local.status, cluster.status, ""),
        (
            "first scale-up decision after the step",
            _seconds(local.first_scale_up_decision_s),
            _seconds(cluster.first_scale_up_decision_s),
            difference(local.first_scale_up_decision_s, cluster.first_scale_up_decision_s),
        ),
        (
            "new replicas ready after the step",
            _seconds(local.new_replicas_ready_s),
            _seconds(cluster.new_replicas_ready_s),
            difference(local.new_replicas_ready_s, cluster.new_replicas_ready_s),
        ),
        (
            "seconds above the p95 objective",
            _seconds(local.violation_s),
            _seconds(cluster.violation_s),
            difference(local.violation_s, cluster.violation_s),
        ),
        (
            "replicas max / final in the step",
            f"{local.replicas_max} / {local.replicas_final}",
            f"{cluster.replicas_max} / {cluster.replicas_final}",
            "",
        ),
        (
            f"desired replicas every {BUCKET_S:g} s from the step",
            " ".join(map(str, local.desired_every_bucket)),
            " ".join(map(str, cluster.desired_every_bucket)),
            "",
        ),
    ]
    lines = ["| figure | local (harness HPA) | cluster (real HPA) | cluster - local |", "|---|---|---|---|"]
    lines += [f"| {a} | {b} | {c} | {d} |" for a, b, c, d in rows]
    return "\n".join(lines)


def run_scenario(output_dir: Path, extra: Sequence[str]) -> Path:
    command = [sys.executable, "-m", "harness.cli", "run", str(SCENARIO), "--set", f"output.dir={output_dir}", *extra]
    result = subprocess.run(command, cwd=ROOT, check=False, timeout=900)
    if result.returncode not in (0, 1, 3):
        raise SystemExit(f"bench: {' '.join(command)} exited {result.returncode}")
    (run_dir,) = [path for path in output_dir.iterdir() if path.is_dir()]
    return run_dir


def main() -> int:
    with tempfile.TemporaryDirectory(prefix="hpa-parity-") as scratch:
        local = read_run(run_scenario(Path(scratch) / "local", ()), "local")
        cluster = read_run(run_scenario(Path(scratch) / "cluster", CLUSTER_FLAGS), "cluster")
    table = parity_table(local, cluster)
    print(table)
    output = ROOT / "reports" / "bench-hpa-parity.md"
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(f"# {SCENARIO.name}: harness HPA (local) against the real HPA (cluster)\n\n{table}\n")
    print(f"written: {output}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
