"""Runs Locust headless in its own process group and streams its per-interval records into the run.

The harness process never imports locust: gevent's monkey-patching and Locust's urllib3 patches
must not reach the orchestrator, the Docker client or the Kubernetes client.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Protocol

from harness.errors import ConfigError, DeployError, LoadError
from harness.load.endpoints import write_endpoints
from harness.load.plan import LoadPlan
from harness.model import ClientInterval, LoadgenOverhead, from_json_dict
from harness.processes import REPLICA_ENV, RUN_ENV, free_port, spawn, stop_tree
from harness.resources import module_file

LOCUSTFILE = module_file("harness.load", "locustfile.py")
# The process mark's replica part for Locust and its workers (harness.processes).
LOADGEN_MARK = "loadgen"


def check_user_locustfile(path: Path, timeout_s: float = 60.0) -> list[str]:
    """The User classes `load.locustfile` defines, loaded as the load generator will load them but in a process
    of its own (this one never imports locust); a ConfigError in one line when it cannot be imported or defines
    none, before anything is deployed."""
    try:
        result = subprocess.run(
            [sys.executable, "-m", "harness.load.user_locustfile", str(path)],
            capture_output=True,
            text=True,
            timeout=timeout_s,
            check=False,
        )
    except subprocess.TimeoutExpired as error:
        raise ConfigError(f"load.locustfile '{path}': importing it took more than {timeout_s:g} s") from error
    if result.returncode != 0:
        lines = result.stderr.strip().splitlines()
        raise ConfigError(lines[-1] if lines else f"load.locustfile '{path}': exit code {result.returncode}")
    return result.stdout.split()


class EndpointPublisher:
    """Keeps the load generator's endpoints file equal to the ready replicas' base URLs (`ready_urls`, asked
    every `interval_s`)."""

    def __init__(self, ready_urls: Callable[[], Sequence[str]], path: Path, interval_s: float = 0.25) -> None:
        self.ready_urls = ready_urls
        self.path = path
        self.interval_s = interval_s
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="endpoint-publisher", daemon=True)
        self._last: list[str] | None = None

    def publish(self) -> None:
        urls = sorted(self.ready_urls())
        if urls != self._last:
            if not urls and self._last is None:
                raise DeployError("no ready replica to send load to")
            write_endpoints(self.path, urls)
            self._last = urls

    def _loop(self) -> None:
        while not self._stop.wait(self.interval_s):
            with contextlib.suppress(Exception):
                self.publish()

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=5)


class IntervalTail:
    """Follows the Locust processes' interval files and hands each complete record on.

    Besides ClientInterval records, a file starts with its process's test start and the calibration of its
    own overhead, which the tail keeps.
    """

    def __init__(self, directory: Path, on_record: Callable[[ClientInterval], None]) -> None:
        self.directory = directory
        self.on_record = on_record
        self.offsets: dict[Path, int] = {}
        self.test_start_s: float | None = None
        self.overheads: list[LoadgenOverhead] = []

    def poll(self) -> int:
        """Read whatever complete lines were appended since the last poll; returns records read."""
        count = 0
        for path in sorted(self.directory.glob("intervals-*.jsonl")):
            offset = self.offsets.get(path, 0)
            with path.open("rb") as handle:
                handle.seek(offset)
                data = handle.read()
            end = data.rfind(b"\n")
            if end < 0:
                continue
            self.offsets[path] = offset + end + 1
            for line in data[: end + 1].splitlines():
                item = json.loads(line)
                if "test_start_s" in item:
                    start = float(item["test_start_s"])
                    self.test_start_s = start if self.test_start_s is None else min(self.test_start_s, start)
                    continue
                if "loadgen_overhead" in item:
                    self.overheads.append(from_json_dict(LoadgenOverhead, item["loadgen_overhead"]))
                    continue
                self.on_record(from_json_dict(ClientInterval, item))
                count += 1
        return count


class LoadDriver(Protocol):
    """What a run needs of a load generator: LocustProcess on this machine, InClusterLoad in a cluster."""

    tail: IntervalTail

    @property
    def planned_duration_s(self) -> float: ...

    def start(self) -> None: ...

    def wait(self, on_poll: Callable[[], None] | None = None, poll_s: float = 0.5) -> int: ...

    def stop(self, grace_s: float = 15.0) -> None: ...


class LocustProcess:
    """One headless Locust run of a load plan (optionally with worker processes), bounded by its duration."""

    def __init__(
        self,
        plan: LoadPlan,
        work_dir: Path,
        on_record: Callable[[ClientInterval], None],
        *,
        json_file: Path,
        log_file: Path,
        cpus: Sequence[int] | None = None,
        run_id: str | None = None,
    ) -> None:
        self.plan = plan
        self.run_id = run_id or f"load-{uuid.uuid4().hex[:12]}"
        self.work_dir = work_dir
        self.intervals_dir = Path(plan.intervals_dir)
        self.json_file = json_file
        self.log_file = log_file
        self.cpus = cpus
        self.tail = IntervalTail(self.intervals_dir, on_record)
        self.process: subprocess.Popen[bytes] | None = None
        self.started_s: float | None = None
        self._lock = threading.Lock()

    @property
    def planned_duration_s(self) -> float:
        return self.plan.planned_duration_s

    def start(self) -> None:
        self.intervals_dir.mkdir(parents=True, exist_ok=True)
        plan_file = self.work_dir / "load_plan.json"
        plan_file.write_text(self.plan.to_json())
        command = [
            sys.executable,
            "-m",
            "locust",
            "-f",
            str(LOCUSTFILE),
            "--headless",
            "--host",
            "http://127.0.0.1",
            "--json-file",
            str(self.json_file.with_suffix("")),
            "--loglevel",
            "WARNING",
            "--logfile",
            str(self.log_file),
            "--only-summary",
            "--stop-timeout",
            str(int(self.plan.request_timeout_s) + 1),
        ]
        if self.plan.processes > 1:
            # The master listens on loopback, on a port of its own: two runs side by side do not collide.
            port = str(free_port())
            command += ["--processes", str(self.plan.processes)]
            command += ["--master-bind-host", "127.0.0.1", "--master-bind-port", port, "--master-port", port]
        env = dict(os.environ, HARNESS_LOAD_PLAN=str(plan_file), PYTHONUNBUFFERED="1")
        try:
            self.process = spawn(
                command,
                run_id=self.run_id,
                replica=LOADGEN_MARK,
                cwd=self.work_dir,
                env=env,
                stdout=self.log_file.with_suffix(".out").open("wb"),
                cpus=self.cpus,
            )
        except OSError as error:
            raise LoadError(f"cannot start Locust ({error})") from error
        self.started_s = time.time()

    def poll(self) -> int:
        """Ingest new interval records; returns how many arrived."""
        with self._lock:
            return self.tail.poll()

    def wait(self, on_poll: Callable[[], None] | None = None, poll_s: float = 0.5) -> int:
        """Block until Locust exits (or the hard deadline passes), ingesting records as they come and
        calling `on_poll` after each ingestion."""
        assert self.process is not None and self.started_s is not None
        # Locust stops itself when the shape ends; the deadline only guards against a hang.
        deadline_s = self.started_s + self.planned_duration_s + self.plan.request_timeout_s + 60
        while self.process.poll() is None:
            self.poll()
            if on_poll is not None:
                on_poll()
            if time.time() > deadline_s:
                self.stop()
                raise LoadError(
                    f"Locust did not finish within {deadline_s - self.started_s:.0f} s",
                    hint=f"see {self.log_file}",
                )
            time.sleep(poll_s)
        self.stop()
        self.poll()
        code = self.process.returncode
        # Exit code 1 means "some requests failed" once a test ran; before any test it is a crash.
        if self.tail.test_start_s is None or code not in (0, 1, -signal.SIGTERM, -signal.SIGINT):
            raise LoadError(
                f"Locust exited with code {code} after {time.time() - self.started_s:.0f} s: {self.log_tail()}",
                hint=f"see {self.log_file.with_suffix('.out')}",
            )
        return code

    def log_tail(self, lines: int = 15) -> str:
        text = ""
        for path in (self.log_file.with_suffix(".out"), self.log_file):
            if path.exists():
                text += path.read_text(errors="replace")
        return " | ".join(text.strip().splitlines()[-lines:])

    def stop(self, grace_s: float = 15.0) -> None:
        """Stop Locust and anything it started; idempotent. SIGTERM lets it write its JSON totals."""
        if self.process is not None:
            stop_tree(self.process, grace_s=grace_s, mark={RUN_ENV: self.run_id, REPLICA_ENV: LOADGEN_MARK})
