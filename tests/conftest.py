"""Settings shared by the whole suite."""

from __future__ import annotations

import json
import os
import sys
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import HealthCheck, settings

from tests.lanes import LANES, lane_of

# Every process of the suite records the programs it looks up or executes (tests/program_audit): this one now,
# its children through PYTHONPATH. A test that uses a program no install step of `make test` provides fails.
_PROGRAM_AUDIT_DIR = Path(__file__).parent / "program_audit"
if str(_PROGRAM_AUDIT_DIR) not in sys.path:
    sys.path.insert(0, str(_PROGRAM_AUDIT_DIR))
import program_audit_hook  # noqa: E402
from provided_programs import provided_programs  # noqa: E402

if program_audit_hook.LOG_VARIABLE not in os.environ:
    # Set once by the first pytest process of a lane; its xdist workers inherit the same log.
    os.environ[program_audit_hook.LOG_VARIABLE] = f"/tmp/harness-program-audit-{os.getpid()}.jsonl"
os.environ["PYTHONPATH"] = os.pathsep.join(
    [str(_PROGRAM_AUDIT_DIR), *([os.environ["PYTHONPATH"]] if os.environ.get("PYTHONPATH") else [])]
)
program_audit_hook.install_from_environment()

# Deterministic on a loaded 2-core machine: no per-example deadline and no "too slow" health check (both
# time the example, which other tests' load stretches), and a fixed seed per test without an example
# database, so every run draws the same examples. A test may still ask for more examples.
settings.register_profile(
    "harness",
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
    derandomize=True,
    database=None,
)
settings.load_profile("harness")


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--lane",
        choices=LANES,
        help="run only the tests of this lane of make test (tests/lanes.py derives it from their markers)",
    )


def _markers(item: pytest.Item) -> set[str]:
    return {marker.name for marker in item.iter_markers()}


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    lane = config.getoption("--lane")
    if lane is not None:
        deselected = [item for item in items if lane_of(_markers(item)) != lane]
        if deselected:
            config.hook.pytest_deselected(items=deselected)
            items[:] = [item for item in items if lane_of(_markers(item)) == lane]
    # The order pytest-xdist hands out files in (the Makefile's --no-loadscope-reorder keeps it): files with a test
    # marked starts_first, as collected, then the others by their number of tests, most first (xdist's own order).
    # A file of minutes handed out last would end its lane alone.
    first = {item.path for item in items if item.get_closest_marker("starts_first")}
    tests_in = Counter(item.path for item in items)
    items.sort(key=lambda item: (False, 0) if item.path in first else (True, -tests_in[item.path]))


class _ProgramAudit:
    """Reads the suite's program log as it grows and keeps the uses of programs that `make test` does not provide
    until a test claims them."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.offset = 0
        self.seen: set[tuple[str, str, str]] = set()
        # (test, program) pairs whose program was checked against what make test installs.
        self.judged: set[tuple[str, str]] = set()
        self.pending: list[dict[str, str]] = []
        # Test -> programs it executed (not those the audit ran to learn what is installed).
        self.executed: dict[str, set[str]] = {}

    def read(self) -> None:
        try:
            with self.path.open("rb") as handle:
                handle.seek(self.offset)
                data = handle.read()
        except FileNotFoundError:
            return
        complete = data[: data.rfind(b"\n") + 1]
        self.offset += len(complete)
        for line in complete.decode(errors="replace").splitlines():
            entry = json.loads(line)
            entry["test"] = entry["test"].split(" ")[0]
            if entry.get("excused"):
                # A test marked absent_program used it on purpose (written back by that test's process, read again
                # by xdist's controller at the end of the session).
                used = (entry["test"], entry["program"])
                self.judged.add(used)
                self.pending = [known for known in self.pending if (known["test"], known["program"]) != used]
                continue
            key = (entry["test"], entry["how"], entry["program"])
            if key in self.seen:
                continue
            self.seen.add(key)
            if entry["how"] == "executes" and not entry.get("caller", "").startswith(str(_PROGRAM_AUDIT_DIR)):
                self.executed.setdefault(entry["test"], set()).add(Path(entry["program"]).name)
            if (entry["test"], entry["program"]) not in self.judged:
                self.judged.add((entry["test"], entry["program"]))
                if not provided_programs().provides(entry["program"]):
                    self.pending.append(entry)

    def claim(self, test: str | None) -> list[dict[str, str]]:
        """The pending uses by `test` (every pending use for None), no longer pending."""
        self.read()
        mine = [entry for entry in self.pending if test is None or entry["test"] == test]
        self.pending = [entry for entry in self.pending if entry not in mine]
        return mine


_audit = _ProgramAudit(Path(os.environ[program_audit_hook.LOG_VARIABLE]))


def _describe(entry: dict[str, str]) -> str:
    return (
        f"{entry['test'] or 'the session'} {entry['how']} the program '{entry['program']}', which no install step "
        "of `make test` provides: add its Debian package to the Makefile's TEST_PACKAGES (or build it in an install "
        "step)"
    )


@pytest.fixture(autouse=True)
def _programs_used_are_installed_by_make_test(request: pytest.FixtureRequest) -> Iterator[None]:
    yield
    # A test of what happens when a program is missing names it: `@pytest.mark.absent_program("name")`.
    absent = {name for marker in request.node.iter_markers("absent_program") for name in marker.args}
    claimed = _audit.claim(request.node.nodeid)
    mine = [entry for entry in claimed if Path(entry["program"]).name not in absent]
    excused = [entry for entry in claimed if entry not in mine]
    if excused:
        with _audit.path.open("a") as log:
            log.write("".join(json.dumps({**entry, "excused": True}) + "\n" for entry in excused))
    if mine:
        pytest.fail("; ".join(_describe(entry) for entry in mine), pytrace=False)
    # Markers say what a test exercises, and its lane follows from them (tests/lanes.py).
    started = _audit.executed.pop(request.node.nodeid, set()) - absent
    if started and request.node.get_closest_marker("integration") is None:
        pytest.fail(
            f"{request.node.nodeid} starts processes ({', '.join(sorted(started))}) but is not marked integration: "
            "mark it @pytest.mark.integration (tests/lanes.py)",
            pytrace=False,
        )


def pytest_sessionfinish(session: pytest.Session) -> None:
    """Uses no test claimed: by processes that outlived the test that started them (with xdist, the controller
    reads the whole log once every worker is done, so a use a worker reported already is named again)."""
    if hasattr(session.config, "workerinput"):
        return
    late = _audit.claim(None)
    reporter = session.config.pluginmanager.get_plugin("terminalreporter")
    for entry in late:
        if reporter is not None:
            reporter.write_line("error: " + _describe(entry), red=True)
    if late:
        session.exitstatus = pytest.ExitCode.TESTS_FAILED
