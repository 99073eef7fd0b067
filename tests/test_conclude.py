"""What a verdict says it could not measure (a service without /metrics, a target that gives no CPU or memory), and
the bad input a service took as valid."""

from __future__ import annotations

from harness.conclude import accepted_bad_input_notes, unmeasured_note
from harness.model import ReplicaSample, ServerSample
from tests.test_verdict import stage

SCRAPED = ServerSample(t_s=1.0, replica="r1", ok=True, requests_total=3.0)
NOT_SCRAPED = ServerSample(t_s=1.0, replica="r1", ok=False, error="HTTP 404")
WITH_CPU = ReplicaSample(t_s=1.0, replica="r1", ready=True, cpu_cores=0.5, rss_bytes=1e8)
WITHOUT_CPU = ReplicaSample(t_s=1.0, replica="r1", ready=True)


def test_a_bentoml_replica_whose_cpu_is_measured_needs_no_note() -> None:
    assert unmeasured_note([NOT_SCRAPED, SCRAPED], [WITH_CPU], "/metrics") is None


def test_a_service_without_metrics_is_judged_on_client_figures_and_says_what_was_not_measured() -> None:
    note = unmeasured_note([NOT_SCRAPED, NOT_SCRAPED], [WITHOUT_CPU], "/metrics")
    assert note == (
        "judged on client-side figures; not measured: server-side latency, in-flight requests and batch sizes "
        "(no answer from /metrics); replica CPU and memory"
    )
    assert unmeasured_note([], [WITH_CPU], "/stats") == (
        "judged on client-side figures; not measured: server-side latency, in-flight requests and batch sizes "
        "(no answer from /stats)"
    )
    assert unmeasured_note([SCRAPED], [], "/metrics") == (
        "judged on client-side figures; not measured: replica CPU and memory"
    )


def test_bad_input_answered_2xx_is_told_per_stage_and_none_is_not() -> None:
    stages = [
        stage("warmup", bad_inputs=40, bad_input_accepted=3),
        stage("mixed", bad_inputs=355, bad_input_5xx=83, bad_input_accepted=97),
        stage("clean", bad_inputs=100, bad_input_accepted=0),
    ]
    assert accepted_bad_input_notes(stages) == [
        "stage 'warmup': 3 of 40 bad-input requests were answered 2xx (expected 4xx): the service took them as valid "
        "input",
        "stage 'mixed': 97 of 355 bad-input requests were answered 2xx (expected 4xx): the service took them as valid "
        "input",
    ]


def test_streamed_percentiles_are_asked_per_figure() -> None:
    from harness.conclude import stream_percentiles_for
    from harness.config import Objective, parse_scenario

    scenario = parse_scenario(
        {
            "name": "t",
            "service": {"path": ".", "service": "s:S"},
            "stages": [{"name": "a", "duration_s": 5, "users": 1}],
        },
        "s.yaml",
    )
    objectives = [Objective(metric=m, max=1) for m in ("ttft_p99_ms", "ttft_p90_ms", "itl_p99.9_ms", "latency_p95_ms")]
    with_streams = scenario.model_copy(update={"objectives": objectives})
    assert stream_percentiles_for(with_streams) == {"ttft": [99.0, 90.0], "itl": [99.9]}
    assert stream_percentiles_for(scenario) == {}
