"""`harness sweep`: runs one short open-model probe per arrival rate the pure search asks for.

Each probe is a whole run (deploy, warm up, one judged stage at a fixed arrival rate, verdict) in its
own run directory under the sweep's directory, so every probe can be inspected and re-reported.
The search itself (bracket, then bisect to the tolerance) is `harness.analysis.sweep`.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Sequence
from typing import Any

from harness.analysis.saturation import scaling_efficiency
from harness.analysis.sweep import next_rate, probe_duration_s, result
from harness.config import Scenario, Stage
from harness.errors import ConfigError
from harness.exit_codes import ExitCode
from harness.model import Probe, Status, SweepProbeRecord, SweepResult, SweepSummary
from harness.objectives import OBJECTIVE_METRICS, metric_percentile
from harness.rundir import write_sweep_summary
from harness.targets.kinds import TARGET_KINDS
from harness.targets.registry import target_kind

# A probe's warm-up by default (--warmup-s): long enough for connections, batching and caches to settle.
WARMUP_S = 5.0
# Hard bound on probes, whatever the tolerance: a sweep must end.
MAX_PROBES = 24


def probe_scenario(
    scenario: Scenario, rate_rps: float, duration_s: float, run_id: str, index: int, warmup_s: float = WARMUP_S
) -> Scenario:
    """The scenario reduced to a warm-up of `warmup_s` (none at 0) and one judged open-model stage at `rate_rps`;
    each probe gets its own arrival seed, so a retried probe is a new sample rather than the same schedule again."""
    warmup = [Stage(name="warmup", duration_s=warmup_s, arrival_rate_rps=rate_rps, judged=False)] if warmup_s else []
    stages = [*warmup, Stage(name="probe", duration_s=duration_s, arrival_rate_rps=rate_rps, arrival="poisson")]
    objectives = [o.model_copy(update={"stages": None}) for o in scenario.objectives if o.kind.decides_sweep_probes]
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


def _search(
    base: Scenario,
    *,
    initial_rps: float,
    max_rps: float,
    tolerance: float,
    min_probe_s: float | None,
    warmup_s: float,
    console: Any,
    label: str,
    on_probe: Callable[[SweepProbeRecord], None],
) -> tuple[SweepResult, list[SweepProbeRecord]]:
    """One bracket-then-bisect search on `base`'s target; every probe is a run under base's output dir."""
    from harness.run import Run

    # The probes' length follows the highest percentile they judge (latency, TTFT, ITL, TPOT); without one, the
    # objectives that need a number of requests to pass at all (error_rate, goodput_fraction) set it.
    percentiles = [q for o in base.objectives if (q := metric_percentile(o.metric)) is not None]
    requests_to_pass = max(
        (
            o.kind.requests_to_pass(o.max, o.min, base.validity.confidence)
            for o in base.objectives
            if o.kind.requests_to_pass is not None
        ),
        default=0,
    )
    probes: list[Probe] = []
    records: list[SweepProbeRecord] = []
    while len(probes) < MAX_PROBES:
        rate = next_rate(probes, initial_rps=initial_rps, max_rps=max_rps, tolerance=tolerance)
        if rate is None:
            break
        min_duration_s = min_probe_s if min_probe_s is not None else 10.0
        duration_s = (
            probe_duration_s(
                rate,
                percentile=max(percentiles),
                min_tail_samples=base.validity.min_tail_samples,
                min_duration_s=min_duration_s,
            )
            if percentiles
            else min_duration_s
        )
        # Some objectives (an error rate) can only PASS with enough requests, even with no failure at all;
        # 20% more arrivals than that covers Poisson shortfall.
        duration_s = max(duration_s, 1.2 * requests_to_pass / rate)
        run_id = f"{label}probe-{len(probes) + 1:02d}-{rate:.1f}rps"
        console.print(f"{label}probe {len(probes) + 1}: {rate:.1f} rps for {duration_s:.0f} s")
        outcome = Run(probe_scenario(base, rate, duration_s, run_id, len(probes), warmup_s)).execute()
        status = outcome.verdict.status if outcome.verdict else Status.INCONCLUSIVE
        probes.append(Probe(rate_rps=rate, passed=probe_passed(status)))
        probe_stage = next((s for s in outcome.verdict.stages if s.name == "probe"), None) if outcome.verdict else None
        records.append(
            SweepProbeRecord(
                replicas=base.target.replicas,
                rate_rps=rate,
                duration_s=duration_s,
                status=status.value,
                achieved_rps=probe_stage.achieved_rps if probe_stage else None,
                run_dir=str(outcome.run_dir),
            )
        )
        on_probe(records[-1])
        console.print(
            f"  -> {status.value}" + (f", achieved {probe_stage.achieved_rps:.1f} rps" if probe_stage else "")
        )
        if outcome.interrupted:
            raise KeyboardInterrupt
    return result(probes, max_rps=max_rps), records


def run_sweep(
    scenario: Scenario,
    *,
    initial_rps: float,
    max_rps: float,
    tolerance: float,
    min_probe_s: float | None,
    console: Any,
    warmup_s: float = WARMUP_S,
    replica_counts: Sequence[int] = (),
    on_probe: Callable[[SweepProbeRecord], None] = lambda record: None,
    on_result: Callable[[SweepSummary], None] = lambda summary: None,
) -> int:
    """Search the maximum sustainable arrival rate (at each of `replica_counts`, else at the scenario's
    replicas); writes sweep.json with the scaling efficiency when 1 replica and more were searched;
    0 when a rate was found everywhere, 3 otherwise. `on_probe` gets each probe's record as it ends and
    `on_result` the summary sweep.json holds."""
    if not scenario.objectives:
        raise ConfigError("harness sweep needs objectives: the maximum rate is the highest one where they all hold")
    if not any(o.kind.decides_sweep_probes for o in scenario.objectives):
        deciding = ", ".join(m.syntax for m in OBJECTIVE_METRICS if m.decides_sweep_probes)
        raise ConfigError(
            f"harness sweep needs an objective that can decide a probe ({deciding}): a rate floor such as "
            "throughput_rps or goodput_rps fails every probe below it; for goodput, bound goodput_fraction"
        )
    if warmup_s < 0:
        raise ConfigError(f"--warmup-s: a probe's warm-up must be >= 0 seconds, got {warmup_s:g}")
    counts = list(dict.fromkeys(replica_counts)) or [scenario.target.replicas]
    if any(count < 1 for count in counts):
        raise ConfigError(f"--replicas: replica counts must be >= 1, got {counts}")
    if not target_kind(scenario).deploys and counts != [scenario.target.replicas]:
        deployed = ", ".join(name for name, kind in TARGET_KINDS.items() if kind.deploys)
        raise ConfigError(f"--replicas needs a target the harness deploys ({deployed}), not {scenario.target.kind}")
    sweep_id = f"{dt.datetime.now(dt.UTC).strftime('%Y%m%dT%H%M%SZ')}-{scenario.name}-sweep"
    sweep_dir = scenario.output.dir / sweep_id
    results: dict[int, SweepResult] = {}
    all_records: list[SweepProbeRecord] = []
    for count in counts:
        base = scenario.model_copy(
            update={
                "output": scenario.output.model_copy(update={"dir": sweep_dir}),
                "target": scenario.target.model_copy(update={"replicas": count}),
            }
        )
        label = f"{count}r-" if len(counts) > 1 else ""
        found, records = _search(
            base,
            initial_rps=initial_rps,
            max_rps=max_rps,
            tolerance=tolerance,
            min_probe_s=min_probe_s,
            warmup_s=warmup_s,
            console=console,
            label=label,
            on_probe=on_probe,
        )
        results[count] = found
        all_records.extend(records)
        console.print(f"{count} replica(s): {found.reason}")
    maxima = {n: r.max_sustainable_rps for n, r in results.items() if r.max_sustainable_rps is not None}
    efficiency = scaling_efficiency(maxima)
    summary = SweepSummary(
        sweep_id=sweep_id,
        result=results[counts[0]],
        by_replicas={str(n): r for n, r in results.items()},
        scaling_efficiency=efficiency,
        probes=tuple(all_records),
    )
    summary_path = write_sweep_summary(sweep_dir, summary)
    for n, rate in maxima.items():
        console.print(f"maximum sustainable arrival rate at {n} replica(s): {rate:.1f} rps")
    if efficiency is not None:
        console.print(
            f"scaling efficiency (throughput at {max(maxima)} replicas / {max(maxima)} x one replica): {efficiency:.2f}"
        )
    console.print(f"sweep: {summary_path}")
    on_result(summary)
    return ExitCode.OK if len(maxima) == len(counts) else ExitCode.INCONCLUSIVE
