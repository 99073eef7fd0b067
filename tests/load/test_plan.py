"""The load plan: built once from the scenario, and the same plan after crossing to a generator process as JSON."""

from __future__ import annotations

from pathlib import Path

from hypothesis import given
from hypothesis import strategies as st

from harness.config import RequestConfig, TlsConfig, load_scenario, parse_scenario
from harness.load.plan import DRAIN_S, LoadPlan, PayloadPlan, StageSpec, build_load_plan, planned_duration_s

ROOT = Path(__file__).resolve().parents[2]


def test_the_load_plan_is_the_scenario_stages_with_the_paths_given() -> None:
    scenario = load_scenario(ROOT / "loadtests" / "default.yaml")
    plan = build_load_plan(scenario, endpoints_file=Path("/x/endpoints.json"), intervals_dir=Path("/x/intervals"))
    assert [stage.name for stage in plan.stages] == [stage.name for stage in scenario.stages]
    assert (plan.endpoints_file, plan.intervals_dir) == ("/x/endpoints.json", "/x/intervals")
    assert plan.drain_s == min(scenario.load.request_timeout_s, DRAIN_S)
    assert plan.processes == scenario.load.processes and plan.process == 0
    assert planned_duration_s(scenario) == plan.planned_duration_s == scenario.duration_s + plan.drain_s
    assert LoadPlan.from_json(plan.to_json()) == plan, "the plan crosses a process boundary as JSON"


def test_requests_tls_and_answers_alone_survive_the_crossing(tmp_path: Path) -> None:
    ca = tmp_path / "ca.pem"
    ca.write_text("not read here")
    scenario = parse_scenario(
        {
            "name": "t",
            "target": {"kind": "external", "urls": ["https://127.0.0.1:8443"], "tls": {"ca_bundle": str(ca)}},
            "stages": [{"name": "open", "duration_s": 10, "arrival_rate_rps": 5, "arrival": "constant"}],
            "requests": [
                {
                    "name": "predict",
                    "path": "/predict",
                    "headers": {"Authorization": "Bearer ${TOKEN}"},
                    "body_template": {"rows": ["{{x}}"]},
                    "dataset": str(tmp_path / "rows.jsonl"),
                    "check": {"status": [200], "same_as_alone": {"field": "labels.0"}},
                },
                {"name": "health", "method": "GET", "path": "/livez", "weight": 0.5},
            ],
        }
    )
    plan = build_load_plan(
        scenario,
        endpoints_file=tmp_path / "e.json",
        intervals_dir=tmp_path / "i",
        processes=3,
        alone_answers={"predict": {"k1": 7}},
    )
    crossed = LoadPlan.from_json(plan.to_json())
    assert crossed == plan
    assert crossed.processes == 3
    assert crossed.requests is not None and crossed.requests[0].headers == {"Authorization": "Bearer ${TOKEN}"}
    assert crossed.tls.ca_bundle == ca
    assert crossed.stages == (StageSpec("open", 10, arrival_rate_rps=5, arrival="constant"),)
    assert crossed.alone_answers == {"predict": {"k1": 7}}


def test_an_absent_optional_field_reads_as_its_default() -> None:
    minimal = (
        '{"stages": [{"name": "s", "duration_s": 1}], "processes": 1, "process": 0, "endpoint_path": "/p", '
        '"endpoints_file": "/e", "intervals_dir": "/i", "interval_s": 1, "request_timeout_s": 5, "drain_s": 1, '
        '"max_in_flight": 10, "seed": 1}'
    )
    plan = LoadPlan.from_json(minimal)
    assert plan.payload == PayloadPlan() and plan.requests is None and plan.tls == TlsConfig()
    assert plan.stages[0].users is None and plan.stages[0].arrival == "poisson"


@given(
    durations=st.lists(st.floats(min_value=0.5, max_value=600, allow_nan=False), min_size=1, max_size=6),
    processes=st.integers(min_value=1, max_value=64),
    seed=st.integers(min_value=-(2**31), max_value=2**31),
    fraction=st.floats(min_value=0, max_value=1, allow_nan=False),
)
def test_any_plan_round_trips(durations: list[float], processes: int, seed: int, fraction: float) -> None:
    plan = LoadPlan(
        stages=tuple(StageSpec(f"s{i}", d, users=i + 1) for i, d in enumerate(durations)),
        processes=processes,
        process=processes - 1,
        endpoint_path="/predict",
        endpoints_file="/e.json",
        intervals_dir="/i",
        interval_s=1.0,
        request_timeout_s=10.0,
        drain_s=5.0,
        max_in_flight=100,
        seed=seed,
        payload=PayloadPlan(malformed_fraction=fraction),
        requests=(RequestConfig(name="r", method="GET", path="/r"),),
    )
    assert LoadPlan.from_json(plan.to_json()) == plan
