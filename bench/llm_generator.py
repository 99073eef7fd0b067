"""The harness's own column of `make bench-llm`, and its load generator's limits: the harness run for real (`harness
run`, an external target) against `bench/llm_server.py`, its TTFT, every-gap ITL and TPOT read from the verdict; and
how many concurrent streams one generator process holds on one core before its own timing degrades, with the CPU it
spends per token.

Capacity: the server runs on one CPU and the generator (load.cpus) on the other; at each level of concurrent streams
C the arrival rate is C over the mean request time (TTFT + (tokens - 1) gaps, 1.46 s by default), for a short
judged stage. The reference is what the server really did (GET /stats: its time to first token and every gap as
written), not its schedule: past a few hundred streams the server itself writes late, and that is no error of the
client. A level holds when the harness's TTFT and ITL p50/p95/p99 are within 3% of the server's and no request
failed. The generator's cost per token is its process's CPU time in the judged stage (ClientInterval.
loadgen_cpu_cores over each interval) over the tokens it read: everything it does, HTTP and scheduling included.
"""

from __future__ import annotations

import json
import subprocess
import sys
import urllib.request
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from bench.llm_server import Timing

HARNESS = [sys.executable, "-m", "harness.cli"]
MODEL = "bench-llm"
STAGE = "bench"
FIGURES = ("ttft", "itl", "tpot")


@dataclass(frozen=True)
class HarnessRun:
    """One harness run's figures of its judged stage: percentiles in ms and their sample counts, per figure; and what
    the load generator spent."""

    percentiles_ms: dict[str, dict[float, float]]
    samples: dict[str, int]
    streamed: int
    failures: int
    output_tokens: int
    loadgen_cpu_s: float
    loadgen_cpu_max_cores: float
    duration_s: float
    invalid_reasons: list[str]

    @property
    def cpu_per_token_us(self) -> float | None:
        return 1e6 * self.loadgen_cpu_s / self.output_tokens if self.output_tokens else None

    @property
    def tokens_per_s(self) -> float:
        return self.output_tokens / self.duration_s if self.duration_s > 0 else 0.0


def scenario(
    url: str, rate_rps: float, duration_s: float, out: Path, *, prompt_tokens: int, output_tokens: int, warmup_s: float
) -> dict[str, Any]:
    """The harness's scenario of one measurement: a constant arrival rate, the peers' prompt and output lengths."""
    return {
        "name": "bench-llm",
        "target": {"kind": "external", "urls": [url], "startup_timeout_s": 30},
        "service": {"readiness_path": "/readyz"},
        "stages": [
            {
                "name": "warmup",
                "duration_s": warmup_s,
                "arrival_rate_rps": rate_rps,
                "arrival": "constant",
                "judged": False,
            },
            {"name": STAGE, "duration_s": duration_s, "arrival_rate_rps": rate_rps, "arrival": "constant"},
        ],
        "requests": [
            {
                "name": "complete",
                "path": "/v1/completions",
                "openai": {
                    "model": MODEL,
                    "synthetic": {"input_tokens": prompt_tokens, "output_tokens": output_tokens},
                    "ignore_eos": True,
                },
            }
        ],
        "load": {"max_in_flight": 20_000, "request_timeout_s": 60},
        "output": {"dir": str(out)},
    }


def run_harness(
    url: str,
    out: Path,
    *,
    rate_rps: float,
    duration_s: float,
    prompt_tokens: int,
    output_tokens: int,
    warmup_s: float = 5.0,
    cpus: Sequence[int] | None = None,
) -> Path:
    """`harness run` of the measurement's scenario (written under `out`); its run directory."""
    data = scenario(
        url,
        rate_rps,
        duration_s,
        out / "reports",
        prompt_tokens=prompt_tokens,
        output_tokens=output_tokens,
        warmup_s=warmup_s,
    )
    if cpus is not None:
        data["load"]["cpus"] = list(cpus)
    out.mkdir(parents=True, exist_ok=True)
    path = out / f"harness-{rate_rps:g}rps.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    before = set((out / "reports").glob("*")) if (out / "reports").exists() else set()
    log = out / f"harness-{rate_rps:g}rps.log"
    with log.open("wb") as output:
        result = subprocess.run(
            [*HARNESS, "run", str(path)], stdout=output, stderr=subprocess.STDOUT, timeout=duration_s + 600
        )
    if result.returncode not in (0, 1, 3):  # a verdict with or without objectives; 2 is a harness error
        raise RuntimeError(f"harness exited with {result.returncode}; {log} ends:\n{log.read_text()[-1500:]}")
    (run_dir,) = set((out / "reports").glob("*")) - before
    return run_dir


def read_run(run_dir: Path, quantiles: Sequence[float]) -> HarnessRun:
    """The judged stage's figures from verdict.json, and the generator's CPU from client_intervals.jsonl."""
    verdict = json.loads((run_dir / "verdict.json").read_text())
    stage = next(s for s in verdict["stages"] if s["name"] == STAGE)
    percentiles: dict[str, dict[float, float]] = {}
    samples: dict[str, int] = {}
    for figure in FIGURES:
        estimates = stage[figure]
        percentiles[figure] = {q: 1000.0 * estimates[f"p{q:g}"]["value_s"] for q in quantiles}
        samples[figure] = int(estimates[f"p{quantiles[0]:g}"]["samples"])
    cpu_s, cpu_max = 0.0, 0.0
    for line in (run_dir / "client_intervals.jsonl").read_text().splitlines():
        record = json.loads(line)
        if record.get("stage") == STAGE and record.get("loadgen_cpu_cores") is not None:
            cpu_s += record["loadgen_cpu_cores"] * (record["t_end_s"] - record["t_start_s"])
            cpu_max = max(cpu_max, record["loadgen_cpu_cores"])
    return HarnessRun(
        percentiles_ms=percentiles,
        samples=samples,
        streamed=int(stage["streamed"]),
        failures=int(stage["failures"]),
        output_tokens=int(stage["output_tokens"]),
        loadgen_cpu_s=cpu_s,
        loadgen_cpu_max_cores=cpu_max,
        duration_s=float(stage["duration_s"]),
        invalid_reasons=list(stage["invalid_reasons"]),
    )


# --------------------------------------------------------------------------- concurrent streams on one core


@dataclass(frozen=True)
class Level:
    """One level of the capacity measurement."""

    streams: int
    rate_rps: float
    run: HarnessRun
    # figure -> percentile -> (measured by the harness / as the server wrote, within the tolerance)
    ratios: dict[str, dict[float, tuple[float, bool]]]
    server_late_p99_ms: float | None

    @property
    def holds(self) -> bool:
        return not self.run.failures and all(ok for by_q in self.ratios.values() for _, ok in by_q.values())


def mean_request_s(timing: Timing, output_tokens: int) -> float:
    """A request's mean time on the server: mean TTFT and output_tokens - 1 mean gaps."""
    ttft_s = (timing.ttft_min_ms + timing.ttft_max_ms) / 2000.0
    return ttft_s + (output_tokens - 1) * (timing.itl_min_ms + timing.itl_max_ms) / 2000.0


def server_stats(url: str, reset: bool = False) -> dict[str, Any]:
    with urllib.request.urlopen(url + ("/stats?reset" if reset else "/stats"), timeout=30) as answer:
        stats: dict[str, Any] = json.loads(answer.read())
    return stats


def against_server(
    run: HarnessRun, stats: dict[str, Any], quantiles: Sequence[float], tolerance: float
) -> dict[str, dict[float, tuple[float, bool]]]:
    """The harness's TTFT and ITL percentiles over the server's own (as written), each within `tolerance` or not."""
    ratios: dict[str, dict[float, tuple[float, bool]]] = {}
    for figure in ("ttft", "itl"):
        written = stats.get(f"{figure}_ms") or {}
        ratios[figure] = {}
        for q in quantiles:
            reference = written.get(f"p{q:g}")
            ratio = run.percentiles_ms[figure][q] / reference if reference else float("nan")
            ratios[figure][q] = (ratio, abs(ratio - 1) <= tolerance)
    return ratios


def measure_level(
    url: str,
    out: Path,
    streams: int,
    timing: Timing,
    *,
    duration_s: float,
    prompt_tokens: int,
    output_tokens: int,
    cpus: Sequence[int],
    quantiles: Sequence[float],
    tolerance: float,
) -> Level:
    """Run the generator at `streams` concurrent streams and compare its figures with the server's own."""
    rate_rps = streams / mean_request_s(timing, output_tokens)
    server_stats(url, reset=True)
    run_dir = run_harness(
        url,
        out / f"streams-{streams}",
        rate_rps=round(rate_rps, 2),
        duration_s=duration_s,
        prompt_tokens=prompt_tokens,
        output_tokens=output_tokens,
        warmup_s=3.0,
        cpus=cpus,
    )
    stats = server_stats(url)
    run = read_run(run_dir, quantiles)
    late = (stats.get("lateness_ms") or {}).get("p99")
    return Level(streams, rate_rps, run, against_server(run, stats, quantiles, tolerance), late)


def format_levels(levels: Sequence[Level]) -> str:
    """One line per level: streams, tokens/s, generator CPU, per-token cost, server lateness, ratios, verdict."""
    lines = [
        f"{'streams':>7} {'rps':>6} {'tokens/s':>9} {'gen CPU':>8} {'us/token':>8} {'server late p99':>15}  "
        "TTFT p50/p95/p99 and ITL p50/p95/p99, measured / as the server wrote them"
    ]
    for level in levels:
        cost = level.run.cpu_per_token_us
        late = "n/a" if level.server_late_p99_ms is None else f"{level.server_late_p99_ms:.1f} ms"
        ratios = " ".join(
            f"{ratio:.3f}{'' if ok else '!'}"
            for figure in ("ttft", "itl")
            for ratio, ok in level.ratios[figure].values()
        )
        lines.append(
            f"{level.streams:>7} {level.rate_rps:>6.1f} {level.run.tokens_per_s:>9.0f} "
            f"{level.run.loadgen_cpu_s / level.run.duration_s:>7.2f}c {'n/a' if cost is None else f'{cost:.1f}':>8} "
            f"{late:>15}  {ratios}  {'holds' if level.holds else 'DEGRADED'}"
        )
    return "\n".join(lines)


def ceiling(levels: Sequence[Level]) -> int | None:
    """The most concurrent streams at which the generator's timing held, every lower level holding too."""
    held = None
    for level in sorted(levels, key=lambda level: level.streams):
        if not level.holds:
            break
        held = level.streams
    return held
