"""The Locust file the harness runs (in its own process): closed-model users, an open-model arrival
generator, a LoadTestShape from the scenario's stages, and a per-interval recorder.

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
import statistics
import time
from collections.abc import Callable
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
from locust import FastHttpUser, LoadTestShape, constant, events, task
from locust.contrib.fasthttp import FastHttpSession
from locust.env import Environment
from locust.event import Events
from locust.runners import MasterRunner, WorkerRunner

from harness.analysis.failures import answer_sample, keep_sample
from harness.analysis.latency import LatencyHistogram
from harness.load.arrivals import arrival_offsets
from harness.load.malformed import malformed_requests
from harness.load.payloads import build_bodies
from harness.load.plan import LoadPlan
from harness.load.requests import (
    CheckResult,
    PreparedBody,
    ReadyRequest,
    check_answer,
    cumulative_weights,
    endpoint_request,
    pick_weighted,
    ready_requests,
    with_alone_answers,
)
from harness.load.shape import WORKERS_START_WAIT_S, StagePlan, drain_over, plan_at
from harness.load.user_locustfile import load_user_classes
from harness.model import ClientInterval, LoadgenOverhead
from harness.tls import client_context

# A worker whose event loop is starved for a few seconds (a busy node, a CPU-heavy start) misses Locust's
# 1 s heartbeats; after 3 missed the master drops it and, with the last one, ends the test having sent
# nothing (seen on the test cluster under load). Starvation shows in the records as the load generator
# falling behind, which the verdict judges; it is no reason to end the test. Read at runtime by the master.
locust.runners.HEARTBEAT_LIVENESS = 30

PLAN = LoadPlan.from_json(Path(os.environ["HARNESS_LOAD_PLAN"]).read_text())
STAGES = PLAN.stages
PROCESSES = PLAN.processes
# In a pod (charts/loadgen) the worker's index names its records, and each record is also printed on
# stdout behind INTERVAL_LOG_PREFIX: the harness follows the pods' logs while the run goes on.
POD_PROCESS: str | None = os.environ.get("HARNESS_PROCESS")
INTERVAL_LOG_PREFIX = "harness-interval "
REQUEST_TIMEOUT_S = PLAN.request_timeout_s
MALFORMED_FRACTION = PLAN.payload.malformed_fraction

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


class Endpoints:
    """Ready replica base URLs (no trailing slash), re-read from the harness's endpoints file as replicas come
    and go."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.urls: list[str] = []
        self._mtime_ns = -1
        self._next = 0
        self.refresh()

    def refresh(self) -> None:
        try:
            mtime_ns = self.path.stat().st_mtime_ns
            if mtime_ns != self._mtime_ns:
                urls = json.loads(self.path.read_text())
                if urls:
                    self.urls = [url.rstrip("/") for url in urls]
                self._mtime_ns = mtime_ns
        except (OSError, json.JSONDecodeError):
            pass  # a file being replaced: keep the previous list

    def next_url(self) -> str:
        self._next = (self._next + 1) % len(self.urls)
        return self.urls[self._next]


class _StageAccumulator:
    def __init__(self) -> None:
        self.histogram = LatencyHistogram()
        self.requests = 0
        self.failures = 0
        self.errors: dict[str, int] = {}
        self.scheduled = 0
        self.dropped = 0
        self.send_lag_max_s = 0.0
        self.checked = 0
        self.mismatches = 0
        self.bad_inputs = 0
        self.bad_input_5xx = 0
        self.bad_input_accepted = 0
        self.error_samples: dict[str, list[str]] = {}


class IntervalRecorder:
    """Accumulates request outcomes per stage and appends one ClientInterval per stage each interval."""

    def __init__(self, out_path: Path, interval_s: float, process: int) -> None:
        self.out_path = out_path
        self.interval_s = interval_s
        self.process = process
        self.stages: dict[str, _StageAccumulator] = {}
        self.interval_start_s = time.time()
        self.proc = psutil.Process()
        self.cpu_s = self._cpu_time_s()
        self.user_count = 0

    def _cpu_time_s(self) -> float:
        times = self.proc.cpu_times()
        return float(times.user + times.system)

    def _stage(self, name: str) -> _StageAccumulator:
        accumulator = self.stages.get(name)
        if accumulator is None:
            accumulator = self.stages[name] = _StageAccumulator()
        return accumulator

    def success(self, stage: str, latency_s: float) -> None:
        accumulator = self._stage(stage)
        accumulator.requests += 1
        accumulator.histogram.record_s(latency_s)

    def failure(self, stage: str, kind: str, sample: Callable[[], str] | None = None) -> None:
        """A failed request of `kind`; `sample` says what it got back, and is called only while the kind's
        samples of this interval have room (harness.analysis.failures)."""
        accumulator = self._stage(stage)
        accumulator.requests += 1
        accumulator.failures += 1
        accumulator.errors[kind] = accumulator.errors.get(kind, 0) + 1
        if sample is not None:
            keep_sample(accumulator.error_samples, kind, sample)

    def answer_checked(self, stage: str, mismatch: bool) -> None:
        accumulator = self._stage(stage)
        accumulator.checked += 1
        accumulator.mismatches += int(mismatch)

    def bad_input_answered(self, stage: str, status: int) -> None:
        # No answer at all (status 0: reset, refused, timed out) is as bad as a 5xx: the input broke something.
        accumulator = self._stage(stage)
        accumulator.bad_inputs += 1
        accumulator.bad_input_5xx += int(status >= 500 or status == 0)
        accumulator.bad_input_accepted += int(200 <= status < 300)

    def scheduled(self, stage: str, lag_s: float) -> None:
        accumulator = self._stage(stage)
        accumulator.scheduled += 1
        accumulator.send_lag_max_s = max(accumulator.send_lag_max_s, lag_s)

    def dropped(self, stage: str) -> None:
        # An arrival that could not be sent is a failed request from the user's point of view.
        accumulator = self._stage(stage)
        accumulator.dropped += 1
        accumulator.requests += 1
        accumulator.failures += 1
        accumulator.errors["dropped_max_in_flight"] = accumulator.errors.get("dropped_max_in_flight", 0) + 1

    def flush(self) -> None:
        now_s = time.time()
        cpu_s = self._cpu_time_s()
        wall_s = max(now_s - self.interval_start_s, 1e-6)
        cpu_cores = (cpu_s - self.cpu_s) / wall_s
        plan = _current_plan()
        stages, self.stages = self.stages, {}
        if plan is not None and plan.name not in stages:
            stages[plan.name] = _StageAccumulator()  # an idle interval is a measurement too
        lines = []
        for name, accumulator in stages.items():
            spec = next((s for s in STAGES if s.name == name), None)
            offered = None
            if spec is not None and spec.arrival_rate_rps is not None:
                offered = spec.arrival_rate_rps / PROCESSES
            record = ClientInterval(
                t_start_s=self.interval_start_s,
                t_end_s=now_s,
                process=self.process,
                stage=name,
                users=self.user_count,
                offered_rps=offered,
                scheduled=accumulator.scheduled,
                requests=accumulator.requests,
                failures=accumulator.failures,
                errors=accumulator.errors,
                latency_hdr=accumulator.histogram.encode(),
                dropped=accumulator.dropped,
                send_lag_max_s=accumulator.send_lag_max_s,
                loadgen_cpu_cores=cpu_cores,
                checked=accumulator.checked,
                mismatches=accumulator.mismatches,
                bad_inputs=accumulator.bad_inputs,
                bad_input_5xx=accumulator.bad_input_5xx,
                bad_input_accepted=accumulator.bad_input_accepted,
                error_samples=accumulator.error_samples,
            )
            lines.append(json.dumps(asdict(record), separators=(",", ":")))
        _write_records(self.out_path, lines)
        self.interval_start_s = now_s
        self.cpu_s = cpu_s

    def run(self) -> None:
        while True:
            # Align interval ends to multiples of the interval so processes' records line up.
            gevent.sleep(self.interval_s - (time.time() % self.interval_s))
            self.flush()


_endpoints = Endpoints(Path(PLAN.endpoints_file))
_requests: list[ReadyRequest] = []
_cumulative_weights: list[float] = []
# The bad-input mix: spoiled variants of the requests' bodies, one of them sent instead of a request at
# MALFORMED_FRACTION of the sends.
_malformed: list[ReadyRequest] = []
_recorder: IntervalRecorder | None = None
_overhead: LoadgenOverhead | None = None
# Set once the calibration has ended (or was not this process's to make).
_calibrated = Event()
# A distributed master's workers that have calibrated, by node id.
_calibrated_workers: set[str] = set()
CALIBRATED_MESSAGE = "harness_calibrated"
START_MESSAGE = "harness_start"
_background: list[gevent.Greenlet] = []


def _error_kind(status: int, error: BaseException | None) -> str:
    if status:
        return f"http_{status}"
    if error is None:
        return "unknown"
    name = type(error).__name__
    text = str(error).lower()
    if "timeout" in name.lower() or "timed out" in text:
        return "timeout"
    if "connection" in name.lower() or "refused" in text or "reset" in text:
        return "connection_error"
    return f"error_{name}"


def _send(client: FastHttpSession, rng: random.Random, stage: str, intended_s: float | None) -> None:
    """Send one request, chosen by weight, to the next ready replica and record its outcome against `stage`.

    `intended_s` is when the request should have started (open model); None in the closed model, where
    it starts when sent.
    """
    assert _recorder is not None
    if not _endpoints.urls:
        _recorder.failure(stage, "no_ready_replica")
        gevent.sleep(0.1)
        return
    if _malformed and rng.random() < MALFORMED_FRACTION:
        request = _malformed[rng.randrange(len(_malformed))]
    else:
        request = _requests[pick_weighted(_cumulative_weights, rng)] if len(_requests) > 1 else _requests[0]
    body = request.bodies[rng.randrange(len(request.bodies))]
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
    # geventhttpclient sends bytes as they are; Locust's annotation is narrower than what it accepts.
    with client.request(
        request.method,
        _endpoints.next_url() + request.path,
        data=body.body,  # type: ignore[arg-type]
        headers=request.headers,
        catch_response=True,
        name=request.name,
    ) as response:
        latency_s = _latency_s(response.request_meta, intended_s)
        status = response.status_code or 0
        content = response.content if request.check.reads_answer else None
        result = check_answer(request.check, status, content, body.row, body.alone_answer)
        # FastHttpUser's response has `error` only when the request failed without a status.
        error = None if status else getattr(response, "error", None)

        def sample() -> str:
            return answer_sample(status, response.content if status else None, error, request.headers.values())

        if request.counts_as_traffic:
            _record(stage, status, error, result, latency_s, sample)
        if request.check.expects_bad_input:
            _recorder.bad_input_answered(stage, status)
        if result.status_ok:
            response.success()
        else:
            response.failure(f"status {status}" if status else repr(error))


def _latency_s(request_meta: dict[str, Any], intended_s: float | None) -> float:
    """A request's latency from Locust's own timer, which brackets only the socket exchange (connection,
    write, read of the whole answer); the open model adds how late the request started after `intended_s`.

    Timing around `client.request` instead counted Locust's request building before the send and its
    bookkeeping after the answer as the service's latency.
    """
    exchange_s = float(request_meta["response_time"]) / 1000.0
    if intended_s is None:
        return exchange_s
    return max(0.0, float(request_meta["start_time"]) - intended_s) + exchange_s


def _record(
    stage: str,
    status: int,
    error: BaseException | None,
    result: CheckResult,
    latency_s: float,
    sample: Callable[[], str] | None = None,
) -> None:
    assert _recorder is not None
    if result.status_ok:
        _recorder.success(stage, latency_s)
    else:
        _recorder.failure(stage, _error_kind(status, error), sample)
    if result.checked:
        _recorder.answer_checked(stage, result.mismatch is not None)


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
        worker = int(getattr(environment.runner, "worker_index", PLAN.process) or 0)
        self.schedule_rng = random.Random(PLAN.seed * 104729 + worker)
        self.body_rng = random.Random(PLAN.seed * 7919 + worker)
        self.alarm = Alarm()

    def run(self) -> None:
        done: set[int] = set()
        while True:
            plan = _current_plan()
            if plan is not None and plan.arrival_rate_rps is not None and plan.index not in done:
                done.add(plan.index)
                self.generate(plan)
            gevent.sleep(0.02)

    def generate(self, plan: StagePlan) -> None:
        assert _recorder is not None and _test_start_s is not None and plan.arrival_rate_rps is not None
        begin_s = time.time()
        stage_end_s = _test_start_s + plan.stage_end_s
        rate_rps = plan.arrival_rate_rps / PROCESSES
        for offset_s in arrival_offsets(rate_rps, stage_end_s - begin_s, plan.arrival, self.schedule_rng):
            intended_s = begin_s + offset_s
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
                    latencies_s.append(_latency_s(response.request_meta, intended_s))
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
    if len(latencies_s) < 2:
        return None
    cuts_ms = statistics.quantiles([1000.0 * latency_s for latency_s in latencies_s], n=100, method="inclusive")
    return LoadgenOverhead(
        process=process,
        requests=len(latencies_s),
        rate_rps=CALIBRATION_RATE_RPS,
        p50_ms=cuts_ms[49],
        p95_ms=cuts_ms[94],
        p99_ms=cuts_ms[98],
    )


class ScenarioShape(LoadTestShape):
    """Locust's view of the scenario's stages; the decision itself is `plan_at`."""

    # A distributed master's wait for its workers' calibration: when it began, and whether it is over.
    waiting_since_s: float | None = None
    workers_started = False

    def tick(self) -> tuple[int, float] | None:
        if isinstance(self.runner, MasterRunner) and not self.workers_started and not self._start_workers():
            return (0, 10_000.0)
        elapsed_s = float(self.get_run_time())  # type: ignore[no-untyped-call]
        plan = plan_at(STAGES, elapsed_s)
        if plan is None:
            # Drain: no new requests, but the last stage's outstanding ones may still finish and be
            # recorded (a service that fell behind shows its queueing instead of losing it).
            # A distributed master cannot see its workers' requests, so it drains for the full time.
            in_flight = None if isinstance(self.runner, MasterRunner) else _in_flight
            return None if drain_over(STAGES, elapsed_s, PLAN.drain_s, in_flight) else (0, 10_000.0)
        if plan.arrival_rate_rps is not None:
            # No closed-model users in an open stage; stop the previous stage's users at once.
            return (0, 10_000.0)
        return (plan.users or 0, plan.spawn_rate)

    def _start_workers(self) -> bool:
        """Once every worker has calibrated (or the wait is over): start the stage clock here and in every
        worker. Otherwise a worker still calibrating would start its load late and miss arrivals of the first
        stage, while the master's clock ends the test on time."""
        assert isinstance(self.runner, MasterRunner)
        now_s = time.time()
        if self.waiting_since_s is None:
            self.waiting_since_s = now_s
        waiting = set(self.runner.clients.keys()) - _calibrated_workers
        if waiting and now_s - self.waiting_since_s < WORKERS_START_WAIT_S:
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
            for request in ready_requests(list(PLAN.requests), os.environ)
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
    if exception is None:
        _recorder.success(plan.name, response_time / 1000.0)
    else:
        failed = 0 if 200 <= status < 300 else status
        content = getattr(response, "content", None) if failed else None
        _recorder.failure(
            plan.name,
            _error_kind(failed, exception),
            lambda: answer_sample(failed, content, exception, ()),
        )


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
    global _test_start_s, _recorder
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
    _recorder = IntervalRecorder(out, PLAN.interval_s, process)

    def refresh_endpoints() -> None:
        while True:
            _endpoints.refresh()
            if _recorder is not None and environment.runner is not None:
                _recorder.user_count = environment.runner.user_count
            gevent.sleep(0.25)

    generator = ArrivalGenerator(environment)
    _background.extend([gevent.spawn(refresh_endpoints), gevent.spawn(_recorder.run), gevent.spawn(generator.run)])


@events.test_stop.add_listener  # type: ignore[untyped-decorator]
def _on_test_stop(environment: Environment, **_: Any) -> None:
    for greenlet in _background:
        greenlet.kill(block=False)
    _background.clear()
    if _recorder is not None:
        _recorder.flush()
