"""`harness sweep`'s driver: input checks and the probe scenario it derives (the search itself is
tested in tests/analysis/test_sweep.py, a real sweep in tests/test_sweep_integration.py)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from harness.config import parse_scenario
from harness.errors import ConfigError
from harness.model import Status
from harness.sweep import probe_passed, probe_scenario, run_sweep


def scenario(**changes: Any) -> Any:
    data: dict[str, Any] = {
        "name": "s",
        "service": {"path": ".", "service": "service:S"},
        "target": {"kind": "external", "urls": ["http://127.0.0.1:9"]},
        "stages": [{"name": "a", "duration_s": 5, "users": 1}],
        "objectives": [
            {"metric": "latency_p99_ms", "max": 100},
            {"metric": "error_rate", "max": 0.01},
            {"metric": "throughput_rps", "min": 500},
        ],
    }
    data.update(changes)
    return parse_scenario(data)


def test_probe_scenario_is_a_warmup_and_one_open_stage_with_latency_and_error_objectives() -> None:
    probe = probe_scenario(scenario(), 42.0, 12.0, "probe-01", index=3)
    assert [(s.name, s.arrival_rate_rps, s.judged) for s in probe.stages] == [
        ("warmup", 42.0, False),
        ("probe", 42.0, True),
    ]
    assert probe.stages[1].duration_s == 12.0
    assert [o.metric for o in probe.objectives] == ["latency_p99_ms", "error_rate"], "no fixed throughput floor"
    assert probe.load.seed == scenario().load.seed + 3000, "each probe draws its own arrivals"
    assert probe.output.run_id == "probe-01"


def test_a_probes_warmup_is_as_long_as_asked_and_absent_at_zero() -> None:
    short = probe_scenario(scenario(), 42.0, 12.0, "probe-01", index=0, warmup_s=2.0)
    assert [(s.name, s.duration_s) for s in short.stages] == [("warmup", 2.0), ("probe", 12.0)]
    bare = probe_scenario(scenario(), 42.0, 12.0, "probe-01", index=0, warmup_s=0.0)
    assert [(s.name, s.duration_s, s.judged) for s in bare.stages] == [("probe", 12.0, True)]


def test_a_negative_warmup_is_refused_naming_the_option() -> None:
    with pytest.raises(ConfigError, match=r"^--warmup-s: a probe's warm-up must be >= 0 seconds, got -1$"):
        run_sweep(scenario(), initial_rps=1, max_rps=2, tolerance=0.1, min_probe_s=None, console=None, warmup_s=-1)


def test_an_llm_scenarios_probes_keep_its_streamed_and_goodput_share_objectives() -> None:
    llm = scenario(
        requests=[{"name": "chat", "path": "/v1/chat/completions", "openai": {"prompts": "p.jsonl"}}],
        objectives=[
            {"metric": "ttft_p95_ms", "max": 500, "request": "chat"},
            {"metric": "goodput_fraction", "min": 0.9, "per_request": {"ttft_ms": 500, "tpot_ms": 50}},
            {"metric": "goodput_rps", "min": 5, "per_request": {"ttft_ms": 500}},
            {"metric": "output_tokens_per_s", "min": 100},
        ],
    )
    probe = probe_scenario(llm, 8.0, 20.0, "probe-01", index=0)
    assert [o.metric for o in probe.objectives] == ["ttft_p95_ms", "goodput_fraction"]
    assert probe.objectives[0].request == "chat"


def test_a_sweep_without_an_objective_that_decides_probes_is_refused() -> None:
    floors = scenario(objectives=[{"metric": "throughput_rps", "min": 500}])
    with pytest.raises(ConfigError, match="for goodput, bound goodput_fraction"):
        run_sweep(floors, initial_rps=1, max_rps=2, tolerance=0.1, min_probe_s=None, console=None)


def test_only_pass_and_fail_decide_a_probe() -> None:
    assert probe_passed(Status.PASS) is True
    assert probe_passed(Status.FAIL) is False
    assert probe_passed(Status.WARN) is None
    assert probe_passed(Status.INCONCLUSIVE) is None


def test_sweep_needs_objectives_and_deployable_targets_for_replica_counts(tmp_path: Path) -> None:
    common: dict[str, Any] = {
        "initial_rps": 10,
        "max_rps": 100,
        "tolerance": 0.05,
        "min_probe_s": None,
        "console": None,
    }
    with pytest.raises(ConfigError, match="needs objectives"):
        run_sweep(scenario(objectives=[]), **common)
    with pytest.raises(ConfigError, match="external"):
        run_sweep(scenario(), replica_counts=(1, 2), **common)
    with pytest.raises(ConfigError, match=">= 1"):
        run_sweep(scenario(target={"kind": "local"}), replica_counts=(0,), **common)
