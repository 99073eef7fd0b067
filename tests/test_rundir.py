"""The run directory: atomic writes that leave nothing behind on failure, and no reuse of a run id."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from harness.errors import ConfigError, ReportError
from harness.model import ReplicaCount, RunEvent
from harness.rundir import RunDirectory, write_atomically

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
    event = RunEvent(t_s=1.0, kind="replica_started", detail={"replica": "replica-1"})
    run_dir.append(event)
    # Records of another type go to a file on a "full disk" (/dev/full fails every write with ENOSPC).
    (run_dir.path / "replica_counts.jsonl").symlink_to("/dev/full")
    with pytest.raises(ReportError, match=r"replica_counts.jsonl: cannot write a record \(No space left on device\)"):
        run_dir.append(ReplicaCount(t_s=1.0, desired=1, ready=1))
    assert run_dir.failure is not None and "replica_counts.jsonl" in str(run_dir.failure)
    run_dir.close()
    assert run_dir.read_records(RunEvent) == [event], "what was written before is kept"
