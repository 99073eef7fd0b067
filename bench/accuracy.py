"""Measures the harness's own accuracy against servers of known behaviour (`make bench`).

Runs the real harness (external target, real Locust) against `bench/synthetic_server.py` and prints
the truth and what the harness measured side by side: latency percentiles (jitter mode: uniform
latency, open and closed model; queue mode: M/D/1 sojourn times) and the maximum sustainable rate
`harness sweep` finds on the M/D/1 server, against the highest rate whose M/D/1 p99 meets the same
objective. Writes the table to reports/bench-accuracy.json.

Truth: the server's latency as a client with next to no overhead of its own sees it: the analytic
latency plus what the server and the loopback add to every request (the round trip wrk measures
against the same server answering at once, and the event loop's timer overshoot); the bare truth
leaves that out. The harness's own overhead is not in the truth: it is what the comparison measures.
Beside the harness, wrk measures the same jitter server in one run (closed model only: wrk cannot
send at a fixed rate, and wrk2 is not in Debian; on the jitter server, where requests do not queue,
latency does not depend on how they arrive, so wrk's figures are the reference for the open stage
too). Besides a relative tolerance, each figure has an "ideal band":
where a perfect observer of a stage like the measured one (same duration at the same arrival rate;
closed model: same number of requests) lands 90% of the time (for the sweep: the harness's own
search and confidence rule on exactly simulated probes). Queueing latencies
are autocorrelated, so a 30 s window's p99 varies by tens of percent however well it is measured;
the band says how much. Exits 1 when a figure is outside both its tolerance and its ideal band.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import functools
import itertools
import json
import os
import random
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from harness.analysis.latency import min_samples_for_percentile, order_statistic_ranks, percentile_rank
from harness.analysis.sweep import next_rate, probe_duration_s, result
from harness.model import Probe, to_json_dict
from harness.processes import free_port, spawn, stop_tree
from harness.sweep import MAX_PROBES
from harness.sweep import WARMUP_S as SWEEP_WARMUP_S

ROOT = Path(__file__).resolve().parents[1]
SERVER = ROOT / "bench" / "synthetic_server.py"
RESULTS_FILE = ROOT / "reports" / "bench-accuracy.json"
QUANTILES: tuple[float, ...] = (50.0, 95.0, 99.0)
BAND_COVERAGE = 0.90
TRUTH_SEED = 20240601

PERCENTILE_TOLERANCE = 0.03
THROUGHPUT_TOLERANCE = 0.10

# Jitter mode: latency base + U(0, jitter), all requests in parallel, no queueing.
JITTER_BASE_MS = 20.0
JITTER_MS = 20.0
OPEN_RATE_RPS = 150.0
OPEN_S = 30.0
CLOSED_USERS = 4
# wrk: one thread, CLOSED_USERS connections; its Lua script posts a body and prints its percentiles.
WRK_GRID = 1000
CLOSED_S = 20.0
OVERHEAD_S = 12.0
WARMUP_S = 3.0

# Queue mode: one FIFO worker, deterministic service: M/D/1 under Poisson arrivals.
SERVICE_MS = 10.0
QUEUE_RHOS: tuple[float, ...] = (0.5, 0.8)
QUEUE_STAGE_S = 30.0
LINDLEY_ARRIVALS = 1_000_000

# Maximum throughput: the highest rate whose p99 stays under this bound (about rho 0.77 for M/D/1).
SWEEP_P99_BOUND_MS = 100.0
SWEEP_INITIAL_RPS = 50.0
SWEEP_TOLERANCE = 0.05
SWEEP_MIN_PROBE_S = 10.0
IDEAL_SWEEPS = 1000


# --------------------------------------------------------------------------- the truth (pure)


def lindley_sojourn_ms(gaps_ms: npt.NDArray[np.float64], service_ms: float) -> npt.NDArray[np.float64]:
    """Sojourn times (wait + service) of a FIFO single server with fixed service, starting empty.

    gaps_ms[i] is the time between arrival i-1 and i (gaps_ms[0] is ignored). Lindley:
    W_0 = 0, W_i = max(0, W_{i-1} + S - gap_i); unrolled, W_i = C_i - min(0, min_{k<=i} C_k) with C
    the running sum of S - gap, so the recursion is two cumulative numpy passes.
    """
    if service_ms <= 0:
        raise ValueError(f"service_ms={service_ms} must be > 0")
    steps = service_ms - np.asarray(gaps_ms, dtype=np.float64)
    if steps.size:
        steps[0] = 0.0
    running = np.cumsum(steps)
    waits = running - np.minimum.accumulate(np.minimum(running, 0.0))
    sojourn: npt.NDArray[np.float64] = waits + service_ms
    return sojourn


def md1_path_ms(
    rho: float, service_ms: float, arrivals: int = LINDLEY_ARRIVALS, seed: int = TRUTH_SEED
) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.float64]]:
    """Arrival times and sojourn times (ms) of `arrivals` Poisson customers of an M/D/1 queue at utilisation rho.

    The same seed scales the same exponential draws for every rho, so every quantile grows
    monotonically with rho (bisection over rho is well defined).
    """
    if not 0 < rho < 1:
        raise ValueError(f"rho={rho} must be within (0, 1): at rho >= 1 the queue has no steady state")
    if arrivals < 1:
        raise ValueError(f"arrivals={arrivals} must be >= 1")
    gaps_ms = np.random.default_rng(seed).standard_exponential(arrivals) * (service_ms / rho)
    return np.cumsum(gaps_ms), lindley_sojourn_ms(gaps_ms, service_ms)


def md1_sojourn_ms(
    rho: float, service_ms: float, arrivals: int = LINDLEY_ARRIVALS, seed: int = TRUTH_SEED
) -> npt.NDArray[np.float64]:
    """Sojourn times (ms) of `arrivals` Poisson customers of an M/D/1 queue at utilisation rho."""
    return md1_path_ms(rho, service_ms, arrivals, seed)[1]


def md1_quantiles_ms(
    rho: float, service_ms: float, quantiles: Sequence[float] = QUANTILES, arrivals: int = LINDLEY_ARRIVALS
) -> dict[float, float]:
    """Steady-state quantiles of the M/D/1 sojourn time at utilisation rho, in ms."""
    values = np.percentile(md1_sojourn_ms(rho, service_ms, arrivals), list(quantiles))
    return {q: float(v) for q, v in zip(quantiles, values, strict=True)}


def md1_max_rate_rps(
    service_ms: float,
    quantile: float,
    bound_ms: float,
    overhead_ms: float = 0.0,
    *,
    arrivals: int = LINDLEY_ARRIVALS,
    rel_tolerance: float = 1e-4,
) -> float:
    """The highest Poisson arrival rate at which the M/D/1 sojourn quantile plus overhead stays <= bound_ms."""
    if bound_ms - overhead_ms <= service_ms:
        raise ValueError(
            f"bound_ms={bound_ms} leaves no room: an idle server already takes service_ms={service_ms} "
            f"plus overhead_ms={overhead_ms}"
        )

    def meets(rho: float) -> bool:
        return md1_quantiles_ms(rho, service_ms, (quantile,), arrivals)[quantile] + overhead_ms <= bound_ms

    low, high = 1e-3, 1.0 - 1e-6
    if meets(high):
        return high * 1000.0 / service_ms
    while (high - low) / low > rel_tolerance:
        middle = (low + high) / 2.0
        low, high = (middle, high) if meets(middle) else (low, middle)
    return low * 1000.0 / service_ms


def count_edges(length: int, window: int) -> npt.NDArray[np.intp]:
    """Window boundaries splitting a path of `length` samples into whole windows of `window` samples."""
    if window < 1:
        raise ValueError(f"window={window} must be >= 1")
    return np.arange(0, (length // window) * window + 1, window, dtype=np.intp)


def time_edges(arrival_ms: npt.NDArray[np.float64], window_ms: float) -> npt.NDArray[np.intp]:
    """Window boundaries splitting a path by its arrival times into whole windows of `window_ms`."""
    if window_ms <= 0:
        raise ValueError(f"window_ms={window_ms} must be > 0")
    starts_ms = np.arange(float(arrival_ms[0]), float(arrival_ms[-1]), window_ms)
    edges: npt.NDArray[np.intp] = np.searchsorted(arrival_ms, starts_ms).astype(np.intp)
    return edges


def window_band(
    path_ms: npt.NDArray[np.float64], q: float, edges: npt.NDArray[np.intp], coverage: float = BAND_COVERAGE
) -> tuple[float, float]:
    """Central `coverage` range of the q-th percentile over the windows path[edges[i]:edges[i+1]].

    What a perfect observer of one such window (a stage) would report, `coverage` of the time.
    """
    values = []
    for start, end in itertools.pairwise(edges):
        if end > start:
            rank = percentile_rank(q, int(end - start))
            values.append(float(np.partition(path_ms[start:end], rank - 1)[rank - 1]))
    if len(values) < 20:
        raise ValueError(f"a path of {len(path_ms)} samples holds only {len(values)} windows; need at least 20")
    tail = (1.0 - coverage) / 2.0
    low, high = np.quantile(values, [tail, 1.0 - tail])
    return float(low), float(high)


@functools.cache
def _ranks(n: int, q: float, confidence: float) -> tuple[int | None, int | None]:
    return order_statistic_ranks(n, q, confidence)


def ideal_probe_passed(
    latencies_ms: npt.NDArray[np.float64], q: float, bound_ms: float, confidence: float, min_tail_samples: int
) -> bool | None:
    """The harness's rule on exact latencies: PASS if the pNN CI lies under the bound, FAIL if above, else None."""
    n = len(latencies_ms)
    if n < min_samples_for_percentile(q, min_tail_samples):
        return None
    ordered = np.sort(latencies_ms)
    j, k = _ranks(n, q, confidence)
    ci_low = -np.inf if j is None else ordered[j - 1]
    ci_high = np.inf if k is None else ordered[k - 1]
    if ci_high <= bound_ms:
        return True
    if ci_low > bound_ms:
        return False
    return None


def ideal_sweep_rps(
    rng: np.random.Generator,
    *,
    service_ms: float = SERVICE_MS,
    q: float = 99.0,
    bound_ms: float = SWEEP_P99_BOUND_MS,
    overhead_ms: float = 0.0,
    initial_rps: float = SWEEP_INITIAL_RPS,
    tolerance: float = SWEEP_TOLERANCE,
    min_probe_s: float = SWEEP_MIN_PROBE_S,
    confidence: float = 0.95,
    min_tail_samples: int = 10,
) -> float | None:
    """One `harness sweep` of an M/D/1 server observed perfectly: the harness's search, probe lengths and
    confidence rule, with each probe's latencies simulated exactly (warm-up from empty, then the probe)."""
    max_rps = 1000.0 / service_ms
    probes: list[Probe] = []
    while len(probes) < MAX_PROBES:
        rate_rps = next_rate(probes, initial_rps=initial_rps, max_rps=max_rps, tolerance=tolerance)
        if rate_rps is None:
            break
        duration_s = probe_duration_s(
            rate_rps, percentile=q, min_tail_samples=min_tail_samples, min_duration_s=min_probe_s
        )
        total_s = SWEEP_WARMUP_S + duration_s
        gaps_ms = rng.exponential(1000.0 / rate_rps, size=int(rate_rps * total_s * 1.5) + 100)
        arrivals_ms = np.cumsum(gaps_ms)
        inside = arrivals_ms < total_s * 1000.0
        sojourn_ms = lindley_sojourn_ms(gaps_ms[inside], service_ms) + overhead_ms
        judged = sojourn_ms[arrivals_ms[inside] >= SWEEP_WARMUP_S * 1000.0]
        probes.append(Probe(rate_rps, ideal_probe_passed(judged, q, bound_ms, confidence, min_tail_samples)))
    return result(probes, max_rps=max_rps).max_sustainable_rps


# --------------------------------------------------------------------------- the comparison table


@dataclass(frozen=True)
class Comparison:
    """One figure the harness measured next to its truth."""

    part: str
    quantity: str
    truth: float
    measured: float | None
    # Relative tolerance on measured / truth; None: shown for information, not judged.
    tolerance: float | None
    # Where a perfect observer of the same sample lands BAND_COVERAGE of the time (same units as truth).
    band_low: float | None = None
    band_high: float | None = None
    bare_truth: float | None = None
    ci_low: float | None = None
    ci_high: float | None = None
    note: str = ""
    # The same figure measured by wrk on the same server in the same run (None: not measured).
    wrk: float | None = None

    @property
    def ratio(self) -> float | None:
        return None if self.measured is None else self.measured / self.truth

    @property
    def wrk_ratio(self) -> float | None:
        return None if self.wrk is None else self.wrk / self.truth

    @property
    def bare_ratio(self) -> float | None:
        return None if self.measured is None or not self.bare_truth else self.measured / self.bare_truth

    @property
    def within(self) -> bool | None:
        """measured / truth within the tolerance; None when not judged."""
        if self.tolerance is None:
            return None
        return self.ratio is not None and abs(self.ratio - 1.0) <= self.tolerance

    @property
    def in_band(self) -> bool | None:
        """measured inside the ideal band; None without a band."""
        if self.band_low is None or self.band_high is None:
            return None
        return self.measured is not None and self.band_low <= self.measured <= self.band_high

    @property
    def acceptable(self) -> bool:
        return self.within is not False or self.in_band is True

    def as_json(self) -> dict[str, Any]:
        return {
            **asdict(self),
            "ratio": self.ratio,
            "wrk_ratio": self.wrk_ratio,
            "bare_ratio": self.bare_ratio,
            "within_tolerance": self.within,
            "in_ideal_band": self.in_band,
        }


def _num(value: float | None, digits: int = 2) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def _yes(value: bool | None) -> str:
    return {True: "yes", False: "NO", None: "-"}[value]


def _pair(low: float | None, high: float | None) -> str:
    return "-" if low is None and high is None else f"[{_num(low)}, {_num(high)}]"


def format_table(rows: Sequence[Comparison]) -> str:
    """The comparisons as a fixed-width text table."""
    header = (
        "quantity",
        "truth",
        "harness",
        "harness/truth",
        "wrk",
        "wrk/truth",
        "tol",
        "within",
        f"ideal {BAND_COVERAGE:.0%} band",
        "in band",
        "bare truth",
        "meas/bare",
        "harness 95% CI",
    )
    lines = [header]
    for row in rows:
        lines.append(
            (
                row.quantity,
                _num(row.truth),
                _num(row.measured),
                _num(row.ratio, 3),
                _num(row.wrk),
                _num(row.wrk_ratio, 3),
                "info" if row.tolerance is None else f"±{row.tolerance:.0%}",
                _yes(row.within),
                _pair(row.band_low, row.band_high),
                _yes(row.in_band),
                _num(row.bare_truth),
                _num(row.bare_ratio, 3),
                _pair(row.ci_low, row.ci_high),
            )
        )
    widths = [max(len(line[i]) for line in lines) for i in range(len(header))]
    rendered = [
        "  ".join(
            cell.ljust(w) if i == 0 else cell.rjust(w) for i, (cell, w) in enumerate(zip(line, widths, strict=True))
        )
        for line in lines
    ]
    rendered.insert(1, "-" * len(rendered[0]))
    return "\n".join(rendered)


# --------------------------------------------------------------------------- the synthetic server


def _ready(url: str) -> bool:
    try:
        with urllib.request.urlopen(url + "/readyz", timeout=1.0) as response:
            return int(response.status) == 200
    except (urllib.error.URLError, OSError):
        return False


@contextlib.contextmanager
def synthetic_server(
    *arguments: str, lifetime_s: float = 900.0, script: Path = SERVER, cpus: Sequence[int] | None = None
) -> Iterator[str]:
    """Start `script` (default `bench/synthetic_server.py`) with `arguments` on a free loopback port, on `cpus` when
    given; yields its base URL."""
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    command = [sys.executable, str(script), "--port", str(port), "--max-lifetime-s", str(lifetime_s), *arguments]
    with tempfile.TemporaryFile() as errors:
        process = spawn(command, run_id=f"bench-synthetic-{port}", stdout=errors)
        try:
            if cpus is not None:
                os.sched_setaffinity(process.pid, set(cpus))
            deadline_s = time.monotonic() + 10.0
            while not _ready(url):
                if process.poll() is not None or time.monotonic() > deadline_s:
                    errors.seek(0)
                    raise RuntimeError(
                        f"synthetic server {' '.join(arguments)} did not become ready on {url}: "
                        + errors.read().decode(errors="replace").strip()[-500:]
                    )
                time.sleep(0.05)
            yield url
        finally:
            stop_tree(process, grace_s=5)


# --------------------------------------------------------------------------- wrk, the reference client

# wrk's Lua hooks: post the body, then print the exact percentiles and a grid of WRK_GRID quantiles (ms).
_WRK_SCRIPT = """
wrk.method = "POST"
wrk.body = [==[BODY]==]
wrk.headers["Content-Type"] = "application/json"
done = function(summary, latency, requests)
  local errors = summary.errors
  io.write(string.format("requests %d\\n", summary.requests))
  io.write(string.format("errors %d\\n", errors.connect + errors.read + errors.write + errors.status + errors.timeout))
  for _, q in ipairs({QUANTILES}) do
    io.write(string.format("p %g %.6f\\n", q, latency:percentile(q) / 1000.0))
  end
  for i = 1, GRID do
    io.write(string.format("grid %.6f\\n", latency:percentile((i - 0.5) * 100.0 / GRID) / 1000.0))
  end
end
"""


@dataclass(frozen=True)
class WrkResult:
    """What wrk measured: its percentiles (ms) and an evenly spaced grid of its latency quantiles to draw from."""

    requests: int
    errors: int
    percentiles_ms: dict[float, float]
    grid_ms: npt.NDArray[np.float64]


def parse_wrk(output: str) -> WrkResult:
    """The figures the Lua script printed."""
    requests = errors = 0
    percentiles_ms: dict[float, float] = {}
    grid: list[float] = []
    for line in output.splitlines():
        word, _, rest = line.partition(" ")
        if word == "requests":
            requests = int(rest)
        elif word == "errors":
            errors = int(rest)
        elif word == "p":
            q, value = rest.split()
            percentiles_ms[float(q)] = float(value)
        elif word == "grid":
            grid.append(float(rest))
    return WrkResult(requests, errors, percentiles_ms, np.array(grid, dtype=np.float64))


def run_wrk(workspace: Workspace, url: str, connections: int, duration_s: float) -> WrkResult:
    """wrk posting the workspace's first body to `url` over `connections` connections for `duration_s`."""
    if shutil.which("wrk") is None:
        raise RuntimeError("wrk is not installed: apt-get install wrk (make bench installs it)")
    body = workspace.bodies.read_text().splitlines()[0]
    script = workspace.root / "wrk-post.lua"
    script.write_text(
        _WRK_SCRIPT.replace("BODY", body)
        .replace("QUANTILES", ", ".join(f"{q:g}" for q in QUANTILES))
        .replace("GRID", str(WRK_GRID))
    )
    command = ["wrk", "-t1", f"-c{connections}", f"-d{duration_s:g}s", "--timeout", "5s", "-s", str(script)]
    done = subprocess.run(
        [*command, url + "/predict"], capture_output=True, text=True, timeout=duration_s + 30, check=True
    )
    result = parse_wrk(done.stdout)
    if not result.requests or result.errors or len(result.grid_ms) != WRK_GRID:
        raise RuntimeError(f"wrk on {url}: {result.requests} requests, {result.errors} errors: {done.stdout[-500:]}")
    return result


# --------------------------------------------------------------------------- runs of the real harness


@dataclass
class Workspace:
    """Where the benchmark's request bodies and run directories go."""

    root: Path
    runs: list[str] = field(default_factory=list)
    # Each run's calibration of the harness's own overhead, as its verdict reports it (None: not measured).
    calibrations: list[Any] = field(default_factory=list)

    @property
    def bodies(self) -> Path:
        path = self.root / "bodies.jsonl"
        if not path.exists():
            self.root.mkdir(parents=True, exist_ok=True)
            path.write_text("".join(json.dumps({"x": [i, i + 1, i + 2]}) + "\n" for i in range(16)))
        return path


def bench_scenario(
    workspace: Workspace, name: str, url: str, stages: list[dict[str, Any]], objectives: Sequence[dict[str, Any]] = ()
) -> Any:
    """A scenario driving the external target at `url` (a harness Scenario)."""
    from harness.config import parse_scenario

    return parse_scenario(
        {
            "name": name,
            "service": {
                "path": str(workspace.root),
                "service": "synthetic_server:SyntheticServer",
                "endpoint": "/predict",
            },
            "target": {"kind": "external", "urls": [url], "startup_timeout_s": 10},
            "stages": stages,
            "payload": {"source": "jsonl", "file": str(workspace.bodies)},
            "objectives": list(objectives),
            "output": {"dir": str(workspace.root / "runs")},
        },
        source=f"bench scenario '{name}'",
    )


@dataclass(frozen=True)
class MeasuredStage:
    """A stage's result from the verdict, its latencies, and how late the load generator sent."""

    result: Any  # harness.model.StageResult
    # Every successful request's latency (ms) as the harness recorded it (HdrHistogram bucket values).
    samples_ms: npt.NDArray[np.float64]
    # The load generator's own lag, not the server's; open-model latency includes it by design.
    send_lag_max_ms: float


def _stage_samples_ms(intervals: Sequence[Any], stage: str) -> npt.NDArray[np.float64]:
    from harness.analysis.latency import LatencyHistogram

    histogram = LatencyHistogram.merged(LatencyHistogram.decode(i.latency_hdr) for i in intervals if i.stage == stage)
    buckets = list(histogram.iter_buckets())
    values = np.array([value_s * 1000.0 for value_s, _ in buckets], dtype=np.float64)
    return np.repeat(values, [count for _, count in buckets])


def run_stages(workspace: Workspace, name: str, url: str, stages: list[dict[str, Any]]) -> dict[str, MeasuredStage]:
    """Run the harness once against `url`; every stage's result, by name."""
    from harness.model import ClientInterval
    from harness.run import Run
    from harness.rundir import RunDirectory

    outcome = Run(bench_scenario(workspace, name, url, stages)).execute()
    workspace.runs.append(str(outcome.run_dir))
    if outcome.verdict is None:
        raise RuntimeError(f"run {outcome.run_dir} produced no verdict (exit code {outcome.exit_code})")
    workspace.calibrations.append(outcome.verdict.loadgen_overhead)
    intervals = RunDirectory(outcome.run_dir).read_records(ClientInterval)
    return {
        stage.name: MeasuredStage(
            stage,
            _stage_samples_ms(intervals, stage.name),
            1000.0 * max((i.send_lag_max_s for i in intervals if i.stage == stage.name), default=0.0),
        )
        for stage in outcome.verdict.stages
    }


def _ms(value_s: float | None) -> float | None:
    return None if value_s is None else value_s * 1000.0


@dataclass(frozen=True)
class Overhead:
    """What a request takes beyond the server's nominal wait, as samples to draw from.

    round trip: HTTP, loopback and the server's own request handling, measured by wrk (a client with
    next to no overhead of its own) against the server answering at once. timer overshoot: how late
    asyncio wakes a sleeping request (it rounds its epoll timeout up to a whole millisecond), measured
    in this process on the same kind of event loop.
    """

    round_trip_ms: npt.NDArray[np.float64]
    timer_overshoot_ms: npt.NDArray[np.float64]

    def draw_ms(self, count: int, seed: int = TRUTH_SEED + 1) -> npt.NDArray[np.float64]:
        """`count` independent overheads: a round trip plus a timer overshoot, resampled."""
        rng = np.random.default_rng(seed)
        drawn: npt.NDArray[np.float64] = rng.choice(self.round_trip_ms, count) + rng.choice(
            self.timer_overshoot_ms, count
        )
        return drawn

    @property
    def median_ms(self) -> float:
        return float(np.median(self.draw_ms(100_000)))

    def summary(self) -> dict[str, float]:
        def quantiles(values: npt.NDArray[np.float64], name: str) -> dict[str, float]:
            return {f"{name}_p{q:g}_ms": float(np.percentile(values, q)) for q in QUANTILES}

        return {
            **quantiles(self.round_trip_ms, "round_trip"),
            **quantiles(self.timer_overshoot_ms, "timer_overshoot"),
            "round_trip_samples": float(len(self.round_trip_ms)),
            "median_ms": self.median_ms,
        }


def percentile_rows(
    label: str,
    stage: MeasuredStage,
    path_ms: npt.NDArray[np.float64],
    overhead: Overhead,
    arrival_ms: npt.NDArray[np.float64] | None = None,
    wrk: WrkResult | None = None,
) -> list[Comparison]:
    """One row per percentile: the stage's estimate against the truth, the ideal band and the bare truth.

    `path_ms` is a long sample path of the server's own latency; truth and band are taken from it plus
    independently drawn overheads, the bare truth from it alone. With `arrival_ms` (the path's arrival
    times: open model) the band's windows last as long as the stage; without, they hold as many
    requests as the stage did (closed model).
    """
    result_ = stage.result
    samples = len(stage.samples_ms)
    observed_ms = path_ms + overhead.draw_ms(len(path_ms))
    if arrival_ms is not None:
        edges = time_edges(arrival_ms, 1000.0 * float(result_.duration_s))
    else:
        edges = count_edges(len(path_ms), max(samples, 1))
    notes = [f"n={samples}", f"generator send lag max {stage.send_lag_max_ms:.1f} ms"]
    if result_.invalid_reasons:
        notes.append("stage invalid: " + "; ".join(result_.invalid_reasons))
    rows = []
    for q in QUANTILES:
        estimate = result_.latency[f"p{q:g}"]
        band = window_band(observed_ms, q, edges) if samples else (None, None)
        rows.append(
            Comparison(
                part="percentiles",
                quantity=f"{label} p{q:g} (ms)",
                truth=float(np.percentile(observed_ms, q)),
                measured=_ms(estimate.value_s),
                tolerance=PERCENTILE_TOLERANCE,
                band_low=band[0],
                band_high=band[1],
                bare_truth=float(np.percentile(path_ms, q)),
                ci_low=_ms(estimate.ci_low_s),
                ci_high=_ms(estimate.ci_high_s),
                note=", ".join(notes),
                wrk=None if wrk is None else wrk.percentiles_ms[q],
            )
        )
    return rows


def timer_overshoot_ms(
    rate_rps: float, low_ms: float, high_ms: float, count: int = 300, seed: int = 7
) -> npt.NDArray[np.float64]:
    """Lateness (ms) of `count` asyncio sleeps of U(low, high) ms started at Poisson times at `rate_rps`."""
    rng = random.Random(seed)
    starts_s = np.cumsum([rng.expovariate(rate_rps) for _ in range(count)])
    sleeps_s = [rng.uniform(low_ms, high_ms) / 1000.0 for _ in range(count)]

    async def one(start_s: float, sleep_s: float) -> float:
        await asyncio.sleep(start_s)
        began_s = time.monotonic()
        await asyncio.sleep(sleep_s)
        return (time.monotonic() - began_s - sleep_s) * 1000.0

    async def all_of_them() -> list[float]:
        return await asyncio.gather(*(one(float(a), b) for a, b in zip(starts_s, sleeps_s, strict=True)))

    return np.array(asyncio.run(all_of_them()), dtype=np.float64)


def measure_overhead(
    workspace: Workspace, rate_rps: float, duration_s: float, warmup_s: float = WARMUP_S
) -> tuple[Overhead, list[Comparison]]:
    """The truth's overhead: wrk's round trips against a server that waits 0 ms, and timer overshoots.

    wrk uses one connection: with more, a server that answers at once is saturated and its round trips
    measure its queue, not what one request pays. On the same server, the harness's open model at
    `rate_rps` (Poisson) and one closed-model user next to wrk: rows of what the harness adds
    (information, not judged).
    """
    with synthetic_server("--mode", "jitter", "--base-ms", "0", "--jitter-ms", "0") as url:
        wrk = run_wrk(workspace, url, 1, duration_s)
        stages = run_stages(
            workspace,
            "overhead",
            url,
            [
                {"name": "warmup", "duration_s": warmup_s, "arrival_rate_rps": rate_rps, "judged": False},
                {"name": "overhead", "duration_s": duration_s, "arrival_rate_rps": rate_rps},
                {"name": "overhead-closed", "duration_s": duration_s, "users": 1},
            ],
        )
    overhead = Overhead(wrk.grid_ms, timer_overshoot_ms(rate_rps, SERVICE_MS / 2, JITTER_BASE_MS + JITTER_MS))
    rows = []
    for name, label in (("overhead", f"open {rate_rps:g} rps"), ("overhead-closed", "closed 1 user")):
        measured = stages[name]
        if not len(measured.samples_ms):
            raise RuntimeError(f"the overhead run recorded no successful request in stage {name}")
        rows += [
            Comparison(
                part="overhead",
                quantity=f"round trip, server waits 0 ms, {label} p{q:g} (ms)",
                truth=wrk.percentiles_ms[q],
                measured=float(np.percentile(measured.samples_ms, q)),
                tolerance=None,
                wrk=wrk.percentiles_ms[q],
                note=f"n={len(measured.samples_ms)}; truth here is wrk's round trip ({wrk.requests} requests)",
            )
            for q in QUANTILES
        ]
    return overhead, rows


def jitter_comparisons(
    workspace: Workspace,
    overhead: Overhead,
    *,
    base_ms: float = JITTER_BASE_MS,
    jitter_ms: float = JITTER_MS,
    open_rate_rps: float = OPEN_RATE_RPS,
    open_s: float = OPEN_S,
    closed_users: int | None = CLOSED_USERS,
    closed_s: float = CLOSED_S,
    warmup_s: float = WARMUP_S,
) -> list[Comparison]:
    """Jitter mode: an open-model stage (and a closed-model one unless closed_users is None) vs uniform truth,
    and wrk with CLOSED_USERS connections on the same server (with the closed stage)."""
    stages: list[dict[str, Any]] = [
        {"name": "warmup", "duration_s": warmup_s, "arrival_rate_rps": open_rate_rps, "judged": False},
        {"name": "open", "duration_s": open_s, "arrival_rate_rps": open_rate_rps},
    ]
    if closed_users is not None:
        stages.append({"name": "closed", "duration_s": closed_s, "users": closed_users})
    with synthetic_server("--mode", "jitter", "--base-ms", f"{base_ms:g}", "--jitter-ms", f"{jitter_ms:g}") as url:
        wrk = run_wrk(workspace, url, CLOSED_USERS, closed_s) if closed_users is not None else None
        results = run_stages(workspace, "jitter", url, stages)
    rng = np.random.default_rng(TRUTH_SEED)
    path_ms = base_ms + jitter_ms * rng.random(LINDLEY_ARRIVALS)
    arrival_ms = np.cumsum(rng.exponential(1000.0 / open_rate_rps, LINDLEY_ARRIVALS))
    what = f"jitter {base_ms:g}+U(0,{jitter_ms:g})"
    rows = percentile_rows(f"{what} open {open_rate_rps:g} rps", results["open"], path_ms, overhead, arrival_ms, wrk)
    if closed_users is not None:
        rows += percentile_rows(f"{what} closed {closed_users} users", results["closed"], path_ms, overhead, None, wrk)
    return rows


def queue_comparisons(workspace: Workspace, overhead: Overhead) -> list[Comparison]:
    """Queue mode at each rho in QUEUE_RHOS against the M/D/1 sojourn quantiles (Lindley simulation)."""
    rates = {rho: rho * 1000.0 / SERVICE_MS for rho in QUEUE_RHOS}
    stages: list[dict[str, Any]] = [
        {"name": "warmup", "duration_s": WARMUP_S, "arrival_rate_rps": rates[QUEUE_RHOS[0]], "judged": False}
    ]
    stages += [
        {"name": f"rho-{rho:g}", "duration_s": QUEUE_STAGE_S, "arrival_rate_rps": rates[rho]} for rho in QUEUE_RHOS
    ]
    with synthetic_server("--mode", "queue", "--service-ms", f"{SERVICE_MS:g}") as url:
        results = run_stages(workspace, "queue", url, stages)
    rows = []
    for rho in QUEUE_RHOS:
        label = f"M/D/1 S={SERVICE_MS:g} ms rho={rho:g} ({rates[rho]:g} rps)"
        arrival_ms, sojourn_ms = md1_path_ms(rho, SERVICE_MS)
        rows += percentile_rows(label, results[f"rho-{rho:g}"], sojourn_ms, overhead, arrival_ms)
    return rows


class _PrintConsole:
    """What `run_sweep` needs of a console: print one line."""

    def print(self, text: str) -> None:
        print(f"      {text}", flush=True)


def throughput_comparisons(workspace: Workspace, overhead: Overhead) -> list[Comparison]:
    """`harness sweep` on the M/D/1 server vs the highest rate whose M/D/1 p99 meets the same bound."""
    from harness.sweep import run_sweep

    theoretical_rps = md1_max_rate_rps(SERVICE_MS, 99.0, SWEEP_P99_BOUND_MS, overhead.median_ms)
    capacity_rps = 1000.0 / SERVICE_MS
    rng = np.random.default_rng(TRUTH_SEED)
    ideal = [ideal_sweep_rps(rng, overhead_ms=overhead.median_ms) for _ in range(IDEAL_SWEEPS)]
    # A sweep that proves no rate sustainable counts as 0 rps, so the band shows that outcome too.
    ideal_found = np.array([rate or 0.0 for rate in ideal])
    tail = (1.0 - BAND_COVERAGE) / 2.0
    band_low, band_median, band_high = (float(v) for v in np.quantile(ideal_found, [tail, 0.5, 1.0 - tail]))

    objective = {"metric": "latency_p99_ms", "max": SWEEP_P99_BOUND_MS}
    placeholder = [{"name": "probe", "duration_s": 1, "arrival_rate_rps": SWEEP_INITIAL_RPS}]
    sweep_root = workspace.root / "runs"
    before = set(sweep_root.glob("*-sweep"))
    with synthetic_server("--mode", "queue", "--service-ms", f"{SERVICE_MS:g}") as url:
        run_sweep(
            bench_scenario(workspace, "md1", url, placeholder, [objective]),
            initial_rps=SWEEP_INITIAL_RPS,
            max_rps=capacity_rps,
            tolerance=SWEEP_TOLERANCE,
            min_probe_s=SWEEP_MIN_PROBE_S,
            console=_PrintConsole(),
        )
    (sweep_dir,) = set(sweep_root.glob("*-sweep")) - before
    workspace.runs.append(str(sweep_dir))
    summary = json.loads((sweep_dir / "sweep.json").read_text())
    found = summary["result"]["max_sustainable_rps"]
    low, high = summary["result"]["bracket_low"], summary["result"]["bracket_high"]
    probes = ", ".join(f"{p['rate_rps']:.1f} {p['status']}" for p in summary["probes"])
    return [
        Comparison(
            part="max throughput",
            quantity=f"max rate with p99 <= {SWEEP_P99_BOUND_MS:g} ms (rps)",
            truth=theoretical_rps,
            measured=found,
            tolerance=THROUGHPUT_TOLERANCE,
            band_low=band_low,
            band_high=band_high,
            bare_truth=md1_max_rate_rps(SERVICE_MS, 99.0, SWEEP_P99_BOUND_MS),
            note=(
                f"bracket [{_num(low, 1)}, {_num(high, 1)}]; probes {probes}; ideal sweeps ({IDEAL_SWEEPS}, the "
                f"harness's search and CI rule on exact M/D/1 probes): median {band_median:.1f} rps, "
                f"{sum(rate is None for rate in ideal)} found nothing"
            ),
        ),
        Comparison(
            part="max throughput",
            quantity="max rate vs raw capacity 1/S (rps)",
            truth=capacity_rps,
            measured=found,
            tolerance=None,
            note="the p99 objective, not the capacity, limits the rate: expected below 1",
        ),
    ]


def main() -> int:
    started_s = time.monotonic()
    load_before = os.getloadavg()
    stamp = dt.datetime.now(dt.UTC).strftime("%Y%m%dT%H%M%SZ")
    workspace = Workspace(ROOT / "reports" / "bench-accuracy-runs" / stamp)
    print(
        f"[1/4] overhead: zero-wait server, wrk 1 connection, then the harness at {OPEN_RATE_RPS:g} rps Poisson "
        f"and 1 user, {OVERHEAD_S:g} s each",
        flush=True,
    )
    overhead, overhead_rows = measure_overhead(workspace, OPEN_RATE_RPS, OVERHEAD_S)
    figures = overhead.summary()
    print(
        "      wrk round trip p50/p95/p99 "
        + "/".join(f"{figures[f'round_trip_p{q:g}_ms']:.2f}" for q in QUANTILES)
        + f" ms (n={len(overhead.round_trip_ms)}); asyncio timer overshoot p50/p95/p99 "
        + "/".join(f"{figures[f'timer_overshoot_p{q:g}_ms']:.2f}" for q in QUANTILES)
        + " ms",
        flush=True,
    )
    print(
        f"[2/4] jitter mode {JITTER_BASE_MS:g}+U(0,{JITTER_MS:g}) ms: open {OPEN_RATE_RPS:g} rps {OPEN_S:g} s, "
        f"closed {CLOSED_USERS} users {CLOSED_S:g} s",
        flush=True,
    )
    rows = overhead_rows + jitter_comparisons(workspace, overhead)
    rhos = ", ".join(f"{rho:g}" for rho in QUEUE_RHOS)
    print(f"[3/4] queue mode (M/D/1, S={SERVICE_MS:g} ms) at rho {rhos}, {QUEUE_STAGE_S:g} s each", flush=True)
    rows += queue_comparisons(workspace, overhead)
    print(f"[4/4] harness sweep on the M/D/1 server, objective p99 <= {SWEEP_P99_BOUND_MS:g} ms", flush=True)
    rows += throughput_comparisons(workspace, overhead)
    elapsed_s = time.monotonic() - started_s
    load_after = os.getloadavg()

    print()
    print(format_table(rows))
    print()
    print(
        "truth = quantile of (server latency + overhead): server latency from the analytic model (jitter: "
        f"uniform; queue: a {LINDLEY_ARRIVALS:,}-arrival Lindley simulation of M/D/1), overhead drawn from the "
        f"round trips wrk measured on the zero-wait server plus asyncio timer overshoots (median "
        f"{overhead.median_ms:.2f} ms): the server's latency as a client with next to no overhead sees it; bare "
        "truth = server latency alone. wrk: closed model only (no fixed-rate mode; wrk2 is not in Debian), "
        "the reference for the open stage too, since jitter-mode requests do not queue.\n"
        f"Max rate: bisection over rho of the simulated M/D/1 p99 + the median overhead. Ideal band: where a "
        f"perfect observer of a stage like the measured one (same duration and rate; closed: same request count) "
        f"lands {BAND_COVERAGE:.0%} of the time (sweep: the harness's own search and CI rule on simulated probes)."
    )
    for row in rows:
        if row.note:
            print(f"  {row.quantity}: {row.note}")
    judged = [row for row in rows if row.within is not None]
    within = sum(1 for row in judged if row.within)
    acceptable = sum(1 for row in judged if row.acceptable)
    print(
        f"{within}/{len(judged)} within tolerance, {acceptable}/{len(judged)} within tolerance or ideal band; "
        f"{elapsed_s:.0f} s; load average (1 min) {load_before[0]:.2f} before, {load_after[0]:.2f} after "
        "(other work on this machine inflates tails)"
    )
    calibrations = [c for c in workspace.calibrations if c is not None]
    if calibrations:
        print(
            "the harness's own calibration (verdict loadgen_overhead, null endpoint) p50/p95/p99 per run: "
            + "; ".join(f"{c.p50_ms:.2f}/{c.p95_ms:.2f}/{c.p99_ms:.2f} ms" for c in calibrations)
        )
    print(f"run directories under {workspace.root.relative_to(ROOT)}")
    RESULTS_FILE.parent.mkdir(parents=True, exist_ok=True)
    RESULTS_FILE.write_text(
        json.dumps(
            {
                "created_at": stamp,
                "elapsed_s": elapsed_s,
                "load_average_1min": {"before": load_before[0], "after": load_after[0]},
                "overhead_ms": overhead.summary(),
                "rows": [row.as_json() for row in rows],
                "runs": workspace.runs,
                "loadgen_overhead": [to_json_dict(c) for c in workspace.calibrations],
            },
            indent=2,
        )
        + "\n"
    )
    print(f"written {RESULTS_FILE.relative_to(ROOT)}")
    return 0 if acceptable == len(judged) else 1


if __name__ == "__main__":
    sys.exit(main())
