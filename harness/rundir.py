"""The run directory: every record of a run streamed to JSON-lines files, and read back for reports.

A finished run directory holds everything the reports need, so `harness report RUN_DIR` is a pure
function of it. Layout (one file per record type):

    scenario.yaml           the scenario as validated (overrides applied)
    metadata.json           RunMetadata: versions, machine, git commit, CPU placement, start/end times
    stages.json             StageWindow list: the stages as they actually ran
    client_intervals.jsonl  ClientInterval per load-generator process per interval
    loadgen_overhead.jsonl  LoadgenOverhead per load-generator process (its calibration before the load)
    server_samples.jsonl    ServerSample per replica per scrape
    replica_samples.jsonl   ReplicaSample per replica per interval
    replica_counts.jsonl    ReplicaCount per interval
    events.jsonl            RunEvent: {"t_s", "kind", "detail"}, detail the fields of the kind's dataclass
    locust.json             Locust's own final totals (--json-file), for cross-checks
    verdict.json            Verdict
    report.html, report.md, junit.xml
"""

from __future__ import annotations

import contextlib
import json
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any, TypeVar

import yaml

from harness.errors import ConfigError, ReportError, StorageError
from harness.model import (
    EVENT_KINDS,
    ClientInterval,
    Leftover,
    LoadgenOverhead,
    ReplicaCount,
    ReplicaSample,
    RunEvent,
    RunMetadata,
    ServerSample,
    StageWindow,
    SweepSummary,
    UnknownEvent,
    Verdict,
    from_json_dict,
    to_json_dict,
)

T = TypeVar("T")


def write_atomically(path: Path, text: str) -> Path:
    """Write `text` to `path` through a temporary file and a rename, so a reader never sees half a file.

    On failure the temporary file is removed and an error names `path`: a ReportError when the path is wrong (a
    missing folder: the caller's input), a StorageError when the disk fails (full, read-only, I/O errors).
    """
    tmp = path.with_name(path.name + ".tmp")
    try:
        tmp.write_text(text, encoding="utf-8")
        tmp.replace(path)
    except OSError as error:
        with contextlib.suppress(OSError):
            tmp.unlink(missing_ok=True)
        wrong_path = isinstance(error, FileNotFoundError | NotADirectoryError)
        kind = ReportError if wrong_path else StorageError
        raise kind(f"{path}: cannot write ({error.strerror or error})") from error
    return path


RECORD_FILES: dict[type, str] = {
    ClientInterval: "client_intervals.jsonl",
    LoadgenOverhead: "loadgen_overhead.jsonl",
    ServerSample: "server_samples.jsonl",
    ReplicaSample: "replica_samples.jsonl",
    ReplicaCount: "replica_counts.jsonl",
    RunEvent: "events.jsonl",
}


def _record_to_json(record: Any) -> Any:
    if isinstance(record, RunEvent):
        event = record.detail
        detail = dict(event.detail) if isinstance(event, UnknownEvent) else to_json_dict(event)
        return {"t_s": record.t_s, "kind": event.kind, "detail": detail}
    return to_json_dict(record)


def _record_from_json(cls: type[T], data: Any) -> T:
    if cls is RunEvent:
        kind, detail = data["kind"], data.get("detail") or {}
        event_class = EVENT_KINDS.get(kind)
        # Old run directories must keep rendering: keys an older harness wrote and this one dropped are
        # ignored, and a kind this version does not know is kept as it was read.
        event = (
            UnknownEvent(kind, dict(detail))
            if event_class is None
            else from_json_dict(event_class, detail, ignore_unknown=True)
        )
        return RunEvent(t_s=float(data["t_s"]), detail=event)  # type: ignore[return-value]
    return from_json_dict(cls, data)


SWEEP_SUMMARY_FILE = "sweep.json"


def leftover_to_json(leftover: Leftover) -> dict[str, Any]:
    """A leftover as the watchdog's pipe and kind's owner records carry it (unset fields left out)."""
    return {key: value for key, value in to_json_dict(leftover).items() if value is not None}


def leftover_from_json(data: Any) -> Leftover | None:
    """A leftover from its JSON (keys this version does not know are ignored); None when it is not one."""
    if not isinstance(data, dict) or not isinstance(data.get("kind"), str):
        return None
    try:
        return from_json_dict(Leftover, data, ignore_unknown=True)
    except (TypeError, ValueError):
        return None


def write_sweep_summary(sweep_dir: Path, summary: SweepSummary) -> Path:
    """sweep.json in the sweep's directory (beside its probes' run directories), written whole or not at all."""
    sweep_dir.mkdir(parents=True, exist_ok=True)
    return write_atomically(sweep_dir / SWEEP_SUMMARY_FILE, json.dumps(to_json_dict(summary), indent=2) + "\n")


def read_sweep_summary(path: Path) -> SweepSummary:
    """A sweep.json (the file, or the sweep directory holding it)."""
    path = path / SWEEP_SUMMARY_FILE if path.is_dir() else path
    try:
        return from_json_dict(SweepSummary, json.loads(path.read_text(encoding="utf-8")), ignore_unknown=True)
    except FileNotFoundError as error:
        raise ReportError(f"{path}: missing") from error
    except (ValueError, TypeError, KeyError) as error:
        raise ReportError(f"{path}: not a sweep summary ({error})") from error


@dataclass(frozen=True)
class SavedScenario:
    """What the reports read of the scenario a run saved (scenario.yaml as run). Read tolerantly, field by field:
    a run directory written by an older harness, or a scenario edited by hand, must keep rendering, so a field
    that is absent or of another type reads as unknown rather than failing the report (conclude.py, which judges
    the run again, parses the whole scenario strictly instead)."""

    text: str
    name: str | None = None
    # False when the scenario has no autoscaling section; a section without `enabled` is enabled.
    autoscaling_enabled: bool = False
    capacity_target_peak_rps: float | None = None
    metrics_interval_s: float | None = None

    @classmethod
    def from_text(cls, text: str, source: str) -> SavedScenario:
        try:
            loaded = yaml.safe_load(text)
        except yaml.YAMLError as error:
            raise ReportError(f"{source}: not valid YAML ({error})".replace("\n", " ")) from error
        data = loaded if isinstance(loaded, dict) else {}
        autoscaling, capacity, metrics = (data.get(key) for key in ("autoscaling", "capacity", "metrics"))
        name = data.get("name")
        peak = capacity.get("target_peak_rps") if isinstance(capacity, dict) else None
        interval = metrics.get("interval_s") if isinstance(metrics, dict) else None
        return cls(
            text=text,
            name=name if isinstance(name, str) and name else None,
            autoscaling_enabled=bool(autoscaling.get("enabled", True)) if isinstance(autoscaling, dict) else False,
            capacity_target_peak_rps=_number(peak),
            metrics_interval_s=interval_s if (interval_s := _number(interval)) and interval_s > 0 else None,
        )


def _number(value: Any) -> float | None:
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else None


class RunDirectory:
    """Appends records as they are collected (flushed per line, so an interrupted run keeps its data)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._files: dict[str, IO[str]] = {}
        self._lock = threading.Lock()
        # The first record that could not be written: a run stops on it rather than go on collecting nothing;
        # what was written before stays.
        self.failure: StorageError | None = None
        # Called with every record appended, once it is written (the remote write of the run's series).
        self._observers: list[Callable[[Any], None]] = []

    def observe(self, observer: Callable[[Any], None]) -> None:
        """Have `observer` called with every record appended from now on, after it is written."""
        self._observers.append(observer)

    def create(self) -> None:
        """Make the directory; a run never writes into an existing one (a reused run id)."""
        try:
            self.path.mkdir(parents=True, exist_ok=False)
        except FileExistsError as error:
            raise ConfigError(
                f"output.run_id: run directory {self.path} already exists",
                hint="choose another --run-id, or remove that directory",
            ) from error
        except OSError as error:
            raise ConfigError(f"output.dir: cannot create run directory {self.path} ({error.strerror})") from error

    def file(self, name: str) -> Path:
        return self.path / name

    def append(self, record: Any) -> None:
        """Append one record to its type's JSON-lines file."""
        name = RECORD_FILES[type(record)]
        line = json.dumps(_record_to_json(record), separators=(",", ":")) + "\n"
        with self._lock:
            try:
                handle = self._files.get(name)
                if handle is None:
                    handle = self._files[name] = self.file(name).open("a", encoding="utf-8")
                handle.write(line)
                handle.flush()
            except OSError as error:
                failure = StorageError(
                    f"{self.file(name)}: cannot write a record ({error.strerror or error})",
                    hint="the records written before are kept; free space or fix permissions, then run again",
                )
                self.failure = self.failure or failure
                raise failure from error
        for observer in self._observers:
            observer(record)

    def write_text(self, name: str, text: str) -> Path:
        """Write a whole file atomically (temp file, then rename); returns its path."""
        return write_atomically(self.file(name), text)

    def write_json(self, name: str, value: Any) -> None:
        """Write a whole JSON document atomically (temp file, then rename)."""
        self.write_text(name, json.dumps(to_json_dict(value), indent=2, sort_keys=False) + "\n")

    def close(self) -> None:
        with self._lock:
            for handle in self._files.values():
                with contextlib.suppress(OSError):  # a full disk's error was reported when writing
                    handle.close()
            self._files.clear()

    # ------------------------------------------------------------------ reading back

    def read_records(self, cls: type[T]) -> list[T]:
        """All records of one type; a missing file is an empty list, a torn last line is skipped."""
        return list(self.iter_records(cls))

    def iter_records(self, cls: type[T]) -> Iterator[T]:
        path = self.file(RECORD_FILES[cls])
        if not path.exists():
            return
        lines = path.read_text(encoding="utf-8").splitlines()
        for number, line in enumerate(lines, start=1):
            if not line.strip():
                continue
            try:
                yield _record_from_json(cls, json.loads(line))
            except (json.JSONDecodeError, ValueError, TypeError, KeyError) as error:
                # The last line may be torn by an interrupt; anything earlier is corruption.
                if number == len(lines):
                    return
                raise ReportError(f"{path}:{number}: not a valid {cls.__name__} record ({error})") from error

    def read_json(self, name: str) -> Any:
        path = self.file(name)
        try:
            return json.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError as error:
            raise ReportError(f"{path}: missing from the run directory", hint="was the run interrupted?") from error
        except json.JSONDecodeError as error:
            raise ReportError(f"{path}: not valid JSON ({error})") from error

    def write_metadata(self, metadata: RunMetadata) -> None:
        self.write_json("metadata.json", metadata)

    def read_metadata(self) -> RunMetadata:
        """metadata.json (a ReportError when missing); keys this version does not know are ignored."""
        raw = self.read_json("metadata.json")
        if not isinstance(raw, dict):
            raise ReportError(f"{self.file('metadata.json')}: expected a JSON object")
        try:
            return from_json_dict(RunMetadata, raw, ignore_unknown=True)
        except (ValueError, TypeError) as error:
            raise ReportError(f"{self.file('metadata.json')}: not valid run metadata ({error})") from error

    def write_scenario(self, text: str) -> Path:
        return self.write_text("scenario.yaml", text)

    def read_saved_scenario(self) -> SavedScenario | None:
        """scenario.yaml as the reports read it; None when it is missing."""
        path = self.file("scenario.yaml")
        if not path.exists():
            return None
        return SavedScenario.from_text(path.read_text(encoding="utf-8"), str(path))

    def read_stages(self) -> list[StageWindow]:
        return [from_json_dict(StageWindow, item) for item in self.read_json("stages.json")]

    def read_verdict(self) -> Verdict:
        return from_json_dict(Verdict, self.read_json("verdict.json"))
