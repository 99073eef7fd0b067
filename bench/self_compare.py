"""False-regression rate of `harness compare` (`make bench-compare`): one short scenario run RUNS + 1 times
against the same synthetic server (jitter mode), each run compared with the next as baseline and
candidate. Nothing changed between them, so every regression reported is a false one; the goal is at
most 5% of the comparisons. Prints each comparison's flagged metrics and the rate with its exact
(Clopper-Pearson) 95% interval; writes reports/bench-self-compare.json.
"""

from __future__ import annotations

import datetime as dt
import itertools
import json
import sys
import time
from pathlib import Path

from scipy.stats import beta

from bench.accuracy import RESULTS_FILE, ROOT, Workspace, run_stages, synthetic_server
from harness.analysis.compare import compare, summarize_run
from harness.model import ClientInterval
from harness.rundir import RunDirectory

RESULTS = RESULTS_FILE.with_name("bench-self-compare.json")
RUNS = 20
RATE_RPS = 100.0
WARMUP_S = 2.0
STEADY_S = 8.0
GOAL = 0.05


def clopper_pearson(successes: int, trials: int, confidence: float = 0.95) -> tuple[float, float]:
    """Exact binomial interval for successes/trials."""
    tail = (1 - confidence) / 2
    low = 0.0 if successes == 0 else float(beta.ppf(tail, successes, trials - successes + 1))
    high = 1.0 if successes == trials else float(beta.ppf(1 - tail, successes + 1, trials - successes))
    return low, high


def main() -> int:
    started_s = time.monotonic()
    stamp = dt.datetime.now(dt.UTC).strftime("%Y%m%dT%H%M%SZ")
    workspace = Workspace(ROOT / "reports" / "bench-self-compare-runs" / stamp)
    stages = [
        {"name": "warmup", "duration_s": WARMUP_S, "arrival_rate_rps": RATE_RPS, "judged": False},
        {"name": "steady", "duration_s": STEADY_S, "arrival_rate_rps": RATE_RPS},
    ]
    with synthetic_server("--mode", "jitter", "--base-ms", "20", "--jitter-ms", "20") as url:
        for index in range(RUNS + 1):
            print(f"run {index + 1}/{RUNS + 1}", flush=True)
            run_stages(workspace, f"self-compare-{index}", url, stages)
    summaries = [
        summarize_run(RunDirectory(Path(p)).read_stages(), RunDirectory(Path(p)).read_records(ClientInterval))
        for p in workspace.runs
    ]
    flagged: list[list[str]] = []
    for baseline, candidate in itertools.pairwise(summaries):
        comparison = compare(baseline, candidate)
        flagged.append([f"{m.stage} {m.metric} {m.reason}" for m in comparison.metrics if m.regression])
    regressions = sum(1 for metrics in flagged if metrics)
    low, high = clopper_pearson(regressions, len(flagged))
    for index, metrics in enumerate(flagged, start=1):
        if metrics:
            print(f"  compare {index}: " + "; ".join(metrics))
    rate = regressions / len(flagged)
    print(
        f"false regressions: {regressions}/{len(flagged)} self-compares ({rate:.0%}, 95% CI {low:.0%}-{high:.0%}); "
        f"goal at most {GOAL:.0%}; {RATE_RPS:g} rps for {STEADY_S:g} s per run; {time.monotonic() - started_s:.0f} s"
    )
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(
        json.dumps(
            {"created_at": stamp, "regressions": regressions, "compares": len(flagged), "flagged": flagged}, indent=2
        )
        + "\n"
    )
    return 0 if rate <= GOAL else 1


if __name__ == "__main__":
    sys.exit(main())
