"""Live progress of a run in the terminal: a rich progress bar, plain lines, or JSON lines for machines.

The run calls `update` with a `ProgressSnapshot` about once per metrics interval, from its own thread.
The reporter keeps only the latest snapshot (bounded memory), serialises output with a lock, and limits
plain and JSON output to one line per `interval_s` (plus one at every stage change and one at `close`).
"""

from __future__ import annotations

import dataclasses
import json
import math
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from types import TracebackType
from typing import TYPE_CHECKING, Any, Literal, TextIO

if TYPE_CHECKING:
    from rich.progress import Progress, TaskID

Mode = Literal["rich", "plain", "json"]
# The rich bar's row: the stage (at most this wide), the bar, the clock, the figures; under 80 columns for the
# figures of a typical run ("397.9 rps  p95 12.9 ms  2/2 ready  err 0/35469").
STAGE_COLUMN = 14
BAR_WIDTH = 8
MODES: tuple[Mode, ...] = ("rich", "plain", "json")
DEFAULT_INTERVAL_S: dict[Mode, float] = {"rich": 0.0, "plain": 5.0, "json": 1.0}


@dataclass(frozen=True)
class ProgressSnapshot:
    """The run's state at one moment, as the progress display shows it."""

    stage: str
    # 0-based index of the stage among `stage_count`.
    stage_index: int
    stage_count: int
    elapsed_s: float
    total_s: float
    # Completed requests per second over the latest interval.
    rps: float
    # p95 latency of the latest interval; None without successful requests.
    p95_s: float | None
    ready_replicas: int | None
    desired_replicas: int | None
    # Failed and completed requests since the start of the run.
    errors: int
    requests: int


def _finite(value: Any) -> Any:
    return None if isinstance(value, float) and not math.isfinite(value) else value


# The terminal width every line fits in (a plain line, and the bar's whole row in rich mode).
LINE_WIDTH = 80


def _stage_label(snapshot: ProgressSnapshot, room: int) -> str:
    """`2/4 base`, the stage's name cut with an ellipsis to fit `room` characters."""
    label = f"{snapshot.stage_index + 1}/{snapshot.stage_count} {snapshot.stage}"
    return label if len(label) <= room else label[: max(room - 1, 0)] + "…"


def format_figures(snapshot: ProgressSnapshot) -> str:
    """The figures of a line: `70.2 rps  p95 42.9 ms  2/3 ready  err 3/1200` (ready/desired replicas; failed of
    completed requests so far)."""
    p95 = "n/a" if snapshot.p95_s is None else f"{snapshot.p95_s * 1000:.1f} ms"
    if snapshot.ready_replicas is None and snapshot.desired_replicas is None:
        replicas = "n/a ready"
    else:
        ready = "?" if snapshot.ready_replicas is None else str(snapshot.ready_replicas)
        desired = "?" if snapshot.desired_replicas is None else str(snapshot.desired_replicas)
        replicas = f"{ready}/{desired} ready"
    return f"{snapshot.rps:.1f} rps  p95 {p95}  {replicas}  err {snapshot.errors}/{snapshot.requests}"


def format_line(snapshot: ProgressSnapshot, width: int = LINE_WIDTH) -> str:
    """One line of at most `width` characters (the stage's name is cut first), e.g.
    `[ 42/160 s] 2/4 base  70.2 rps  p95 42.9 ms  2/3 ready  err 3/1200`."""
    digits = len(f"{snapshot.total_s:.0f}")
    clock = f"[{snapshot.elapsed_s:{digits}.0f}/{snapshot.total_s:.0f} s] "
    figures = "  " + format_figures(snapshot)
    line = clock + _stage_label(snapshot, max(width - len(clock) - len(figures), 12)) + figures
    return line if len(line) <= width else line[: width - 1] + "…"


class ProgressReporter:
    """Shows `ProgressSnapshot`s as they come; the mode is fixed at construction.

    mode: "rich" (a live progress bar), "plain" (one line every `interval_s`), "json" (one JSON object per
    line: {"type": "progress", ...snapshot fields} or {"type": "log", "message": ...}). None picks "rich"
    when the stream is a terminal and "plain" otherwise.
    """

    def __init__(
        self,
        mode: Mode | None = None,
        *,
        stream: TextIO | None = None,
        interval_s: float | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.stream: TextIO = stream if stream is not None else sys.stdout
        if mode is None:
            mode = "rich" if self.stream.isatty() else "plain"
        if mode not in MODES:
            raise ValueError(f"progress mode '{mode}' is unknown (expected one of: {', '.join(MODES)})")
        self.mode: Mode = mode
        self.interval_s = DEFAULT_INTERVAL_S[mode] if interval_s is None else interval_s
        if self.interval_s < 0:
            raise ValueError(f"interval_s={self.interval_s} must be >= 0")
        if mode == "rich":
            # rich is imported for the live bar only, and now rather than at the first snapshot: that comes
            # during the load, where the import's CPU would compete with the replicas and the load generator.
            import rich.progress  # noqa: F401
        self._clock = clock
        self._lock = threading.Lock()
        self._closed = False
        self._latest: ProgressSnapshot | None = None
        self._latest_shown = True
        self._last_emit_s: float | None = None
        self._last_stage: str | None = None
        self._progress: Progress | None = None
        self._task: TaskID | None = None

    # ------------------------------------------------------------------ public

    def update(self, snapshot: ProgressSnapshot) -> None:
        """Show the run's new state (a no-op after `close`)."""
        with self._lock:
            if self._closed:
                return
            self._latest = snapshot
            if self.mode == "rich":
                self._show_rich(snapshot)
                return
            now_s = self._clock()
            stage_changed = snapshot.stage != self._last_stage
            due = self._last_emit_s is None or now_s - self._last_emit_s >= self.interval_s
            if stage_changed or due:
                self._emit(snapshot, now_s)
            else:
                self._latest_shown = False

    def log(self, message: str) -> None:
        """A message between progress lines (above the bar in rich mode)."""
        with self._lock:
            if self.mode == "json":
                self._write(json.dumps({"type": "log", "message": message}))
            elif self._progress is not None and not self._closed:
                self._progress.console.print(message, highlight=False, markup=False)
            else:
                self._write(message)

    def close(self) -> None:
        """Show the last state if it was not shown yet and stop the live display; idempotent."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            if self._progress is not None:
                self._progress.stop()
                self._progress = None
            elif not self._latest_shown and self._latest is not None:
                self._emit(self._latest, self._clock())

    def __enter__(self) -> ProgressReporter:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, traceback: TracebackType | None
    ) -> None:
        self.close()

    # ------------------------------------------------------------------ output

    def _write(self, line: str) -> None:
        self.stream.write(line + "\n")
        self.stream.flush()

    def _emit(self, snapshot: ProgressSnapshot, now_s: float) -> None:
        if self.mode == "json":
            fields = {name: _finite(value) for name, value in dataclasses.asdict(snapshot).items()}
            self._write(json.dumps({"type": "progress", **fields}, allow_nan=False))
        else:
            self._write(format_line(snapshot))
        self._last_emit_s = now_s
        self._last_stage = snapshot.stage
        self._latest_shown = True

    def _show_rich(self, snapshot: ProgressSnapshot) -> None:
        if self._progress is None:
            from rich.console import Console
            from rich.progress import BarColumn, Progress, TextColumn
            from rich.table import Column

            console = Console(file=self.stream)
            # One row that fits the terminal (80 columns and up): nothing wraps; the stage's name and then the
            # figures are cut with an ellipsis in a narrower one.
            self._progress = Progress(
                TextColumn(
                    "[bold]{task.description}",
                    table_column=Column(no_wrap=True, overflow="ellipsis", max_width=STAGE_COLUMN),
                ),
                BarColumn(bar_width=BAR_WIDTH),
                TextColumn("{task.completed:>3.0f}/{task.total:.0f}s", table_column=Column(no_wrap=True)),
                TextColumn("{task.fields[stats]}", table_column=Column(no_wrap=True, overflow="ellipsis")),
                console=console,
                refresh_per_second=4,
            )
            self._progress.start()
            self._task = self._progress.add_task("", total=max(snapshot.total_s, 1e-9), stats="")
        assert self._task is not None
        self._progress.update(
            self._task,
            description=_stage_label(snapshot, STAGE_COLUMN),
            completed=min(snapshot.elapsed_s, snapshot.total_s),
            total=max(snapshot.total_s, 1e-9),
            stats=format_figures(snapshot),
        )
