"""`harness sweep`: runs one short open-model probe per arrival rate the pure search asks for.

Each probe is a whole run (deploy, warm up, one judged stage at a fixed arrival rate, verdict) in its
own run directory under the sweep's directory, so every probe can be inspected and re-reported.
The search itself (bracket, then bisect to the tolerance) is `harness.analysis.sweep`.
"""

from __future__ import annotations

import datetime as dt
import json
from typing import Any

from harness.analysis.sweep import Probe, next_rate, probe_duration_s, result
from harness.config import Scenario, Stage
from harness.errors import ConfigError
from harness.model import Status, to_json_dict
from harness.verdict import requests_to_pass_error_rate

# A probe's warm-up: long enough for connections, batching and caches to settle.
WARMUP_S = 5.0
# Hard bound on probes, whatever the tolerance: a sweep must end.
MAX_PROBES = 24


def probe_scenario(scenario: Scenario, rate_rps: float, duration_s: float, run_id: str, index: int) -> Scenario:
    """The scenario reduced to a warm-up and one judged open-model stage at `rate_rps`; each probe gets
    its own arrival seed, so a retried probe is a new sample rather than the same schedule again."""
    stages = [
        Stage(name="warmup", duration_s=WARMUP_S, arrival_rate_rps=rate_rps, judged=False),
        Stage(name="probe", duration_s=duration_s, arrival_rate_rps=rate_rps, arrival="poisson"),
    ]
    # Latency and errors decide; a fixed throughput floor would fail every probe below it, and a
    # service that falls behind an open-model rate shows it as queueing latency anyway.
    objectives = [
        o.model_copy(update={"stages": None})
        for o in scenario.objectives
        if o.percentile is not None or o.metric == "error_rate"
    ]
    return scenario.model_copy(
        update={
            "stages": stages,
            "objectives": objectives,
            "autoscaling": None,
            "load": scenario.load.model_copy(update={"seed": scenario.load.seed + 1000 * index}),
            "output": scenario.output.model_copy(update={"run_id": run_id}),
        }
    )


def probe_passed(status: Status) -> bool | None:
    """PASS proves the rate sustainable, FAIL disproves it; WARN and INCONCLUSIVE prove nothing."""
    return {Status.PASS: True, Status.FAIL: False}.get(status)


def run_sweep(
    scenario: Scenario,
    *,
    initial_rps: float,
    max_rps: float,
    tolerance: float,
    min_probe_s: float | None,
    console: Any,
) -> int:
    """Search the maximum sustainable arrival rate; writes sweep.json; 0 found, 3 when no rate passed."""
    from harness.run import Run

    if not scenario.objectives:
        raise ConfigError("harness sweep needs objectives: the maximum rate is the highest one where they all hold")
    latency_percentiles = [o.percentile for o in scenario.objectives if o.percentile is not None]
    percentile = max(latency_percentiles, default=95.0)
    error_rate_requests = max(
        (
            requests_to_pass_error_rate(o.max, scenario.validity.confidence)
            for o in scenario.objectives
            if o.metric == "error_rate" and o.max is not None and 0 < o.max < 1
        ),
        default=0,
    )
    sweep_id = f"{dt.datetime.now(dt.UTC).strftime('%Y%m%dT%H%M%SZ')}-{scenario.name}-sweep"
    sweep_dir = scenario.output.dir / sweep_id
    base = scenario.model_copy(update={"output": scenario.output.model_copy(update={"dir": sweep_dir})})
    probes: list[Probe] = []
    records: list[dict[str, Any]] = []
    while len(probes) < MAX_PROBES:
        rate = next_rate(probes, initial_rps=initial_rps, max_rps=max_rps, tolerance=tolerance)
        if rate is None:
            break
        duration_s = probe_duration_s(
            rate,
            percentile=percentile,
            min_tail_samples=scenario.validity.min_tail_samples,
            min_duration_s=min_probe_s if min_probe_s is not None else 10.0,
        )
        # An error-rate objective can only PASS with enough requests, even with no failure at all;
        # 20% more arrivals than that covers Poisson shortfall.
        duration_s = max(duration_s, 1.2 * error_rate_requests / rate)
        run_id = f"probe-{len(probes) + 1:02d}-{rate:.1f}rps"
        console.print(f"probe {len(probes) + 1}: {rate:.1f} rps for {duration_s:.0f} s")
        outcome = Run(probe_scenario(base, rate, duration_s, run_id, len(probes))).execute()
        status = outcome.verdict.status if outcome.verdict else Status.INCONCLUSIVE
        probes.append(Probe(rate_rps=rate, passed=probe_passed(status)))
        probe_stage = next((s for s in outcome.verdict.stages if s.name == "probe"), None) if outcome.verdict else None
        records.append(
            {
                "rate_rps": rate,
                "duration_s": duration_s,
                "status": status.value,
                "achieved_rps": probe_stage.achieved_rps if probe_stage else None,
                "run_dir": str(outcome.run_dir),
            }
        )
        console.print(
            f"  -> {status.value}" + (f", achieved {probe_stage.achieved_rps:.1f} rps" if probe_stage else "")
        )
        if outcome.interrupted:
            raise KeyboardInterrupt
    found = result(probes, max_rps=max_rps)
    summary = {"sweep_id": sweep_id, "result": to_json_dict(found), "probes": records}
    sweep_dir.mkdir(parents=True, exist_ok=True)
    (sweep_dir / "sweep.json").write_text(json.dumps(summary, indent=2) + "\n")
    console.print(found.reason)
    if found.max_sustainable_rps is not None:
        console.print(f"maximum sustainable arrival rate: {found.max_sustainable_rps:.1f} rps ({sweep_dir}/sweep.json)")
        return 0
    return 3
