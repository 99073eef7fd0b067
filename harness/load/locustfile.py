"""The Locust file the harness runs (in its own process): closed-model users, an open-model arrival
generator, a LoadTestShape from the scenario's stages, and the writer of the per-interval records. It is the
adapter between Locust's events and the decisions, which are plain functions it calls: what each send sends
(`requests.choose_send`), where (`endpoints.Endpoints`), how its outcome is recorded (`recording`), the stage in
force, the users and the arrivals' send times (`shape`).

Configuration arrives as a JSON load plan whose path is in HARNESS_LOAD_PLAN (written by
`harness.load.runner`). Each Locust process appends ClientInterval records, one JSON line per stage
per interval, to its own file in the plan's `intervals_dir`; the harness tails those files while the
run goes on. Only this module imports locust and gevent.
"""

from __future__ import annotations

import contextlib
import ctypes
import functools
import json
import os
import random
import re
import socket
import time
from collections.abc import Iterator
from dataclasses import asdict
from pathlib import Path
from typing import Any

import gevent
import locust.runners
import psutil
from gevent.event import Event
from gevent.pool import Pool
from gevent.server import StreamServer
from gevent.socket import wait_read
from geventhttpclient.connectionpool import ConnectionPool
from locust import FastHttpUser, LoadTestShape, constant, events, task
from locust.contrib.fasthttp import FastHttpSession
from locust.env import Environment
from locust.event import Events
from locust.runners import MasterRunner, WorkerRunner

from harness.analysis.failures import answer_sample
from harness.load.arrivals import arrival_offsets
from harness.load.endpoints import Endpoints
from harness.load.malformed import malformed_requests
from harness.load.payloads import build_bodies
from harness.load.plan import LoadPlan
from harness.load.recording import IntervalRecorder, loadgen_overhead, request_latency_s
from harness.load.requests import (
    PreparedBody,
    ReadyRequest,
    check_answer,
    choose_send,
    cumulative_weights,
    endpoint_request,
    ready_requests,
    status_expected,
    with_alone_answers,
)
from harness.load.shape import NO_USERS, ArrivalSchedule, StagePlan, plan_at, users_at, workers_may_start
from harness.load.stream_reading import read_streamed_answer
from harness.load.user_locustfile import load_user_classes
from harness.model import LoadgenOverhead
from harness.tls import client_context

# A worker whose event loop is starved for a few seconds (a busy node, a CPU-heavy start) misses Locust's
# 1 s heartbeats; after 3 missed the master drops it and, with the last one, ends the test having sent
# nothing (seen on the test cluster under load). Starvation shows in the records as the load generator
# falling behind, which the verdict judges; it is no reason to end the test. Read at runtime by the master.
locust.runners.HEARTBEAT_LIVENESS = 30


def _send_at_once(_pool: ConnectionPool, sock: socket.socket) -> None:
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)


# geventhttpclient leaves Nagle's algorithm on: the last segment of a body of megabytes waits for the service's
# delayed ACK, up to 40 ms counted as the service's latency (4 MiB bodies to a null server: p90 48 ms, 8 ms without
# it; `python -m bench.large_bodies`). Browsers, curl, requests and Go's client all turn it off. Its documented
# hook for socket options, on every connection of this process.
ConnectionPool.after_connect = _send_at_once  # type: ignore[method-assign,assignment]

PLAN = LoadPlan.from_json(Path(os.environ["HARNESS_LOAD_PLAN"]).read_text())
STAGES = PLAN.stages
PROCESSES = PLAN.processes
# In a pod (charts/loadgen) the worker's index names its records, and each record is also printed on
# stdout behind INTERVAL_LOG_PREFIX: the harness follows the pods' logs while the run goes on.
POD_PROCESS: str | None = os.environ.get("HARNESS_PROCESS")
INTERVAL_LOG_PREFIX = "harness-interval "
REQUEST_TIMEOUT_S = PLAN.request_timeout_s
MALFORMED_FRACTION = PLAN.payload.malformed_fraction
# The scenario names its requests (`requests:`): each gets its own figures in the records.
NAMED_REQUESTS = PLAN.requests is not None
# The per-request limits of the goodput objectives: streamed requests meeting each are counted.
GOODPUT_LIMITS = PLAN.goodput_limits

# The calibration of this process's own overhead (LoadgenOverhead) before the load: Poisson arrivals at
# this rate, this many of them, to a null endpoint in this process; never longer than CALIBRATION_MAX_S
# (a calibration cut short is judged on the requests answered by then).
CALIBRATION_REQUESTS = 200
# Sent one after another first and not timed: the first requests open the connection and run code for the
# first time, which the load's requests do not.
CALIBRATION_WARMUP_REQUESTS = 20
CALIBRATION_RATE_RPS = 100.0
CALIBRATION_MAX_S = 5.0
NULL_ANSWER = b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 2\r\n\r\n{}"
_CONTENT_LENGTH = re.compile(rb"\r\ncontent-length:\s*(\d+)", re.IGNORECASE)

# The test's start on this process's clock; every stage boundary is measured from it.
_test_start_s: float | None = None
# Requests sent and not yet answered in this process: the drain ends when none is left.
_in_flight = 0


def _elapsed_s() -> float:
    return 0.0 if _test_start_s is None else time.time() - _test_start_s


def _current_plan() -> StagePlan | None:
    return plan_at(STAGES, _elapsed_s())


class IntervalWriter:
    """Appends the recorder's records to this process's file at the end of every interval (interval ends aligned to
    multiples of the interval, so processes' records line up), with the CPU this process used meanwhile."""

    def __init__(self, recorder: IntervalRecorder, out_path: Path, interval_s: float) -> None:
        self.recorder = recorder
        self.out_path = out_path
        self.interval_s = interval_s
        self.interval_start_s = time.time()
        self.proc = psutil.Process()
        self.cpu_s = self._cpu_time_s()
        self.user_count = 0

    def _cpu_time_s(self) -> float:
        times = self.proc.cpu_times()
        return float(times.user + times.system)

    def flush(self) -> None:
        now_s = time.time()
        cpu_s = self._cpu_time_s()
        wall_s = max(now_s - self.interval_start_s, 1e-6)
        plan = _current_plan()
        records = self.recorder.take(
            self.interval_start_s,
            now_s,
            plan.name if plan is not None else None,
            self.user_count,
            (cpu_s - self.cpu_s) / wall_s,
        )
        _write_records(self.out_path, [json.dumps(asdict(record), separators=(",", ":")) for record in records])
        self.interval_start_s = now_s
        self.cpu_s = cpu_s

    def run(self) -> None:
        while True:
            gevent.sleep(self.interval_s - (time.time() % self.interval_s))
            self.flush()


_endpoints = Endpoints(Path(PLAN.endpoints_file))
_requests: list[ReadyRequest] = []
_cumulative_weights: list[float] = []
# The bad-input mix: spoiled variants of the requests' bodies, one of them sent instead of a request at
# MALFORMED_FRACTION of the sends.
_malformed: list[ReadyRequest] = []
_recorder: IntervalRecorder | None = None
_writer: IntervalWriter | None = None
_overhead: LoadgenOverhead | None = None
# Set once the calibration has ended (or was not this process's to make).
_calibrated = Event()
# A distributed master's workers that have calibrated, by node id.
_calibrated_workers: set[str] = set()
CALIBRATED_MESSAGE = "harness_calibrated"
START_MESSAGE = "harness_start"
_background: list[gevent.Greenlet] = []


def _send(client: FastHttpSession, rng: random.Random, stage: str, intended_s: float | None) -> None:
    """Send one request, chosen by weight, to the next ready replica and record its outcome against `stage`.

    `intended_s` is when the request should have started (open model); None in the closed model, where
    it starts when sent.
    """
    assert _recorder is not None
    if not _endpoints.urls:
        _recorder.failure(stage, None, "no_ready_replica")
        gevent.sleep(0.1)
        return
    request, body = choose_send(_requests, _cumulative_weights, _malformed, MALFORMED_FRACTION, rng)
    global _in_flight
    _in_flight += 1
    try:
        _call(client, request, body, stage, intended_s)
    finally:
        _in_flight -= 1


def _call(
    client: FastHttpSession, request: ReadyRequest, body: PreparedBody, stage: str, intended_s: float | None
) -> None:
    assert _recorder is not None
    # The scenario's requests are recorded by name too (per-request figures); the bad-input mix by stage only.
    name = request.name if NAMED_REQUESTS and request.counts_as_traffic else None
    # geventhttpclient sends bytes as they are; Locust's annotation is narrower than what it accepts.
    with client.request(
        request.method,
        _endpoints.next_url() + request.path,
        data=body.body,  # type: ignore[arg-type]
        headers=request.headers,
        catch_response=True,
        name=request.name,
        stream=request.stream is not None,
    ) as response:
        status = response.status_code or 0
        if request.stream is not None and 200 <= status < 300 and status_expected(request.check, status):
            _streamed(response, request, stage, name, intended_s)
            return
        latency_s = request_latency_s(response.request_meta, intended_s)
        # A streamed request that failed is read whole (its error body); otherwise only when a check reads it.
        content = response.content if request.check.reads_answer or request.stream is not None else None
        result = check_answer(request.check, status, content, body.row, body.alone_answer)
        # FastHttpUser's response has `error` only when the request failed without a status.
        error = None if status else getattr(response, "error", None)

        def sample() -> str:
            return answer_sample(status, response.content if status else None, error, request.headers.values())

        if request.counts_as_traffic:
            _recorder.answered(stage, name, status, error, result, latency_s, sample)
        if request.check.expects_bad_input:
            _recorder.bad_input_answered(stage, name, status)
        if result.status_ok:
            response.success()
        else:
            response.failure(f"status {status}" if status else repr(error))


def _streamed(response: Any, request: ReadyRequest, stage: str, name: str | None, intended_s: float | None) -> None:
    """Read a 2xx streamed answer token by token and record its figures (harness.load.stream_reading)."""
    assert _recorder is not None and request.stream is not None
    meta = response.request_meta
    started_s = float(meta["start_time"])
    headers_at_s = started_s + float(meta["response_time"]) / 1000.0
    outcome = read_streamed_answer(
        response, request.stream, intended_s if intended_s is not None else started_s, headers_at_s
    )
    if outcome.figures is None:
        assert outcome.error_kind is not None
        # What broke the stream, shortened and redacted as a failed answer's body is.
        said, status = outcome.error or "", int(response.status_code or 0)
        _recorder.failure(
            stage, name, outcome.error_kind, lambda: answer_sample(status, said, None, request.headers.values())
        )
        response.failure(f"{outcome.error_kind}: {outcome.error}")
        return
    _recorder.success(stage, name, outcome.figures.e2e_s)
    _recorder.streamed(stage, name, outcome.figures)
    response.success()


# https URLs (the external target) are checked as target.tls says; Locust's own default is not to verify.
TLS_INSECURE = not PLAN.tls.verify


def _ssl_context(**_: Any) -> Any:
    """geventhttpclient's context factory (it passes its own CA file, which target.tls replaces)."""
    return client_context(PLAN.tls)


class ClosedModelUser(FastHttpUser):
    """A closed-model user: sends the next request as soon as the previous one answers."""

    wait_time = constant(0)
    network_timeout = REQUEST_TIMEOUT_S
    connection_timeout = REQUEST_TIMEOUT_S
    host = "http://127.0.0.1"
    insecure = TLS_INSECURE
    # A partial, not a function: a function here would become a method of the user.
    ssl_context_factory = functools.partial(_ssl_context)

    def on_start(self) -> None:
        self.rng = random.Random(PLAN.seed * 7919 + id(self) % 100_000)

    @task
    def classify(self) -> None:
        plan = _current_plan()
        if plan is None or plan.open_model:
            gevent.sleep(0.05)  # open-model stages are the arrival generator's
            return
        _send(self.client, self.rng, plan.name, None)


def _any_replica_url() -> str:
    # Locust may read a user class's host before the first user starts; the load starts once replicas are ready.
    return _endpoints.next_url() if _endpoints.urls else "http://127.0.0.1"


# load.locustfile: the user's own User classes replace ClosedModelUser; Locust finds them in this module.
USER_LOCUSTFILE = PLAN.user_locustfile
if USER_LOCUSTFILE is not None:
    ClosedModelUser.abstract = True
    globals().update(load_user_classes(Path(USER_LOCUSTFILE), _any_replica_url))


class Alarm:
    """Wakes the calling greenlet at a wall-clock time, to within tens of microseconds where it can.

    gevent's own timers (libev's epoll backend) round every wait up to a whole millisecond, so an
    open-model arrival started on average about half a millisecond late, and that lateness counted in
    its latency. On Linux a timerfd set to the absolute time wakes the loop instead; elsewhere, or if
    the call fails, gevent.sleep.
    """

    _CLOCK_REALTIME = 0
    _TFD_TIMER_ABSTIME = 1
    _TFD_NONBLOCK = os.O_NONBLOCK
    _TFD_CLOEXEC = 0o2000000

    class _Itimerspec(ctypes.Structure):
        # struct itimerspec: two struct timespec {time_t tv_sec; long tv_nsec;}, both longs on Linux.
        _fields_ = [("it_interval", ctypes.c_long * 2), ("it_value", ctypes.c_long * 2)]

    def __init__(self) -> None:
        self._fd = -1
        try:
            self._libc = ctypes.CDLL(None, use_errno=True)
            self._fd = int(self._libc.timerfd_create(self._CLOCK_REALTIME, self._TFD_NONBLOCK | self._TFD_CLOEXEC))
        except (OSError, AttributeError):
            self._fd = -1

    def sleep_until(self, at_s: float) -> None:
        """Return at `at_s` (seconds since the epoch), or at once if it has passed."""
        delay_s = at_s - time.time()
        if delay_s <= 0:
            return
        if self._fd < 0 or not self._set(at_s):
            gevent.sleep(delay_s)
            return
        with contextlib.suppress(TimeoutError, OSError):
            # The timeout only guards against a clock step that moves at_s far away.
            wait_read(self._fd, timeout=delay_s + 1.0)
        with contextlib.suppress(BlockingIOError, OSError):
            os.read(self._fd, 8)

    def _set(self, at_s: float) -> bool:
        whole_s = int(at_s)
        spec = self._Itimerspec()
        spec.it_value[0], spec.it_value[1] = whole_s, int((at_s - whole_s) * 1e9)
        return int(self._libc.timerfd_settime(self._fd, self._TFD_TIMER_ABSTIME, ctypes.byref(spec), None)) == 0


class ArrivalGenerator:
    """The open model: sends at the stage's arrival rate whatever the latency, one per process.

    It is not a Locust user (a user waits for its answer; arrivals must not). Each arrival runs in
    its own greenlet from a pool bounded by max_in_flight; an arrival that finds the pool full is
    counted as dropped and as a failed request: either the service held max_in_flight requests
    (a real failure) or the generator fell behind (the stage's validity check tells which).
    """

    def __init__(self, environment: Environment) -> None:
        size = PLAN.max_in_flight
        self.client = FastHttpSession(
            base_url="http://127.0.0.1",
            request_event=environment.events.request,
            user=None,
            network_timeout=REQUEST_TIMEOUT_S,
            connection_timeout=REQUEST_TIMEOUT_S,
            concurrency=size,
            insecure=TLS_INSECURE,
            ssl_context_factory=_ssl_context,
        )
        self.pool = Pool(size=size)
        # Separate generators: the arrival schedule must depend on the seed and the process only,
        # not on how response timing interleaves body choices between greenlets.
        self.worker = int(getattr(environment.runner, "worker_index", PLAN.process) or 0)
        self.schedule = ArrivalSchedule(
            STAGES, self.worker % PROCESSES, PROCESSES, random.Random(PLAN.seed * 104729 + self.worker)
        )
        self.body_rng = random.Random(PLAN.seed * 7919 + self.worker)
        self.alarm = Alarm()

    def run(self) -> None:
        while True:
            due = self.schedule.due(_test_start_s, time.time()) if _test_start_s is not None else None
            if due is not None:
                self.generate(*due)
            gevent.sleep(0.02)

    def generate(self, plan: StagePlan, send_times_s: Iterator[float]) -> None:
        assert _recorder is not None
        for intended_s in send_times_s:
            self.alarm.sleep_until(intended_s)
            _recorder.scheduled(plan.name, max(0.0, time.time() - intended_s))
            if self.pool.full():
                _recorder.dropped(plan.name)
                continue
            self.pool.spawn(_send, self.client, self.body_rng, plan.name, intended_s)


def _answer_at_once(connection: Any, _address: Any) -> None:
    """The null endpoint: answers every request of a keep-alive HTTP/1.1 connection with a 200 at once."""
    buffer = b""
    with contextlib.suppress(OSError), connection:
        while True:
            while b"\r\n\r\n" not in buffer:
                chunk = connection.recv(65536)
                if not chunk:
                    return
                buffer += chunk
            head, _, buffer = buffer.partition(b"\r\n\r\n")
            length = _CONTENT_LENGTH.search(head)
            body_bytes = int(length.group(1)) if length else 0
            while len(buffer) < body_bytes:
                chunk = connection.recv(65536)
                if not chunk:
                    return
                buffer += chunk
            buffer = buffer[body_bytes:]
            connection.sendall(NULL_ANSWER)


def measure_overhead(process: int) -> LoadgenOverhead | None:
    """Time CALIBRATION_REQUESTS open-model arrivals to a null endpoint through the load's own client and
    timing (the first request's body and headers); None when none was answered."""
    server = StreamServer(("127.0.0.1", 0), _answer_at_once)
    server.start()
    latencies_s: list[float] = []
    try:
        url = f"http://127.0.0.1:{server.server_port}"
        # A client of its own, whose requests reach no Locust statistics.
        client = FastHttpSession(
            base_url=url,
            request_event=Events().request,  # type: ignore[no-untyped-call]
            user=None,
            network_timeout=1.0,
            connection_timeout=1.0,
            concurrency=PLAN.max_in_flight,
        )
        request = _requests[0] if _requests else None

        def one(intended_s: float | None) -> None:
            with client.request(
                "POST",
                url + (request.path if request else "/"),
                data=request.bodies[0].body if request else b"{}",  # type: ignore[arg-type]
                headers=request.headers if request else None,
                catch_response=True,
                name="calibration",
            ) as response:
                if response.status_code == 200 and intended_s is not None:
                    latencies_s.append(request_latency_s(response.request_meta, intended_s))
                response.success()

        pool = Pool(size=PLAN.max_in_flight)
        alarm = Alarm()
        planned_s = CALIBRATION_REQUESTS / CALIBRATION_RATE_RPS
        with gevent.Timeout(CALIBRATION_MAX_S, False):
            for _ in range(CALIBRATION_WARMUP_REQUESTS):
                one(None)
            begin_s = time.time()
            for offset_s in arrival_offsets(CALIBRATION_RATE_RPS, planned_s, "poisson", random.Random(PLAN.seed)):
                alarm.sleep_until(begin_s + offset_s)
                if not pool.full():
                    pool.spawn(one, begin_s + offset_s)
            pool.join()
        pool.kill(block=False)
    finally:
        server.stop(timeout=1.0)
    return loadgen_overhead(process, latencies_s, CALIBRATION_RATE_RPS)


class ScenarioShape(LoadTestShape):
    """Locust's view of the scenario's stages; the decisions themselves are `users_at` and `workers_may_start`."""

    # A distributed master's wait for its workers' calibration: when it began, and whether it is over.
    waiting_since_s: float | None = None
    workers_started = False

    def tick(self) -> tuple[int, float] | None:
        if isinstance(self.runner, MasterRunner) and not self.workers_started and not self._start_workers():
            return NO_USERS
        # A distributed master cannot see its workers' requests, so it drains for the full time.
        in_flight = None if isinstance(self.runner, MasterRunner) else _in_flight
        return users_at(STAGES, float(self.get_run_time()), PLAN.drain_s, in_flight)  # type: ignore[no-untyped-call]

    def _start_workers(self) -> bool:
        """Once every worker has calibrated (or the wait is over): start the stage clock here and in every
        worker. Otherwise a worker still calibrating would start its load late and miss arrivals of the first
        stage, while the master's clock ends the test on time."""
        assert isinstance(self.runner, MasterRunner)
        now_s = time.time()
        if self.waiting_since_s is None:
            self.waiting_since_s = now_s
        if not workers_may_start(set(self.runner.clients.keys()), _calibrated_workers, now_s - self.waiting_since_s):
            return False
        self.reset_time()  # type: ignore[no-untyped-call]
        self.runner.send_message(START_MESSAGE)
        self.workers_started = True
        return True


@events.init.add_listener  # type: ignore[untyped-decorator]
def _on_init(environment: Environment, **_: Any) -> None:
    global _requests, _cumulative_weights, _malformed, _overhead
    # First, since a message of a type not yet registered is dropped: a master that waited long enough starts
    # its workers whether or not they said they were ready. A worker handles it in a greenlet of its own, since
    # its load waits for the end of this init.
    if isinstance(environment.runner, MasterRunner):
        environment.runner.register_message(CALIBRATED_MESSAGE, _on_calibrated_message)
    if isinstance(environment.runner, WorkerRunner):
        environment.runner.register_message(START_MESSAGE, _on_start_message, concurrent=True)
    if USER_LOCUSTFILE is not None:
        # Locust would set every user class's host to --host; the user's classes pick a replica each instead.
        environment.host = None
    if PLAN.requests is not None:
        # Headers are expanded here, in the load process only, so their values never reach a file of the run.
        _requests = [
            with_alone_answers(request, PLAN.alone_answers.get(request.name, {}))
            for request in ready_requests(list(PLAN.requests), os.environ, PLAN.seed)
        ]
        _cumulative_weights = cumulative_weights([config.weight for config in PLAN.requests])
    else:
        payload = PLAN.payload
        bodies = build_bodies(
            payload.source,
            file=Path(payload.file) if payload.file else None,
            batch_rows=payload.batch_rows,
            seed=PLAN.seed + PLAN.process,
        )
        _requests = [endpoint_request(PLAN.endpoint_path, bodies)]
    if MALFORMED_FRACTION > 0:
        _malformed = malformed_requests(_requests, random.Random(PLAN.seed * 31 + PLAN.process))
    if not isinstance(environment.runner, MasterRunner):
        # Before the load starts, so that the calibration and the load do not share the event loop.
        _overhead = measure_overhead(_process_number())
    _calibrated.set()
    if isinstance(environment.runner, WorkerRunner):
        # A worker connects to its master before its init event runs, so the master may already have started
        # the test: it holds its stage clock until every worker has said this (ScenarioShape.tick).
        environment.runner.send_message(CALIBRATED_MESSAGE)


def _on_calibrated_message(msg: Any, **_: Any) -> None:
    _calibrated_workers.add(str(msg.node_id))


def _process_number() -> int:
    """This process's number in its records: the plan's, its pid among local workers, its pod's index."""
    if POD_PROCESS is not None:
        return int(POD_PROCESS)
    return PLAN.process if PROCESSES == 1 else os.getpid()


def _on_user_request(response_time: float, response: Any, exception: BaseException | None, **_: Any) -> None:
    """A request of the user's own classes, recorded against the stage it ran in (their own checks, made with
    `catch_response`, arrive as the exception)."""
    plan = _current_plan()
    if _recorder is None or plan is None:
        return
    status = int(getattr(response, "status_code", 0) or 0)
    _recorder.user_request(plan.name, response_time, status, exception, lambda: getattr(response, "content", None))


if USER_LOCUSTFILE is not None:
    # Only then: the harness's own requests fire this event too, and are recorded where they are sent.
    events.request.add_listener(_on_user_request)  # type: ignore[no-untyped-call]


def _write_records(path: Path, lines: list[str]) -> None:
    with path.open("a", encoding="utf-8") as handle:
        handle.write("".join(line + "\n" for line in lines))
    if POD_PROCESS is not None:
        print("".join(INTERVAL_LOG_PREFIX + line + "\n" for line in lines), end="", flush=True)


@events.test_start.add_listener  # type: ignore[untyped-decorator]
def _on_test_start(environment: Environment, **_: Any) -> None:
    # With worker processes, the master only coordinates: it must neither send nor record. Its workers
    # start their load when it says so (START_MESSAGE), not at the test's start.
    if not isinstance(environment.runner, (MasterRunner, WorkerRunner)):
        _start_load(environment)


def _on_start_message(environment: Environment, **_: Any) -> None:
    _start_load(environment)


def _start_load(environment: Environment) -> None:
    """Start this process's stage clock, its interval recorder and its arrival generator."""
    global _test_start_s, _recorder, _writer
    if _test_start_s is not None:
        return
    # Set at the end of the init event, which always ends before a local runner's test starts; a worker may be
    # told to start while its init still builds bodies or calibrates.
    _calibrated.wait()
    _test_start_s = time.time()
    process = _process_number()
    out = Path(PLAN.intervals_dir) / f"intervals-{os.getpid()}.jsonl"
    out.unlink(missing_ok=True)
    lines = [json.dumps({"test_start_s": _test_start_s, "process": process})]
    if _overhead is not None:
        lines.append(json.dumps({"loadgen_overhead": asdict(_overhead)}, separators=(",", ":")))
    _write_records(out, lines)
    _recorder = IntervalRecorder(process, STAGES, PROCESSES, GOODPUT_LIMITS)
    _writer = IntervalWriter(_recorder, out, PLAN.interval_s)

    def refresh_endpoints() -> None:
        while True:
            _endpoints.refresh()
            if _writer is not None and environment.runner is not None:
                _writer.user_count = environment.runner.user_count
            gevent.sleep(0.25)

    generator = ArrivalGenerator(environment)
    _background.extend([gevent.spawn(refresh_endpoints), gevent.spawn(_writer.run), gevent.spawn(generator.run)])


@events.test_stop.add_listener  # type: ignore[untyped-decorator]
def _on_test_stop(environment: Environment, **_: Any) -> None:
    for greenlet in _background:
        greenlet.kill(block=False)
    _background.clear()
    if _writer is not None:
        _writer.flush()
