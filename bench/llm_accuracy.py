"""Measures LLM streaming figures side by side against a server of known timing (`make bench-llm`).

Runs the harness itself (`harness run`, bench/llm_generator.py) and its peers, GuideLLM and inference-perf (each in a
virtual environment of its own: they pin packages the harness does not, and inference-perf declares Python >= 3.12),
one after the other against `bench/llm_server.py`, at the same constant rate with the same prompt and output
lengths, and prints each tool's TTFT and inter-token figures at p50/p95/p99 as ratios to the truth. Then it measures
how many concurrent streams the harness's load generator holds on one core before its own timing degrades, and what
it spends per token (bench/llm_generator.py).

Truth (`bench/llm_server.py`): TTFT ~ U(ttft_min, ttft_max) and every gap between tokens ~ U(itl_min, itl_max),
independent, with exactly `output_tokens` tokens per request. Two inter-token figures exist and tools differ in
which they call ITL:
- every gap (vLLM's benchmark_serving, inference-perf's `inter_token_latency`, the harness's itl): the uniform's
  quantiles;
- the per-request mean gap, (end-to-end - TTFT) / (tokens - 1) (inference-perf's `time_per_output_token`,
  GuideLLM's `inter_token_latency_ms`, the harness's tpot): quantiles of the mean of tokens - 1 uniforms, by
  simulation.
Each row is compared with its own definition. The band is where a perfect observer with the tool's own sample
count lands 90% of the time (simulated), so a ratio outside 1 +- 3% but inside the band is sampling, not error.
Writes reports/bench-llm.json. Needs the peers' environments (the Makefile's bench-llm-peers target).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from bench.accuracy import synthetic_server
from bench.llm_generator import HarnessRun, Level, ceiling, format_levels, measure_level, read_run, run_harness
from bench.llm_server import Timing

ROOT = Path(__file__).resolve().parents[1]
SERVER = ROOT / "bench" / "llm_server.py"
PEERS = ROOT / ".venv-bench-llm"
RESULTS_FILE = ROOT / "reports" / "bench-llm.json"
WORKSPACE = ROOT / "reports" / "bench-llm"
QUANTILES: tuple[float, ...] = (50.0, 95.0, 99.0)
TOLERANCE = 0.03
BAND_COVERAGE = 0.90
BAND_TRIALS = 400
TRUTH_SEED = 20240601
TRUTH_REQUESTS = 200_000

RATE_RPS = 10.0
DURATION_S = 60
PROMPT_TOKENS = 32
OUTPUT_TOKENS = 64
MODEL = "bench-llm"
# No model hub is reachable: every Hugging Face library is told so, and is given the local tokenizer's path.
OFFLINE_ENV = {"HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}


# --------------------------------------------------------------------------- the truth (pure)


def uniform_quantile_ms(low_ms: float, high_ms: float, q: float) -> float:
    """The q-th percentile (0-100) of U(low, high)."""
    return low_ms + q / 100.0 * (high_ms - low_ms)


def mean_gap_sample_ms(timing: Timing, tokens: int, requests: int, rng: np.random.Generator) -> npt.NDArray[np.float64]:
    """Per-request mean gaps, (end-to-end - TTFT) / (tokens - 1), of `requests` simulated requests."""
    if tokens < 2:
        raise ValueError(f"tokens={tokens}: a mean gap needs at least 2 tokens")
    total = np.zeros(requests)
    for _ in range(tokens - 1):  # summed one gap at a time: tokens x requests draws would not fit in memory
        total += rng.uniform(timing.itl_min_ms, timing.itl_max_ms, requests)
    result: npt.NDArray[np.float64] = total / (tokens - 1)
    return result


@dataclass(frozen=True)
class Figure:
    """One measured quantity: its truth per percentile and how to draw a sample of n like the one measured."""

    name: str
    truth_ms: dict[float, float]
    draw: Callable[[np.random.Generator, int], npt.NDArray[np.float64]]


def figures(timing: Timing, output_tokens: int, seed: int = TRUTH_SEED) -> dict[str, Figure]:
    """TTFT, every inter-token gap, and the per-request mean gap, with their true percentiles."""
    mean_gaps = mean_gap_sample_ms(timing, output_tokens, TRUTH_REQUESTS, np.random.default_rng(seed))
    return {
        "ttft": Figure(
            "TTFT",
            {q: uniform_quantile_ms(timing.ttft_min_ms, timing.ttft_max_ms, q) for q in QUANTILES},
            lambda rng, n: rng.uniform(timing.ttft_min_ms, timing.ttft_max_ms, n),
        ),
        "itl": Figure(
            "ITL, every gap",
            {q: uniform_quantile_ms(timing.itl_min_ms, timing.itl_max_ms, q) for q in QUANTILES},
            lambda rng, n: rng.uniform(timing.itl_min_ms, timing.itl_max_ms, n),
        ),
        "tpot": Figure(
            "per-request mean gap (TPOT)",
            {q: float(np.percentile(mean_gaps, q)) for q in QUANTILES},
            lambda rng, n: rng.choice(mean_gaps, n),
        ),
    }


def ideal_band(figure: Figure, q: float, samples: int, seed: int = TRUTH_SEED) -> tuple[float, float]:
    """Central BAND_COVERAGE range of the q-th percentile of `samples` draws, over BAND_TRIALS trials."""
    rng = np.random.default_rng(seed)
    values = [float(np.percentile(figure.draw(rng, samples), q)) for _ in range(BAND_TRIALS)]
    tail = (1.0 - BAND_COVERAGE) / 2.0
    low, high = np.quantile(values, [tail, 1.0 - tail])
    return float(low), float(high)


# --------------------------------------------------------------------------- what each tool reports (pure)


@dataclass(frozen=True)
class Measured:
    """One tool's percentiles of one figure, in ms, and how many samples they came from."""

    percentiles_ms: dict[float, float]
    samples: int


def parse_guidellm(report: dict[str, Any]) -> dict[str, Measured]:
    """GuideLLM's JSON report (`outputs: [{kind: json}]`), first benchmark: TTFT, and its inter-token latency,
    which is the per-request mean gap (one value per request, counted once per gap)."""
    metrics = report["benchmarks"][0]["metrics"]
    requests = len(report["benchmarks"][0]["requests"]["successful"])

    def read(key: str, samples: int) -> Measured:
        block = metrics[key]["successful"]
        return Measured({q: float(block["percentiles"][f"p{q:02.0f}"]) for q in QUANTILES}, samples)

    return {"ttft": read("time_to_first_token_ms", requests), "tpot": read("inter_token_latency_ms", requests)}


def parse_inference_perf(summary: dict[str, Any], output_tokens: int) -> dict[str, Measured]:
    """inference-perf's summary_lifecycle_metrics.json (seconds): TTFT, every gap, and time per output token."""
    latency = summary["successes"]["latency"]
    requests = int(summary["successes"]["count"])

    def read(key: str, samples: int) -> Measured:
        block = latency[key]
        return Measured({q: 1000.0 * float(block["median" if q == 50 else f"p{q:g}"]) for q in QUANTILES}, samples)

    return {
        "ttft": read("time_to_first_token", requests),
        "itl": read("inter_token_latency", requests * (output_tokens - 1)),
        "tpot": read("time_per_output_token", requests),
    }


@dataclass(frozen=True)
class Row:
    figure: str
    q: float
    truth_ms: float
    # tool -> (measured ms, ratio to the truth, ideal band low, high) or None when the tool does not report it.
    tools: dict[str, tuple[float, float, float, float] | None]


HARNESS = "harness"


def compare(
    truths: dict[str, Figure], measured: dict[str, dict[str, Measured]], tools_shown: Sequence[str] = ()
) -> list[Row]:
    """One row per figure and percentile, every tool's value beside the truth (`tools_shown` that did not run get an
    empty column)."""
    rows = []
    for key, figure in truths.items():
        for q in QUANTILES:
            tools: dict[str, tuple[float, float, float, float] | None] = dict.fromkeys(tools_shown)
            for tool, found in measured.items():
                value = found.get(key)
                if value is None:
                    tools[tool] = None
                    continue
                low, high = ideal_band(figure, q, value.samples)
                truth = figure.truth_ms[q]
                tools[tool] = (value.percentiles_ms[q], value.percentiles_ms[q] / truth, low / truth, high / truth)
            rows.append(Row(figure.name, q, figure.truth_ms[q], tools))
    return rows


def accurate(ratio: float, band_low: float, band_high: float) -> bool:
    """Within 3% of the truth, or inside the band a perfect observer's sample of the same size lands in."""
    return abs(ratio - 1) <= TOLERANCE or band_low <= ratio <= band_high


def harness_summary(rows: Sequence[Row]) -> list[str]:
    """Whether the harness is accurate at every percentile, and at each row as close to the truth as the closest
    peer (ties within 0.2% count as equal: the tools' own samples differ by more)."""
    mine = [(row, row.tools.get(HARNESS)) for row in rows]
    measured = [(row, found) for row, found in mine if found is not None]
    if not measured:
        return ["harness: did not run"]
    misses = [f"{row.figure} p{row.q:g}" for row, found in measured if not accurate(*found[1:])]
    lines = [
        "harness: within 3% of the truth (or its ideal band) at every percentile"
        if not misses
        else f"harness: off the truth at {', '.join(misses)}"
    ]
    closer, compared = [], 0
    for row, found in measured:
        peers = [t[1] for name, t in row.tools.items() if name != HARNESS and t is not None]
        if not peers:
            continue
        compared += 1
        if abs(found[1] - 1) <= min(abs(ratio - 1) for ratio in peers) + 0.002:
            closer.append(row)
    lines.append(f"harness: as close as the closest peer at {len(closer)} of {compared} rows a peer reports")
    return lines


def format_rows(rows: Sequence[Row]) -> str:
    """The table: per row the truth, then per tool measured/truth and [the ideal band], `!` outside both."""
    tools = list(rows[0].tools) if rows else []
    header = f"{'figure':<30} {'q':>5} {'truth ms':>9}" + "".join(f" {tool + '/truth':>26}" for tool in tools)
    lines = [header]
    for row in rows:
        cells = []
        for tool in tools:
            found = row.tools[tool]
            if found is None:
                cells.append(f" {'not reported':>26}")
                continue
            _, ratio, low, high = found
            flag = "" if accurate(ratio, low, high) else " !"
            cells.append(f" {f'{ratio:.3f} [{low:.3f}-{high:.3f}]{flag}':>26}")
        lines.append(f"{row.figure:<30} {'p' + format(row.q, 'g'):>5} {row.truth_ms:>9.2f}" + "".join(cells))
    return "\n".join(lines)


# --------------------------------------------------------------------------- running the peers


def _run(command: list[str], log: Path, timeout_s: float, cwd: Path) -> None:
    env = {**os.environ, **OFFLINE_ENV}
    with log.open("wb") as output:
        result = subprocess.run(command, cwd=cwd, env=env, stdout=output, stderr=subprocess.STDOUT, timeout=timeout_s)
    if result.returncode != 0:
        tail = log.read_text(errors="replace")[-1500:]
        raise RuntimeError(f"{command[0]} exited with {result.returncode}; {log} ends:\n{tail}")


def run_guidellm(peers: Path, url: str, tokenizer: Path, out: Path, rate_rps: float, duration_s: int) -> Path:
    """GuideLLM at a constant rate for `duration_s`, its JSON report path."""
    report = out / "guidellm.json"
    scenario = {
        "spec": {
            "backend": {"kind": "openai_http", "target": url, "model": MODEL, "request_format": "/v1/completions"},
            "profile": {"kind": "constant", "rate": [rate_rps]},
            "tokenizer": {"kind": "huggingface_auto", "model": str(tokenizer)},
            "data": [{"kind": "synthetic_text", "prompt_tokens": PROMPT_TOKENS, "output_tokens": OUTPUT_TOKENS}],
            "constraints": [{"kind": "max_duration", "seconds": duration_s}],
            "outputs": [{"kind": "json", "path": str(report)}],
        }
    }
    (out / "guidellm-scenario.json").write_text(json.dumps(scenario, indent=2))
    command = [str(peers / "guidellm" / "bin" / "guidellm"), "run", "-c", str(out / "guidellm-scenario.json")]
    _run([*command, "--disable-console-interactive"], out / "guidellm.log", duration_s + 600, out)
    return report


def run_inference_perf(peers: Path, url: str, tokenizer: Path, out: Path, rate_rps: float, duration_s: int) -> Path:
    """inference-perf at a constant rate for `duration_s`; its summary report path."""
    fixed = {"type": "fixed", "min": 0, "max": 100_000, "std_dev": 0}
    config = {
        "api": {"type": "completion", "streaming": True},
        "data": {
            "type": "synthetic",
            "input_distribution": {**fixed, "mean": PROMPT_TOKENS},
            "output_distribution": {**fixed, "mean": OUTPUT_TOKENS},
        },
        "load": {"type": "constant", "stages": [{"rate": rate_rps, "duration": duration_s}], "num_workers": 1},
        "server": {"type": "vllm", "model_name": MODEL, "base_url": url, "ignore_eos": True},
        "tokenizer": {"pretrained_model_name_or_path": str(tokenizer)},
        "report": {"request_lifecycle": {"summary": True, "per_stage": False, "per_request": False}},
        "storage": {"local_storage": {"path": str(out / "inference-perf")}},
    }
    (out / "inference-perf.json").write_text(json.dumps(config, indent=2))  # YAML is a superset of JSON
    command = [str(peers / "inference-perf" / "bin" / "inference-perf"), "-c", str(out / "inference-perf.json")]
    _run(command, out / "inference-perf.log", duration_s + 600, out)
    return out / "inference-perf" / "summary_lifecycle_metrics.json"


PEER_TOOLS = ("guidellm", "inference-perf")
# Concurrent streams tried by the capacity measurement, in order; it stops after two levels in a row degrade.
STREAM_LEVELS = (100, 200, 300, 400, 500, 600, 800, 1000)
CAPACITY_STAGE_S = 15.0


def harness_measured(run: HarnessRun) -> dict[str, Measured]:
    """The harness's run as the table reads a tool: TTFT, every gap (itl) and the per-request mean gap (tpot)."""
    return {figure: Measured(run.percentiles_ms[figure], run.samples[figure]) for figure in ("ttft", "itl", "tpot")}


def capacity(url: str, timing: Timing, levels: Sequence[int], generator_cpu: int) -> list[Level]:
    """The generator's timing at each level of concurrent streams, until two levels in a row degrade."""
    measured: list[Level] = []
    for streams in levels:
        level = measure_level(
            url,
            WORKSPACE / "capacity",
            streams,
            timing,
            duration_s=CAPACITY_STAGE_S,
            prompt_tokens=PROMPT_TOKENS,
            output_tokens=OUTPUT_TOKENS,
            cpus=[generator_cpu],
            quantiles=QUANTILES,
            tolerance=TOLERANCE,
        )
        measured.append(level)
        print(format_levels([level]).splitlines()[-1], file=sys.stderr)
        if len(measured) >= 2 and not measured[-1].holds and not measured[-2].holds:
            break
    return measured


def run_peer(
    tool: str, peers: Path, url: str, tokenizer: Path, rate_rps: float, duration_s: int
) -> dict[str, Measured]:
    """Run one tool against `url` and read its figures from its report (the harness: its verdict)."""
    if tool == HARNESS:
        run_dir = run_harness(
            url,
            WORKSPACE / "harness",
            rate_rps=rate_rps,
            duration_s=duration_s,
            prompt_tokens=PROMPT_TOKENS,
            output_tokens=OUTPUT_TOKENS,
        )
        return harness_measured(read_run(run_dir, QUANTILES))
    if tool == "guidellm":
        report = run_guidellm(peers, url, tokenizer, WORKSPACE, rate_rps, duration_s)
        return parse_guidellm(json.loads(report.read_text()))
    report = run_inference_perf(peers, url, tokenizer, WORKSPACE, rate_rps, duration_s)
    return parse_inference_perf(json.loads(report.read_text()), OUTPUT_TOKENS)


def build_tokenizer(peers: Path, directory: Path) -> Path:
    """The local tokenizer (bench/llm_tokenizer.py), saved with the `tokenizers` of GuideLLM's environment."""
    python = peers / "guidellm" / "bin" / "python"
    script = ROOT / "bench" / "llm_tokenizer.py"
    subprocess.run([str(python), str(script), str(directory)], check=True, timeout=120)
    return directory


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--peers", type=Path, default=PEERS, help="folder of the peers' virtual environments")
    parser.add_argument("--rate-rps", type=float, default=RATE_RPS)
    parser.add_argument("--duration-s", type=int, default=DURATION_S)
    parser.add_argument("--tools", nargs="*", default=[HARNESS, *PEER_TOOLS], help="tools of the accuracy table")
    parser.add_argument("--streams", type=int, nargs="*", default=list(STREAM_LEVELS), help="capacity levels")
    args = parser.parse_args()
    timing = Timing()
    WORKSPACE.mkdir(parents=True, exist_ok=True)
    peers = args.peers.resolve()  # the peers run in the workspace, not here
    tokenizer = build_tokenizer(peers, WORKSPACE / "tokenizer") if set(args.tools) & set(PEER_TOOLS) else Path()
    measured: dict[str, dict[str, Measured]] = {}
    errors: dict[str, str] = {}
    with synthetic_server("--default-max-tokens", str(OUTPUT_TOKENS), script=SERVER) as url:
        for tool in args.tools:
            started_s = time.monotonic()
            try:
                measured[tool] = run_peer(tool, peers, url, tokenizer, args.rate_rps, args.duration_s)
            except (RuntimeError, OSError, KeyError, ValueError, subprocess.SubprocessError) as failure:
                errors[tool] = f"{type(failure).__name__}: {failure}"
            print(f"{tool}: {time.monotonic() - started_s:.0f} s", file=sys.stderr)
    rows = compare(figures(timing, OUTPUT_TOKENS), measured, tools_shown=args.tools)
    print(
        f"{args.rate_rps:g} rps for {args.duration_s} s per tool, {PROMPT_TOKENS} prompt and {OUTPUT_TOKENS} "
        f"output tokens; truth: TTFT U({timing.ttft_min_ms:g}, {timing.ttft_max_ms:g}) ms, "
        f"gaps U({timing.itl_min_ms:g}, {timing.itl_max_ms:g}) ms"
    )
    print(format_rows(rows))
    for line in harness_summary(rows):
        print(line)
    for tool, reason in errors.items():
        print(f"{tool} did not run: {reason}")
    levels: list[Level] = []
    cpus = sorted(os.sched_getaffinity(0))
    if args.streams and len(cpus) >= 2:
        # The server on one CPU, the generator under test on another.
        with synthetic_server("--default-max-tokens", str(OUTPUT_TOKENS), script=SERVER, cpus=cpus[:1]) as url:
            levels = capacity(url, timing, args.streams, generator_cpu=cpus[1])
        print(
            f"\nconcurrent streams of {OUTPUT_TOKENS} tokens, one generator process on CPU {cpus[1]}, "
            f"the server on CPU {cpus[0]}:"
        )
        print(format_levels(levels))
        held = ceiling(levels)
        costs = [level.run.cpu_per_token_us for level in levels if level.holds and level.run.cpu_per_token_us]
        print(
            f"one generator process held {held or 0} concurrent streams with its TTFT and ITL within 3% of the "
            f"server's (goal 500); it spent {min(costs):.0f}-{max(costs):.0f} us of CPU per token read"
            if costs
            else "no level held: the generator's timing degraded at the lowest level tried"
        )
    elif args.streams:
        print("capacity not measured: it needs two CPUs (the server on one, the generator on another)")
    RESULTS_FILE.parent.mkdir(parents=True, exist_ok=True)
    RESULTS_FILE.write_text(
        json.dumps(
            {
                "rows": [asdict(row) for row in rows],
                "errors": errors,
                "capacity": [
                    {
                        "streams": level.streams,
                        "rate_rps": level.rate_rps,
                        "holds": level.holds,
                        "tokens_per_s": level.run.tokens_per_s,
                        "cpu_per_token_us": level.run.cpu_per_token_us,
                        "server_late_p99_ms": level.server_late_p99_ms,
                        "ratios": {f: {str(q): r for q, (r, _) in by_q.items()} for f, by_q in level.ratios.items()},
                    }
                    for level in levels
                ],
            },
            indent=2,
        )
        + "\n"
    )


if __name__ == "__main__":
    main()
