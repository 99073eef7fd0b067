"""The run directory: atomic writes that leave nothing behind on failure, no reuse of a run id, and typed
records (events, metadata) that read back what was written and what older harness versions wrote."""

from __future__ import annotations

import dataclasses
import json
import os
from pathlib import Path

import pytest

from harness.errors import ConfigError, ReportError
from harness.model import (
    EVENT_KINDS,
    AutoscalerSync,
    ClientInterval,
    ContainersRemoved,
    FaultEnded,
    FaultInjected,
    ImageBuilt,
    ImageLoaded,
    ImagePushed,
    KindClusterUsed,
    Leftover,
    LoadgenLogResumed,
    LoadgenOverhead,
    MetricProposal,
    NamespaceCreated,
    ObjectApplied,
    Probe,
    ReplicaCount,
    ReplicaCrashed,
    ReplicaReady,
    ReplicaRestarting,
    ReplicaStarted,
    ReplicaStopped,
    ReplicaUnready,
    RequestTally,
    RunEvent,
    RunMetadata,
    RunWarning,
    ScaleDecision,
    ScrapeFailed,
    SweepProbeRecord,
    SweepResult,
    SweepSummary,
    UnknownEvent,
    request_view,
)
from harness.rundir import (
    RunDirectory,
    SavedScenario,
    leftover_from_json,
    leftover_to_json,
    read_sweep_summary,
    write_atomically,
    write_sweep_summary,
)

needs_dev_full = pytest.mark.skipif(not os.path.exists("/dev/full"), reason="needs /dev/full (Linux)")


def test_write_atomically_replaces_the_whole_file(tmp_path: Path) -> None:
    path = tmp_path / "report.md"
    path.write_text("old")
    assert write_atomically(path, "new") == path
    assert path.read_text() == "new"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["report.md"]


def test_writing_into_a_missing_folder_names_the_file(tmp_path: Path) -> None:
    path = tmp_path / "nope" / "compare.html"
    with pytest.raises(ReportError, match=r"compare\.html: cannot write \(No such file or directory\)"):
        write_atomically(path, "x")


@needs_dev_full
def test_a_full_disk_leaves_no_temporary_file(tmp_path: Path) -> None:
    # The temporary file is a link to /dev/full, so writing it fails as on a full disk.
    (tmp_path / "report.html.tmp").symlink_to("/dev/full")
    (tmp_path / "report.html").write_text("previous")
    with pytest.raises(ReportError, match=r"report\.html: cannot write \(No space left on device\)"):
        write_atomically(tmp_path / "report.html", "x" * 100_000)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["report.html"]
    assert (tmp_path / "report.html").read_text() == "previous", "the old report survives a failed write"


def test_a_run_directory_is_never_reused(tmp_path: Path) -> None:
    RunDirectory(tmp_path / "run-1").create()
    with pytest.raises(ConfigError, match=r"output\.run_id: run directory .*run-1 already exists") as caught:
        RunDirectory(tmp_path / "run-1").create()
    assert caught.value.hint is not None and "--run-id" in caught.value.hint


def test_a_record_that_cannot_be_written_is_an_error_kept_for_the_run(tmp_path: Path) -> None:
    run_dir = RunDirectory(tmp_path / "run")
    run_dir.create()
    event = RunEvent(t_s=1.0, detail=ReplicaStarted("replica-1"))
    run_dir.append(event)
    # Records of another type go to a file on a "full disk" (/dev/full fails every write with ENOSPC).
    (run_dir.path / "replica_counts.jsonl").symlink_to("/dev/full")
    with pytest.raises(ReportError, match=r"replica_counts.jsonl: cannot write a record \(No space left on device\)"):
        run_dir.append(ReplicaCount(t_s=1.0, desired=1, ready=1))
    assert run_dir.failure is not None and "replica_counts.jsonl" in str(run_dir.failure)
    run_dir.close()
    assert run_dir.read_records(RunEvent) == [event], "what was written before is kept"


# --------------------------------------------------------------------------- typed records

RECORDED = Path(__file__).parent / "fixtures" / "run_recorded"
EVERY_EVENT = [
    ReplicaStarted("r-1", pid=41, port=3001),
    ReplicaReady("r-1", 12.5),
    ReplicaUnready("r-1", 3),
    ReplicaStopped("r-1", exit_code=0),
    ReplicaCrashed("r-2", exit_code=137, reason="OOMKilled", oom_killed=True, restarts=1, log_tail="killed"),
    AutoscalerSync(2, 2, reason="within tolerance"),
    ScaleDecision(
        2,
        3,
        source="hpa",
        reason="cpu",
        limited_by="maxReplicas",
        proposals=(MetricProposal("cpu", 88.0, 60.0, None, ""),),
    ),
    RunWarning("kubernetes", "no metrics", hint="install metrics-server"),
    ScrapeFailed("r-1", "http://127.0.0.1:3001/metrics", "connection refused"),
    ImageBuilt("svc:1", 123, 4.5, reused=False),
    ImagePushed("svc:1", "registry.example/svc@sha256:" + "0" * 64, push_s=3.5),
    ImageLoaded("svc:1", "node-1", imported=True, load_s=2.0),
    ContainersRemoved("left by an earlier run", ("harness-x-replica-1",)),
    KindClusterUsed("harness", created=True),
    NamespaceCreated("harness"),
    ObjectApplied("Deployment", "model-service"),
    LoadgenLogResumed("loadgen-worker-0-abcde", "ProtocolError: Connection broken", records_read=12),
    UnknownEvent("stage_start", {"stage": "warm-up"}),
    ReplicaRestarting("r-2", backoff_s=10.0, restarts=1),
    FaultInjected("steady", "pause", "r-1", pause_s=5.0),
    FaultEnded("steady", "pause", "r-1"),
]


def test_every_event_kind_round_trips_through_events_jsonl(tmp_path: Path) -> None:
    assert set(EVENT_KINDS.values()) <= {type(event) for event in EVERY_EVENT}, "an event kind is not tested"
    run_dir = RunDirectory(tmp_path / "run")
    run_dir.create()
    for index, event in enumerate(EVERY_EVENT):
        run_dir.append(RunEvent(float(index), event))
    run_dir.close()
    assert [e.detail for e in run_dir.read_records(RunEvent)] == EVERY_EVENT
    first = json.loads(run_dir.file("events.jsonl").read_text().splitlines()[6])
    assert first["kind"] == "scale_decision" and {"from", "to", "proposals"} <= set(first["detail"])
    assert first["detail"]["proposals"][0] == {
        "metric": "cpu",
        "current": 88.0,
        "target": 60.0,
        "replicas": None,
        "reason": "",
    }


def test_events_of_an_older_harness_still_load(tmp_path: Path) -> None:
    events = RunDirectory(RECORDED).read_records(RunEvent)
    assert events[0].detail == ReplicaStarted("replica-1", pid=41230, port=41001)
    assert UnknownEvent("stage_start", {"stage": "low"}) in [e.detail for e in events]
    (decision,) = [e.detail for e in events if isinstance(e.detail, ScaleDecision)]
    assert (decision.from_replicas, decision.to_replicas, decision.limited_by) == (2, 3, "maxReplicas")
    # Before both producers wrote the same keys, the HPA watcher wrote these; they are ignored now.
    run_dir = RunDirectory(tmp_path)
    line = {
        "t_s": 5.0,
        "kind": "scale_decision",
        "detail": {"from": 2, "to": 3, "source": "hpa", "current_replicas": 2, "metrics": [{"type": "Resource"}]},
    }
    run_dir.file("events.jsonl").write_text(json.dumps(line) + "\n")
    assert [e.detail for e in run_dir.read_records(RunEvent)] == [ScaleDecision(2, 3, source="hpa")]


def test_run_metadata_round_trips_and_an_older_file_still_loads(tmp_path: Path) -> None:
    recorded = RunDirectory(RECORDED).read_metadata()
    assert recorded.machine is not None and recorded.machine.cpus == 4
    assert recorded.cpu_placement is not None and recorded.cpu_placement.loadgen_cpus == (3,)
    run_dir = RunDirectory(tmp_path)
    run_dir.write_metadata(recorded)
    assert run_dir.read_metadata() == recorded
    run_dir.file("metadata.json").write_text(json.dumps({"run_id": "r", "written_by_a_newer_harness": 1}))
    assert run_dir.read_metadata() == RunMetadata(run_id="r")


def test_loadgen_overhead_round_trips_and_an_older_run_has_none(tmp_path: Path) -> None:
    assert RunDirectory(RECORDED).read_records(LoadgenOverhead) == []
    run_dir = RunDirectory(tmp_path)
    overhead = LoadgenOverhead(process=0, requests=200, rate_rps=100.0, p50_ms=0.31, p95_ms=0.62, p99_ms=1.4)
    run_dir.append(overhead)
    run_dir.close()
    assert run_dir.read_records(LoadgenOverhead) == [overhead]


def test_client_intervals_keep_their_named_requests_and_older_records_have_none(tmp_path: Path) -> None:
    old = RunDirectory(RECORDED).read_records(ClientInterval)
    assert old and all(record.by_request == {} for record in old)
    tally = RequestTally(requests=3, failures=1, errors={"http_500": 1}, latency_hdr=old[0].latency_hdr, streamed=2)
    record = dataclasses.replace(old[0], by_request={"predict": tally, "health": RequestTally(requests=1)})
    run_dir = RunDirectory(tmp_path / "run")
    run_dir.create()
    run_dir.append(record)
    run_dir.close()
    assert run_dir.read_records(ClientInterval) == [record]
    view = request_view(record, "predict")
    assert (view.requests, view.failures, view.streamed, view.stage, view.by_request) == (3, 1, 2, record.stage, {})


def test_the_saved_scenario_is_read_field_by_field_and_tolerates_what_an_older_harness_wrote(tmp_path: Path) -> None:
    run_dir = RunDirectory(tmp_path / "run")
    run_dir.create()
    assert run_dir.read_saved_scenario() is None
    run_dir.write_scenario(
        "name: nightly\nautoscaling: {min_replicas: 1}\ncapacity: {target_peak_rps: 120}\nmetrics: {interval_s: 2}\n"
    )
    saved = run_dir.read_saved_scenario()
    assert saved is not None
    assert (saved.name, saved.autoscaling_enabled, saved.capacity_target_peak_rps, saved.metrics_interval_s) == (
        "nightly",
        True,
        120.0,
        2.0,
    )
    # Fields of another type or shape read as unknown; the text is kept as it was for the report to show.
    odd = "name: 7\nautoscaling: {enabled: false}\ncapacity: [1]\nmetrics: {interval_s: -1}\nunknown_key: x\n"
    run_dir.write_scenario(odd)
    saved = run_dir.read_saved_scenario()
    assert saved == SavedScenario(text=odd, autoscaling_enabled=False)
    run_dir.write_scenario("- a list\n")
    assert run_dir.read_saved_scenario() == SavedScenario(text="- a list\n")
    run_dir.write_scenario("name: [unclosed\n")
    with pytest.raises(ReportError, match=r"scenario\.yaml: not valid YAML"):
        run_dir.read_saved_scenario()


def test_the_sweep_summary_is_written_whole_and_read_back_as_it_was(tmp_path: Path) -> None:
    search = SweepResult(
        max_sustainable_rps=40.0,
        bracket_low=40.0,
        bracket_high=44.0,
        probes=(Probe(rate_rps=40.0, passed=True), Probe(rate_rps=44.0, passed=False)),
        reason="between 40 and 44 rps",
    )
    probe = SweepProbeRecord(
        replicas=2, rate_rps=44.0, duration_s=12.5, status="FAIL", achieved_rps=None, run_dir="/r/probe-02"
    )
    summary = SweepSummary(
        sweep_id="s-1", result=search, by_replicas={"2": search}, scaling_efficiency=None, probes=(probe,)
    )
    path = write_sweep_summary(tmp_path / "sweep-dir", summary)
    assert path.name == "sweep.json" and json.loads(path.read_text())["by_replicas"]["2"]["bracket_high"] == 44.0
    assert read_sweep_summary(path) == summary == read_sweep_summary(path.parent)
    path.write_text("{}")
    with pytest.raises(ReportError, match="not a sweep summary"):
        read_sweep_summary(path)


def test_a_leftover_goes_to_json_without_unset_fields_and_comes_back_as_it_was() -> None:
    cluster = Leftover(kind="kind", cluster="harness", kubeconfig="/k", kind_binary=None)
    assert leftover_to_json(cluster) == {"kind": "kind", "cluster": "harness", "kubeconfig": "/k"}
    assert leftover_from_json(leftover_to_json(cluster)) == cluster
    # kind's owner records carry more keys (owner, run_id): ignored; what has no kind is no leftover.
    assert leftover_from_json({"kind": "docker", "owner": "o", "run_id": "r"}) == Leftover(kind="docker")
    assert [leftover_from_json(data) for data in ({"cluster": "c"}, [1], {"kind": 3}, None)] == [None] * 4
