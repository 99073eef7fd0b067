"""make bench-llm's harness column and capacity levels: the harness run for real against the server of known
timing, its figures and its generator's cost read back from the run directory."""

from __future__ import annotations

from pathlib import Path

import pytest

from bench.accuracy import synthetic_server
from bench.llm_accuracy import SERVER
from bench.llm_generator import HarnessRun, Level, ceiling, format_levels, mean_request_s, read_run, run_harness
from bench.llm_server import Timing

RUN = HarnessRun(
    percentiles_ms={},
    samples={},
    streamed=100,
    failures=0,
    output_tokens=6400,
    loadgen_cpu_s=0.192,
    loadgen_cpu_max_cores=0.05,
    duration_s=10.0,
    invalid_reasons=[],
)


def level(streams: int, holds: bool) -> Level:
    return Level(streams, float(streams), RUN, {"ttft": {50.0: (1.0 if holds else 1.1, holds)}, "itl": {}}, 0.5)


def test_a_request_lasts_its_mean_ttft_and_gaps_and_the_ceiling_is_the_last_level_held() -> None:
    assert mean_request_s(Timing(), 64) == pytest.approx(0.2 + 63 * 0.02)
    assert RUN.cpu_per_token_us == pytest.approx(30.0) and RUN.tokens_per_s == 640.0
    assert ceiling([level(100, True), level(200, True), level(300, False), level(400, True)]) == 200
    assert ceiling([level(100, False)]) is None
    table = format_levels([level(100, True), level(300, False)]).splitlines()
    assert table[1].endswith("holds") and "1.100!" in table[2] and table[2].endswith("DEGRADED")


@pytest.mark.integration
def test_the_harness_column_reads_its_own_run(tmp_path: Path) -> None:
    with synthetic_server("--default-max-tokens", "8", script=SERVER) as url:
        run_dir = run_harness(url, tmp_path, rate_rps=8, duration_s=4, prompt_tokens=8, output_tokens=8, warmup_s=1)
    run = read_run(run_dir, (50.0, 95.0, 99.0))
    assert run.streamed > 20 and run.failures == 0 and run.output_tokens == 8 * run.streamed
    assert 100 <= run.percentiles_ms["ttft"][50.0] <= 300 and 10 <= run.percentiles_ms["itl"][50.0] <= 30
    assert run.samples["itl"] == 7 * run.streamed and run.samples["ttft"] == run.streamed
    assert run.cpu_per_token_us is not None and run.cpu_per_token_us > 0 and run.tokens_per_s > 0
