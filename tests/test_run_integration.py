"""End to end on the local target: real `bentoml serve` replicas, real Locust, the real CLI.

Checks that the verdict agrees with the raw per-interval data and with Locust's own totals, that
a broken scenario exits 2 naming the field, and that no replica or load-generator process
outlives a run, also an interrupted one or one whose replica fails to start.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest
import yaml

from harness.exit_codes import ExitCode
from harness.processes import free_port
from tests.waiting import wait_until

ROOT = Path(__file__).resolve().parents[1]
HARNESS = [sys.executable, "-m", "harness.cli"]
# target.startup_timeout_s of these runs: two `bentoml serve` starting side by side took 30 s here beside the
# other lanes' load (the scenario's default allows 90 s); how fast replicas start is not what these tests check.
STARTUP_S = 240
# A whole run of about 20 s of load: the start, the load, the stop and the reports, on a loaded machine.
RUN_S = STARTUP_S + 240

pytestmark = pytest.mark.integration


def short_scenario(tmp_path: Path, **changes: object) -> Path:
    """loadtests/default.yaml shortened to about 20 s of load, written next to a tmp output dir."""
    data = yaml.safe_load((ROOT / "loadtests" / "default.yaml").read_text())
    data["service"]["path"] = str(ROOT / "examples" / "digits")
    data["stages"] = [
        {"name": "warmup", "duration_s": 3, "users": 2, "spawn_rate": 2, "judged": False},
        {"name": "users-4", "duration_s": 8, "users": 4, "spawn_rate": 4},
        {"name": "open-40rps", "duration_s": 8, "arrival_rate_rps": 40, "arrival": "poisson"},
    ]
    data["output"] = {"dir": "reports"}  # relative to the working directory, as users write it
    data["target"]["startup_timeout_s"] = STARTUP_S
    data.update(changes)
    path = tmp_path / "scenario.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def run_dirs(tmp_path: Path) -> list[Path]:
    return sorted(p for p in (tmp_path / "reports").glob("*") if p.is_dir())


def leftover_processes(marker: str) -> list[str]:
    """Processes whose command line or environment mentions `marker` (the test's tmp dir)."""
    found = []
    for process in psutil.process_iter(["pid", "cmdline"]):
        try:
            cmdline = " ".join(process.info["cmdline"] or [])
            environ = process.environ() if process.pid != os.getpid() else {}
        except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
            continue
        if process.pid == os.getpid():
            continue
        if marker in cmdline or any(marker in value for value in environ.values()):
            found.append(f"{process.pid}: {cmdline[:120]}")
    return found


@pytest.fixture
def clean_tmp(tmp_path: Path) -> Iterator[Path]:
    """A tmp dir whose processes are killed after the test, so one failing test cannot leak into others."""
    yield tmp_path
    for line in leftover_processes(str(tmp_path)):
        with contextlib.suppress(psutil.NoSuchProcess):
            psutil.Process(int(line.split(":")[0])).kill()


def test_run_verdict_agrees_with_raw_data(clean_tmp: Path) -> None:
    tmp_path = clean_tmp
    scenario = short_scenario(tmp_path)
    result = subprocess.run(
        [*HARNESS, "run", str(scenario)], cwd=tmp_path, capture_output=True, text=True, timeout=RUN_S, check=False
    )
    assert result.returncode in (0, 1, 3), result.stderr[-3000:]
    (run_dir,) = run_dirs(tmp_path)
    verdict = json.loads((run_dir / "verdict.json").read_text())
    intervals = [json.loads(line) for line in (run_dir / "client_intervals.jsonl").read_text().splitlines()]

    stages = {stage["name"]: stage for stage in verdict["stages"]}
    assert set(stages) == {"warmup", "users-4", "open-40rps"}
    for name, stage in stages.items():
        mine = [i for i in intervals if i["stage"] == name]
        assert stage["requests"] == sum(i["requests"] for i in mine), name
        assert stage["failures"] == sum(i["failures"] for i in mine), name
        error_kinds: dict[str, int] = {}
        for interval in mine:
            for kind, count in interval["errors"].items():
                error_kinds[kind] = error_kinds.get(kind, 0) + count
        assert stage["errors"] == error_kinds, name
        assert stage["requests"] > 0, f"stage {name} completed no request"
        expected_rps = stage["requests"] / stage["duration_s"]
        assert stage["achieved_rps"] == pytest.approx(expected_rps, rel=1e-6)

    # The open-model stage offered about 40 requests/s over 8 s.
    open_stage = stages["open-40rps"]
    assert open_stage["offered_rps"] == pytest.approx(40)
    assert 20 <= open_stage["requests"] <= 500

    # Locust's own totals agree with the harness's interval records.
    locust = json.loads((run_dir / "locust.json").read_text())
    locust_requests = sum(entry["num_requests"] for entry in locust)
    locust_failures = sum(entry["num_failures"] for entry in locust)
    dropped = sum(i["dropped"] for i in intervals)  # counted as failures by the harness, unseen by Locust
    assert locust_requests == sum(i["requests"] for i in intervals) - dropped
    assert locust_failures == sum(i["failures"] for i in intervals) - dropped

    # Every objective is judged on the judged stages, each with a measured value or a reason.
    judged = [o for o in verdict["objectives"] if o["stage"] in ("users-4", "open-40rps")]
    assert len(judged) == 2 * 4
    for objective in judged:
        assert objective["status"] in ("PASS", "WARN", "FAIL", "INCONCLUSIVE")
        assert objective["measured"] is not None or objective["reason"]
    assert verdict["exit_code"] == result.returncode

    for name in ("report.html", "report.md", "junit.xml", "metadata.json", "stages.json", "scenario.yaml"):
        assert (run_dir / name).exists(), name
    assert "users-4" in result.stdout, "the verdict table is printed"
    assert leftover_processes(str(tmp_path)) == []


# Its file holds minutes of runs: handed out first in its lane.
@pytest.mark.starts_first
def test_two_locust_processes_each_load_every_stage_from_its_start_to_its_end(clean_tmp: Path) -> None:
    """load.processes: 2. Each worker measures its overhead before its load, and the master holds the stage
    clock until both have: once a worker still calibrating started its load 2 s late while the master's clock
    stopped the test on time, cutting the last stage short."""
    tmp_path = clean_tmp
    stages = [
        {"name": "open-40rps", "duration_s": 6, "arrival_rate_rps": 40, "arrival": "constant"},
        {"name": "users-2", "duration_s": 6, "users": 2, "spawn_rate": 2},
    ]
    scenario = short_scenario(tmp_path, stages=stages, load={"processes": 2})
    result = subprocess.run(
        [*HARNESS, "run", str(scenario)], cwd=tmp_path, capture_output=True, text=True, timeout=RUN_S, check=False
    )
    assert result.returncode in (0, 1, 3), result.stderr[-3000:]
    (run_dir,) = run_dirs(tmp_path)
    intervals = [json.loads(line) for line in (run_dir / "client_intervals.jsonl").read_text().splitlines()]
    verdict = json.loads((run_dir / "verdict.json").read_text())
    for stage in verdict["stages"]:
        mine = [i for i in intervals if i["stage"] == stage["name"]]
        assert len({i["process"] for i in mine}) == 2, stage["name"]
        # Rule (b5): no process's records leave the stage's start or end uncovered.
        assert not [r for r in stage["invalid_reasons"] if r.startswith("load generator process")], stage
    # The closed stage's users ran on both processes until its end: the master's clock, which starts and stops
    # them, is the workers' clock (it once ran 4 s ahead, and stopped them 1 s into the stage). Its ticks are
    # a second apart, so the users may start up to a second late; the spawn takes a moment more.
    closed = next(i for i in verdict["stages"] if i["name"] == "users-2")
    for process in {i["process"] for i in intervals}:
        inside = [
            i["users"]
            for i in intervals
            if i["process"] == process
            and i["stage"] == "users-2"
            and i["t_start_s"] >= closed["start_s"] + 2.0
            and i["t_end_s"] <= closed["end_s"]
        ]
        assert len(inside) >= 2 and set(inside) == {1}, (process, inside)
    open_stage = next(i for i in verdict["stages"] if i["name"] == "open-40rps")
    scheduled = sum(i["scheduled"] for i in intervals if i["stage"] == "open-40rps")
    # 40 rps x 6 s, split over the two processes; each starts its arrivals when it sees the stage begin.
    assert 228 <= scheduled <= 242, scheduled
    assert open_stage["requests"] == scheduled
    assert leftover_processes(str(tmp_path)) == []


def test_broken_scenario_exits_2_naming_the_field(tmp_path: Path) -> None:
    scenario = short_scenario(tmp_path)
    data = yaml.safe_load(scenario.read_text())
    data["stages"][1]["duration_s"] = "soon"
    scenario.write_text(yaml.safe_dump(data))
    result = subprocess.run([*HARNESS, "run", str(scenario)], cwd=tmp_path, capture_output=True, text=True, check=False)
    assert result.returncode == 2
    assert "stages[1].duration_s" in result.stderr
    assert "'soon'" in result.stderr
    assert "Traceback" not in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "reports").exists(), "nothing is created for an invalid scenario"


def test_interrupted_run_stops_everything_and_keeps_data(clean_tmp: Path) -> None:
    tmp_path = clean_tmp
    scenario = short_scenario(tmp_path, stages=[{"name": "long", "duration_s": 120, "users": 4, "spawn_rate": 4}])
    process = subprocess.Popen(
        [*HARNESS, "run", str(scenario)],
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        # A background job of a non-interactive shell (a CI runner's) starts with SIGINT ignored, and the
        # harness would inherit that: Ctrl-C is what this test sends, so the child gets the default back.
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    try:
        deadline = time.time() + STARTUP_S + 60
        intervals_file = None
        while time.time() < deadline:
            dirs = run_dirs(tmp_path)
            if dirs and (dirs[0] / "client_intervals.jsonl").exists():
                intervals_file = dirs[0] / "client_intervals.jsonl"
                if len(intervals_file.read_text().splitlines()) >= 3:
                    break
            assert process.poll() is None, process.communicate()[1][-2000:]
            time.sleep(0.5)
        assert intervals_file is not None, "load never started"
        assert leftover_processes(str(tmp_path)), "replicas and Locust run during the test"
        process.send_signal(signal.SIGINT)
        # Stopping replicas and Locust, then the verdict and reports: seconds, stretched by a loaded machine.
        _, stderr = process.communicate(timeout=180)
    finally:
        if process.poll() is None:
            process.kill()
    assert process.returncode == 130, stderr[-2000:]
    assert leftover_processes(str(tmp_path)) == []
    run_dir = intervals_file.parent
    kept = [json.loads(line) for line in intervals_file.read_text().splitlines()]
    assert sum(i["requests"] for i in kept) > 0, "collected data is kept"
    metadata = json.loads((run_dir / "metadata.json").read_text())
    assert metadata["interrupted"] is True
    verdict = json.loads((run_dir / "verdict.json").read_text())
    assert verdict["stages"][0]["requests"] == sum(i["requests"] for i in kept)


def test_replica_that_fails_to_start_ends_the_run_with_its_log(clean_tmp: Path) -> None:
    tmp_path = clean_tmp
    broken = tmp_path / "broken_service"
    broken.mkdir()
    (broken / "service.py").write_text("raise RuntimeError('model file is corrupt: weights.bin')\n")
    scenario = short_scenario(tmp_path)
    data = yaml.safe_load(scenario.read_text())
    data["service"] = {"path": str(broken), "service": "service:Broken"}
    data["target"]["startup_timeout_s"] = 60
    scenario.write_text(yaml.safe_dump(data))
    result = subprocess.run(
        [*HARNESS, "run", str(scenario)], cwd=tmp_path, capture_output=True, text=True, timeout=120, check=False
    )
    assert result.returncode == ExitCode.INFRASTRUCTURE == 4, "a deployment that fails is the infrastructure's"
    # Both replicas fail the same way; whichever exits first is the one named.
    assert re.search(r"replica-[12]", result.stderr)
    assert "model file is corrupt" in result.stderr, "the error carries the tail of the replica's log"
    assert leftover_processes(str(tmp_path)) == []


def marked(run_id: str, replica: str | None = None) -> list[psutil.Process]:
    """Processes bearing the run's mark (harness.processes), optionally one replica's."""
    found = []
    for process in psutil.process_iter():
        with contextlib.suppress(psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
            environ = process.environ()
            mine = environ.get("HARNESS_RUN_ID") == run_id and replica in (None, environ.get("HARNESS_REPLICA"))
            if mine and process.status() != psutil.STATUS_ZOMBIE:
                found.append(process)
    return found


# Quiet: the killed harness's processes and watchdog must be gone within 15 s.
@pytest.mark.load_timing
def test_killed_replica_and_killed_harness_leave_nothing_and_the_run_still_renders(clean_tmp: Path) -> None:
    """SIGKILL of one replica's `bentoml serve` mid-run takes its workers with it; SIGKILL of the harness
    leaves nothing of the run after 15 s, and `harness report` judges what was written."""
    tmp_path = clean_tmp
    scenario = short_scenario(tmp_path, stages=[{"name": "long", "duration_s": 120, "users": 4, "spawn_rate": 4}])
    process = subprocess.Popen([*HARNESS, "run", str(scenario)], cwd=tmp_path, stdout=subprocess.DEVNULL)

    def load_started() -> bool:
        return bool(run_dirs(tmp_path)) and (run_dirs(tmp_path)[0] / "stages.json").exists()

    try:
        wait_until(load_started, "load", STARTUP_S + 60)
        run_dir = run_dirs(tmp_path)[0]
        run_id = run_dir.name
        # The stages are on disk as soon as the load starts, before any of them ended.
        assert [s["name"] for s in json.loads((run_dir / "stages.json").read_text())] == ["long"]
        replica = [p for p in marked(run_id, "replica-1") if "serve" in " ".join(p.cmdline())]
        supervisor = min(replica, key=lambda p: p.create_time())
        assert len(marked(run_id, "replica-1")) >= 2, "bentoml serve runs workers"
        supervisor.kill()
        wait_until(lambda: marked(run_id, "replica-1") == [], "the killed replica's workers stopped", 15)
        assert marked(run_id, "replica-2"), "the other replica serves on"
        records = run_dir / "client_intervals.jsonl"
        wait_until(lambda: records.exists() and len(records.read_text().splitlines()) >= 4, "records", 60)
        process.kill()
        process.wait()
        wait_until(lambda: marked(run_id) == [], "every process of the run stopped after the harness's SIGKILL", 15)
        wait_until(lambda: leftover_processes(run_id) == [], "the run's watchdog exited", 15)
    finally:
        if process.poll() is None:
            process.kill()
    report = subprocess.run(
        [*HARNESS, "report", str(run_dir)], cwd=tmp_path, capture_output=True, text=True, timeout=120, check=False
    )
    assert report.returncode == 0, report.stderr[-2000:]
    verdict = json.loads((run_dir / "verdict.json").read_text())
    (stage,) = verdict["stages"]
    assert stage["requests"] > 0 and stage["end_s"] - stage["start_s"] < 120, "the stage is cut at the last record"
    assert any("killed before the run ended" in warning for warning in verdict["warnings"])


def test_a_full_disk_mid_run_stops_it_with_exit_2_and_keeps_the_records(clean_tmp: Path) -> None:
    tmp_path = clean_tmp
    port = free_port()
    server = subprocess.Popen(
        [
            *(sys.executable, str(ROOT / "bench" / "synthetic_server.py"), "--port", str(port), "--mode", "jitter"),
            *("--base-ms", "2", "--jitter-ms", "1", "--max-lifetime-s", "300"),
        ]
    )
    disk = tmp_path / "small-disk"
    disk.mkdir()
    # A 64 KiB file system: room for the scenario and a few seconds of records, then ENOSPC.
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", str(disk)], check=True)
    try:
        bodies = tmp_path / "bodies.jsonl"
        bodies.write_text('{"x": 1}\n')
        scenario = tmp_path / "full.yaml"
        scenario.write_text(
            yaml.safe_dump(
                {
                    "name": "full-disk",
                    "service": {"path": str(tmp_path), "service": "synthetic:Jitter", "endpoint": "/predict"},
                    "target": {"kind": "external", "urls": [f"http://127.0.0.1:{port}"]},
                    "stages": [{"name": "long", "duration_s": 120, "arrival_rate_rps": 50}],
                    "payload": {"source": "jsonl", "file": str(bodies)},
                    "metrics": {"interval_s": 0.5},
                    "output": {"dir": str(disk)},
                }
            )
        )
        result = subprocess.run(
            [*HARNESS, "run", str(scenario)], cwd=tmp_path, capture_output=True, text=True, timeout=180, check=False
        )
        assert result.returncode == ExitCode.INFRASTRUCTURE, result.stderr[-2000:]
        errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
        (run_dir,) = [p for p in disk.iterdir() if p.is_dir()]
        # Which file meets the full disk first depends on timing; the error names it.
        assert len(errors) == 1 and f"error: {run_dir}/" in errors[0], result.stderr[-2000:]
        assert "cannot write" in errors[0] and "No space left on device" in errors[0], errors
        # What was written before the disk filled is kept, every complete line readable.
        kept = {path.name: path.read_text().splitlines() for path in run_dir.glob("*.jsonl")}
        assert kept.get("events.jsonl") and kept.get("server_samples.jsonl"), kept.keys()
        for lines in kept.values():
            for line in lines[:-1]:
                json.loads(line)
        assert leftover_processes(run_dir.name) == []
    finally:
        server.kill()
        subprocess.run(["umount", "--lazy", str(disk)], check=False)


# Quiet: the restarted replica must start and serve again within the stage, which a loaded machine delays.
@pytest.mark.load_timing
def test_a_killed_replica_restarts_after_its_back_off_and_the_fault_stage_is_judged(clean_tmp: Path) -> None:
    """stages[].faults on the local target: replica-1 SIGKILLed 5 s in comes back after its 1 s back-off,
    replica-2 frozen for 4 s resumes; the stage is judged through both (not INCONCLUSIVE) and the verdict
    says what each fault cost."""
    tmp_path = clean_tmp
    faults = [
        {"at_s": 5, "action": "kill", "replica": 1},
        {"at_s": 35, "action": "pause", "replica": 1, "pause_s": 4},
    ]
    scenario = short_scenario(
        tmp_path,
        stages=[{"name": "steady", "duration_s": 50, "arrival_rate_rps": 20, "arrival": "constant", "faults": faults}],
        objectives=[{"metric": "error_rate", "max": 0.5}, {"metric": "latency_p95_ms", "max": 5000}],
    )
    data = yaml.safe_load(scenario.read_text())
    data["target"]["restart_backoff_s"] = 1
    scenario.write_text(yaml.safe_dump(data))
    result = subprocess.run(
        [*HARNESS, "run", str(scenario)], cwd=tmp_path, capture_output=True, text=True, timeout=RUN_S, check=False
    )
    assert result.returncode in (0, 1), result.stderr[-3000:]
    (run_dir,) = run_dirs(tmp_path)
    verdict = json.loads((run_dir / "verdict.json").read_text())
    (stage,) = verdict["stages"]
    assert not stage["invalid_reasons"], "the injected crash is the experiment, not a doubt on the stage"
    kill, pause = verdict["faults"]
    assert (kill["action"], kill["replica"], kill["error"]) == ("kill", "replica-1", None)
    assert kill["recovered_s"] is not None and kill["recovered_s"] > 1.0, "back after the back-off and a start"
    assert (pause["action"], pause["replica"], pause["error"]) == ("pause", "replica-2", None)
    assert pause["recovered_s"] is not None and pause["recovered_s"] >= 4.0
    assert kill["objectives_held"] is not None
    events = [json.loads(line) for line in (run_dir / "events.jsonl").read_text().splitlines()]
    kinds = [(e["kind"], e["detail"].get("replica")) for e in events]
    assert kinds.count(("replica_started", "replica-1")) == 2 and ("replica_restarting", "replica-1") in kinds
    crash = next(e["detail"] for e in events if e["kind"] == "replica_crashed")
    assert crash["injected"] is True and crash["exit_code"] == -9
    assert "fault: kill replica-1" in result.stdout
    assert leftover_processes(str(tmp_path)) == []
