"""Live progress: plain lines at a bounded rate, JSON lines for machines, a rich bar for terminals."""

from __future__ import annotations

import io
import json
import re
import threading

import pytest
from hypothesis import given
from hypothesis import strategies as st

from harness.report.progress import ProgressReporter, ProgressSnapshot, format_line


class FakeClock:
    def __init__(self) -> None:
        self.now_s = 0.0

    def __call__(self) -> float:
        return self.now_s


def _snapshot(elapsed_s: float, stage: str = "base", index: int = 1, **changes: object) -> ProgressSnapshot:
    fields: dict[str, object] = {
        "stage": stage,
        "stage_index": index,
        "stage_count": 4,
        "elapsed_s": elapsed_s,
        "total_s": 160.0,
        "rps": 70.25,
        "p95_s": 0.0429,
        "ready_replicas": 2,
        "desired_replicas": 3,
        "errors": 3,
        "requests": 1200,
    }
    fields.update(changes)
    return ProgressSnapshot(**fields)  # type: ignore[arg-type]


def _last_stage(**figures: object) -> ProgressSnapshot:
    """The end of the old README's run (its `[116/115 s]` line): the last of 5 stages, past its planned end."""
    return _snapshot(116.0, "open-60rps", 4, stage_count=5, total_s=115.0, errors=0, **figures)


def test_format_line() -> None:
    assert format_line(_snapshot(42.4)) == "[ 42/160 s] 2/4 base  70.2 rps  p95 42.9 ms  2/3 ready  err 3/1200"
    bare = format_line(_snapshot(0.0, p95_s=None, ready_replicas=None, desired_replicas=None, requests=0, errors=0))
    assert "p95 n/a" in bare and "n/a ready" in bare and "err 0/0" in bare


@given(
    stage=st.text(st.characters(min_codepoint=33, max_codepoint=126), min_size=1, max_size=100),
    elapsed_s=st.floats(0, 1e6),
    rps=st.floats(0, 1e6),
    p95_s=st.none() | st.floats(0, 1e4),
    replicas=st.integers(0, 64),
    requests=st.integers(0, 10**9),
)
def test_a_line_fits_80_columns_whatever_the_figures(
    stage: str, elapsed_s: float, rps: float, p95_s: float | None, replicas: int, requests: int
) -> None:
    snapshot = _snapshot(
        elapsed_s,
        stage,
        3,
        total_s=1e6,
        rps=rps,
        p95_s=p95_s,
        ready_replicas=replicas,
        desired_replicas=64,
        requests=requests,
        errors=requests // 3,
        stage_count=12,
    )
    assert len(format_line(snapshot)) <= 80


def test_a_typical_line_keeps_every_figure_and_the_stage_name() -> None:
    line = format_line(_last_stage(rps=70.0, p95_s=0.0272, ready_replicas=2, desired_replicas=2, requests=35469))
    assert line == "[116/115 s] 5/5 open-60rps  70.0 rps  p95 27.2 ms  2/2 ready  err 0/35469"
    long = format_line(_snapshot(42.0, "x" * 100))
    assert len(long) <= 80 and "x…  70.2 rps  p95 42.9 ms  2/3 ready  err 3/1200" in long


def test_plain_mode_writes_one_line_per_interval_and_at_stage_changes() -> None:
    out, clock = io.StringIO(), FakeClock()
    reporter = ProgressReporter("plain", stream=out, interval_s=5.0, clock=clock)
    for second in range(13):
        clock.now_s = float(second)
        stage, index = ("base", 1) if second < 7 else ("step", 2)
        reporter.update(_snapshot(float(second), stage, index))
    reporter.close()

    lines = out.getvalue().splitlines()
    # t=0 (first), 5 (interval), 7 (stage change), 12 (interval); close adds nothing new.
    assert [line.split("]")[0] for line in lines] == ["[  0/160 s", "[  5/160 s", "[  7/160 s", "[ 12/160 s"]
    assert "] 3/4 step  " in lines[2]


def test_close_shows_the_last_state_once() -> None:
    out, clock = io.StringIO(), FakeClock()
    reporter = ProgressReporter("plain", stream=out, interval_s=5.0, clock=clock)
    reporter.update(_snapshot(0.0))
    clock.now_s = 2.0
    reporter.update(_snapshot(2.0))
    reporter.close()
    reporter.close()
    reporter.update(_snapshot(3.0))

    lines = out.getvalue().splitlines()
    assert len(lines) == 2 and lines[-1].startswith("[  2/160 s]")


def test_json_mode_writes_one_object_per_line() -> None:
    out, clock = io.StringIO(), FakeClock()
    reporter = ProgressReporter("json", stream=out, interval_s=1.0, clock=clock)
    reporter.log("starting 2 replica(s)")
    for tick in range(6):
        clock.now_s = tick * 0.5
        reporter.update(_snapshot(tick * 0.5, rps=float("nan") if tick == 4 else 70.25))
    reporter.close()

    records = [json.loads(line) for line in out.getvalue().splitlines()]
    assert records[0] == {"type": "log", "message": "starting 2 replica(s)"}
    progress = [r for r in records if r["type"] == "progress"]
    assert [r["elapsed_s"] for r in progress] == [0.0, 1.0, 2.0, 2.5]
    assert progress[0] == {
        "type": "progress",
        "stage": "base",
        "stage_index": 1,
        "stage_count": 4,
        "elapsed_s": 0.0,
        "total_s": 160.0,
        "rps": 70.25,
        "p95_s": 0.0429,
        "ready_replicas": 2,
        "desired_replicas": 3,
        "errors": 3,
        "requests": 1200,
    }
    # A non-finite number is null, never NaN (which is not JSON).
    assert progress[2]["rps"] is None


def test_json_lines_stay_whole_under_concurrent_updates() -> None:
    out = io.StringIO()
    reporter = ProgressReporter("json", stream=out, interval_s=0.0)

    def hammer(worker: int) -> None:
        for i in range(200):
            reporter.update(_snapshot(float(i), stage=f"w{worker}"))
            if i % 50 == 0:
                reporter.log(f"worker {worker} at {i}")

    threads = [threading.Thread(target=hammer, args=(w,)) for w in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    reporter.close()

    records = [json.loads(line) for line in out.getvalue().splitlines()]
    assert sum(1 for r in records if r["type"] == "progress") == 800
    assert sum(1 for r in records if r["type"] == "log") == 16


def test_mode_follows_the_stream() -> None:
    class Terminal(io.StringIO):
        def isatty(self) -> bool:
            return True

    assert ProgressReporter(stream=io.StringIO()).mode == "plain"
    assert ProgressReporter(stream=Terminal()).mode == "rich"
    with pytest.raises(ValueError, match="progress mode 'xml' is unknown"):
        ProgressReporter("xml", stream=io.StringIO())  # type: ignore[arg-type]


def test_rich_mode_draws_a_bar_and_logs_above_it() -> None:
    out = io.StringIO()
    with ProgressReporter("rich", stream=out) as reporter:
        reporter.log("replicas ready in 12.8 s")
        reporter.update(_snapshot(40.0))
        reporter.update(_snapshot(80.0, "step", 2))
        reporter.log("scaled to 3")

    text = " ".join(out.getvalue().split())
    assert "replicas ready in 12.8 s" in text and "scaled to 3" in text
    assert "3/4 step" in text
    assert "80/160s" in text
    assert "70.2 rps" in text and "p95 42.9 ms" in text


ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")


def rich_rows(columns: int, snapshot: ProgressSnapshot, monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The rows a terminal of `columns` shows of the bar, escape sequences removed."""
    monkeypatch.setenv("COLUMNS", str(columns))
    out = io.StringIO()
    with ProgressReporter("rich", stream=out) as reporter:
        reporter.update(snapshot)
    return [row for row in (ANSI.sub("", line).rstrip() for line in out.getvalue().splitlines()) if row]


def test_the_bar_and_every_figure_fit_one_row_of_an_80_column_terminal(monkeypatch: pytest.MonkeyPatch) -> None:
    # The example wrapped into three rows beside the bar: `replicas 1/1` / `(ready/desired) | errors` / ...
    typical = _last_stage(rps=397.9, p95_s=0.0129, ready_replicas=1, desired_replicas=1, requests=2526)
    (row,) = rich_rows(80, typical, monkeypatch)
    assert len(row) <= 80
    assert row.startswith("5/5 open-60rps ━") and row.endswith("115/115s 397.9 rps  p95 12.9 ms  1/1 ready  err 0/2526")
    # Narrower, or longer names: still one row, cut with an ellipsis rather than wrapped.
    (narrow,) = rich_rows(60, typical, monkeypatch)
    assert len(narrow) <= 60 and narrow.endswith("…")
    (long,) = rich_rows(80, _snapshot(5.0, "a-stage-name-much-longer-than-its-column"), monkeypatch)
    assert len(long) <= 80 and long.startswith("2/4 a-stage-n… ")
