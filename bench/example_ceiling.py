"""The digits example against BentoML's own ceiling (`make bench-example`): one local replica of a no-op
BentoML endpoint (bench/noop_service) and one of examples/digits, each under a closed load of 16 users,
run by the harness one after the other in this one invocation (alternating when ROUNDS > 1). Prints each
one's throughput, p95, p99 and p99/p95, and the example's share of the no-op's throughput.

Goals (issue 12): the example reaches at least 70% of the no-op's throughput, with p99 under 3x p95.
Writes reports/bench-example.json.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "reports" / "bench-example.json"
NOOP = "no-op"
EXAMPLE = "example"
SERVICES = {
    NOOP: (ROOT / "bench" / "noop_service", "service:Noop"),
    EXAMPLE: (ROOT / "examples" / "digits", "service:DigitsClassifier"),
}
USERS = 16
WARMUP_S = 10.0
STAGE_S = 30.0
GOAL_SHARE = 0.70
GOAL_TAIL_RATIO = 3.0


@dataclass(frozen=True)
class Measured:
    """One run's users-16 stage."""

    service: str
    achieved_rps: float
    p95_ms: float | None
    p99_ms: float | None
    requests: int
    failures: int
    run_dir: str

    @property
    def tail_ratio(self) -> float | None:
        return None if self.p95_ms is None or self.p99_ms is None else self.p99_ms / self.p95_ms


def scenario(name: str, service_dir: Path, service: str, output: Path, stage_s: float) -> Any:
    """One replica on the local target, as `make loadtest` runs them (same resources), at USERS users."""
    from harness.config import parse_scenario

    return parse_scenario(
        {
            "name": f"bench-example-{name}",
            "service": {"path": str(service_dir), "service": service, "endpoint": "/classify"},
            "target": {"kind": "local", "replicas": 1},
            "resources": {"requests": {"cpu": "500m", "memory": "512Mi"}},
            "stages": [
                {"name": "warmup", "duration_s": WARMUP_S, "users": USERS, "spawn_rate": USERS, "judged": False},
                {"name": f"users-{USERS}", "duration_s": stage_s, "users": USERS, "spawn_rate": USERS},
            ],
            "payload": {"source": "digits"},
            "objectives": [{"metric": "error_rate", "max": 0.01}],
            "output": {"dir": str(output)},
        },
        source=f"bench scenario '{name}'",
    )


def measure(name: str, output: Path, stage_s: float) -> Measured:
    """Run the harness once on `name`'s service; its users-16 stage."""
    from harness.run import Run

    service_dir, service = SERVICES[name]
    outcome = Run(scenario(name, service_dir, service, output, stage_s)).execute()
    if outcome.verdict is None:
        raise RuntimeError(f"run {outcome.run_dir} produced no verdict (exit code {outcome.exit_code})")
    stage = next(s for s in outcome.verdict.stages if s.name == f"users-{USERS}")

    def ms(q: str) -> float | None:
        estimate = stage.latency.get(q)
        return None if estimate is None or estimate.value_s is None else estimate.value_s * 1000.0

    return Measured(
        name, stage.achieved_rps, ms("p95"), ms("p99"), stage.requests, stage.failures, str(outcome.run_dir)
    )


def _fmt(value: float | None, digits: int = 1) -> str:
    return "n/a" if value is None else f"{value:.{digits}f}"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--rounds", type=int, default=1, help="no-op/example pairs to run, alternating")
    parser.add_argument("--stage-s", type=float, default=STAGE_S, help="length of the measured users-16 stage")
    args = parser.parse_args()
    stamp = dt.datetime.now(dt.UTC).strftime("%Y%m%dT%H%M%SZ")
    output = ROOT / "reports" / "bench-example-runs" / stamp
    started_s = time.monotonic()
    rounds: list[dict[str, Measured]] = []
    for round_index in range(args.rounds):
        rounds.append({})
        for name in SERVICES:
            print(f"round {round_index + 1}/{args.rounds}: {name}, 1 replica, {USERS} users", flush=True)
            rounds[-1][name] = measure(name, output, args.stage_s)
    print(
        f"{'round':<6} {'service':<10} {'rps':>7} {'of no-op':>9} {'p95 ms':>8} {'p99 ms':>8} {'p99/p95':>8} "
        f"{'errors':>7}"
    )
    shares: list[float] = []
    ratios: list[float] = []
    for round_index, measured in enumerate(rounds, start=1):
        noop_rps = measured[NOOP].achieved_rps
        for result in measured.values():
            share = result.achieved_rps / noop_rps if noop_rps > 0 else None
            if result.service == EXAMPLE:
                shares.extend([share] if share is not None else [])
                ratios.extend([result.tail_ratio] if result.tail_ratio is not None else [])
            print(
                f"{round_index:<6} {result.service:<10} {result.achieved_rps:>7.1f} "
                f"{'n/a' if share is None else f'{share:.0%}':>9} {_fmt(result.p95_ms):>8} {_fmt(result.p99_ms):>8} "
                f"{_fmt(result.tail_ratio, digits=2):>8} {result.failures:>7}"
            )
    share_ok = bool(shares) and min(shares) >= GOAL_SHARE
    tail_ok = bool(ratios) and max(ratios) < GOAL_TAIL_RATIO
    print(
        f"example/no-op throughput: {', '.join(f'{s:.0%}' for s in shares)} (goal >= {GOAL_SHARE:.0%}: "
        f"{'met' if share_ok else 'not met'}); example p99/p95: {', '.join(f'{r:.2f}' for r in ratios)} "
        f"(goal < {GOAL_TAIL_RATIO:g}: {'met' if tail_ok else 'not met'}); load average "
        f"{os.getloadavg()[0]:.1f} on {os.cpu_count()} cores; {time.monotonic() - started_s:.0f} s"
    )
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(
        json.dumps(
            {
                "created_at": stamp,
                "rounds": [{name: {**asdict(r), "tail_ratio": r.tail_ratio} for name, r in m.items()} for m in rounds],
                "throughput_shares": shares,
            },
            indent=2,
        )
        + "\n"
    )
    return 0 if share_ok and tail_ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
