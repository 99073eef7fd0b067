"""Measures LLM streaming figures side by side against a server of known timing (`make bench-llm`).

Runs the peers, GuideLLM and inference-perf (each in a virtual environment of its own: they pin packages the
harness does not, and inference-perf declares Python >= 3.12), one after the other against
`bench/llm_server.py`, at the same constant rate with the same prompt and output lengths, and prints each tool's
TTFT and inter-token figures at p50/p95/p99 as ratios to the truth. The harness's own column is left empty until
its load generator streams (issue 22, phase 2).

Truth (`bench/llm_server.py`): TTFT ~ U(ttft_min, ttft_max) and every gap between tokens ~ U(itl_min, itl_max),
independent, with exactly `output_tokens` tokens per request. Two inter-token figures exist and tools differ in
which they call ITL:
- every gap (vLLM's benchmark_serving and inference-perf's `inter_token_latency`): the uniform's quantiles;
- the per-request mean gap, (end-to-end - TTFT) / (tokens - 1) (inference-perf's `time_per_output_token`,
  GuideLLM's `inter_token_latency_ms`): quantiles of the mean of tokens - 1 uniforms, by simulation.
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


def compare(truths: dict[str, Figure], measured: dict[str, dict[str, Measured]]) -> list[Row]:
    """One row per figure and percentile, every tool's value beside the truth; the harness's column stays empty
    until its load generator streams."""
    rows = []
    for key, figure in truths.items():
        for q in QUANTILES:
            tools: dict[str, tuple[float, float, float, float] | None] = {HARNESS: None}
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
                cells.append(f" {'(phase 2)' if tool == HARNESS else 'not reported':>26}")
                continue
            _, ratio, low, high = found
            flag = "" if abs(ratio - 1) <= TOLERANCE or low <= ratio <= high else " !"
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


def run_peer(
    tool: str, peers: Path, url: str, tokenizer: Path, rate_rps: float, duration_s: int
) -> dict[str, Measured]:
    """Run one peer against `url` and read its figures from its report."""
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
    args = parser.parse_args()
    timing = Timing()
    WORKSPACE.mkdir(parents=True, exist_ok=True)
    peers = args.peers.resolve()  # the peers run in the workspace, not here
    tokenizer = build_tokenizer(peers, WORKSPACE / "tokenizer")
    measured: dict[str, dict[str, Measured]] = {}
    errors: dict[str, str] = {}
    with synthetic_server("--default-max-tokens", str(OUTPUT_TOKENS), script=SERVER) as url:
        for tool in PEER_TOOLS:
            started_s = time.monotonic()
            try:
                measured[tool] = run_peer(tool, peers, url, tokenizer, args.rate_rps, args.duration_s)
            except (RuntimeError, OSError, KeyError, ValueError, subprocess.SubprocessError) as failure:
                errors[tool] = f"{type(failure).__name__}: {failure}"
            print(f"{tool}: {time.monotonic() - started_s:.0f} s", file=sys.stderr)
    rows = compare(figures(timing, OUTPUT_TOKENS), measured)
    print(
        f"{args.rate_rps:g} rps for {args.duration_s} s per tool, {PROMPT_TOKENS} prompt and {OUTPUT_TOKENS} "
        f"output tokens; truth: TTFT U({timing.ttft_min_ms:g}, {timing.ttft_max_ms:g}) ms, "
        f"gaps U({timing.itl_min_ms:g}, {timing.itl_max_ms:g}) ms"
    )
    print(format_rows(rows))
    for tool, reason in errors.items():
        print(f"{tool} did not run: {reason}")
    RESULTS_FILE.parent.mkdir(parents=True, exist_ok=True)
    RESULTS_FILE.write_text(json.dumps({"rows": [asdict(row) for row in rows], "errors": errors}, indent=2) + "\n")


if __name__ == "__main__":
    main()
