"""What a load process records of its requests, as plain data: each request's outcome (its latency, its kind of
error) added up per stage, and per named request within it, into one ClientInterval per stage each interval; and its
own overhead, measured before the load. Pure: the clock, the CPU time and the file are the locustfile's.
"""

from __future__ import annotations

import statistics
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from harness.analysis.failures import answer_sample, keep_sample
from harness.analysis.latency import LatencyHistogram
from harness.load.plan import StageSpec
from harness.load.requests import CheckResult
from harness.load.streaming import StreamFigures, StreamStats
from harness.model import ClientInterval, LoadgenOverhead, RequestLimits, RequestTally

# The kind of an arrival that found max_in_flight requests outstanding and was not sent.
DROPPED = "dropped_max_in_flight"


def error_kind(status: int, error: BaseException | None) -> str:
    """The kind a failed request is counted under: its HTTP status, or what kept it from getting one."""
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


def request_latency_s(request_meta: Mapping[str, Any], intended_s: float | None) -> float:
    """A request's latency from Locust's own timer (`request_meta`: `start_time` in seconds since the epoch,
    `response_time` in ms), which brackets only the socket exchange (connection, write, read of the whole answer);
    the open model adds how late the request started after `intended_s`, never less than nothing.

    Timing around `client.request` instead counted Locust's request building before the send and its
    bookkeeping after the answer as the service's latency.
    """
    exchange_s = float(request_meta["response_time"]) / 1000.0
    if intended_s is None:
        return exchange_s
    return max(0.0, float(request_meta["start_time"]) - intended_s) + exchange_s


class Outcomes:
    """Request outcomes of one interval, of a whole stage or of one named request: the fields ClientInterval and
    RequestTally share."""

    def __init__(self, limits: tuple[RequestLimits, ...] = ()) -> None:
        self.histogram = LatencyHistogram()
        self.requests = 0
        self.failures = 0
        self.errors: dict[str, int] = {}
        self.checked = 0
        self.mismatches = 0
        self.bad_inputs = 0
        self.bad_input_5xx = 0
        self.bad_input_accepted = 0
        self.error_samples: dict[str, list[str]] = {}
        self.streams = StreamStats(limits=limits)

    def fail(self, kind: str, sample: Callable[[], str] | None = None) -> None:
        self.requests += 1
        self.failures += 1
        self.errors[kind] = self.errors.get(kind, 0) + 1
        if sample is not None:
            keep_sample(self.error_samples, kind, sample)

    def fields(self) -> dict[str, Any]:
        return {
            "requests": self.requests,
            "failures": self.failures,
            "errors": self.errors,
            "error_samples": self.error_samples,
            "latency_hdr": self.histogram.encode(),
            "checked": self.checked,
            "mismatches": self.mismatches,
            "bad_inputs": self.bad_inputs,
            "bad_input_5xx": self.bad_input_5xx,
            "bad_input_accepted": self.bad_input_accepted,
            **self.streams.interval_fields(),
        }


class StageOutcomes:
    """One stage's outcomes in one interval: all of its requests, each named request's own, and the open model's
    arrivals (scheduled, dropped, how late the latest was sent)."""

    def __init__(self, limits: tuple[RequestLimits, ...] = ()) -> None:
        self.limits = limits
        self.outcomes = Outcomes(limits)
        self.by_request: dict[str, Outcomes] = {}
        self.scheduled = 0
        self.dropped = 0
        self.send_lag_max_s = 0.0

    def of(self, request: str | None) -> tuple[Outcomes, ...]:
        """Where a request's outcome counts: the stage's, and its own name's when it has one."""
        if request is None:
            return (self.outcomes,)
        own = self.by_request.get(request)
        if own is None:
            own = self.by_request[request] = Outcomes(self.limits)
        return self.outcomes, own


class IntervalRecorder:
    """Accumulates request outcomes per stage, and per named request within it, until `take` turns them into one
    ClientInterval per stage and starts the next interval. `request` None records against the stage alone (no
    request was chosen, or it has no name of the scenario's `requests:`).

    `stages` and `processes` are the plan's: an open stage's offered rate is its share of the stage's rate."""

    def __init__(
        self, process: int, stages: Sequence[StageSpec], processes: int, limits: tuple[RequestLimits, ...] = ()
    ) -> None:
        self.process = process
        self.specs = {spec.name: spec for spec in reversed(stages)}  # the first of a name, as the search was
        self.processes = processes
        self.limits = limits
        self.stages: dict[str, StageOutcomes] = {}

    def _stage(self, name: str) -> StageOutcomes:
        accumulator = self.stages.get(name)
        if accumulator is None:
            accumulator = self.stages[name] = StageOutcomes(self.limits)
        return accumulator

    def success(self, stage: str, request: str | None, latency_s: float) -> None:
        for outcomes in self._stage(stage).of(request):
            outcomes.requests += 1
            outcomes.histogram.record_s(latency_s)

    def failure(self, stage: str, request: str | None, kind: str, sample: Callable[[], str] | None = None) -> None:
        """A failed request of `kind`; `sample` says what it got back, and is called only while the kind's
        samples of this interval have room (harness.analysis.failures)."""
        for outcomes in self._stage(stage).of(request):
            outcomes.fail(kind, sample)

    def answered(
        self,
        stage: str,
        request: str | None,
        status: int,
        error: BaseException | None,
        result: CheckResult,
        latency_s: float,
        sample: Callable[[], str] | None = None,
    ) -> None:
        """A request's answer (or its lack: status 0 and the `error`), judged by its check as `result`."""
        if result.status_ok:
            self.success(stage, request, latency_s)
        else:
            self.failure(stage, request, error_kind(status, error), sample)
        if result.checked:
            self.answer_checked(stage, request, result.mismatch is not None)

    def user_request(
        self,
        stage: str,
        response_time_ms: float,
        status: int,
        exception: BaseException | None,
        content: Callable[[], bytes | str | None],
    ) -> None:
        """A request of the user's own Locust classes, as Locust's request event reports it: failed when it raised
        `exception` (their own checks, made with `catch_response`, arrive as one), counted under its status unless
        that was a 2xx the check refused; `content` reads its answer for the sample."""
        if exception is None:
            self.success(stage, None, response_time_ms / 1000.0)
            return
        failed = 0 if 200 <= status < 300 else status
        self.failure(
            stage,
            None,
            error_kind(failed, exception),
            lambda: answer_sample(failed, content() if failed else None, exception, ()),
        )

    def streamed(self, stage: str, request: str | None, figures: StreamFigures) -> None:
        for outcomes in self._stage(stage).of(request):
            outcomes.streams.record(figures)

    def answer_checked(self, stage: str, request: str | None, mismatch: bool) -> None:
        for outcomes in self._stage(stage).of(request):
            outcomes.checked += 1
            outcomes.mismatches += int(mismatch)

    def bad_input_answered(self, stage: str, request: str | None, status: int) -> None:
        # No answer at all (status 0: reset, refused, timed out) is as bad as a 5xx: the input broke something.
        for outcomes in self._stage(stage).of(request):
            outcomes.bad_inputs += 1
            outcomes.bad_input_5xx += int(status >= 500 or status == 0)
            outcomes.bad_input_accepted += int(200 <= status < 300)

    def scheduled(self, stage: str, lag_s: float) -> None:
        accumulator = self._stage(stage)
        accumulator.scheduled += 1
        accumulator.send_lag_max_s = max(accumulator.send_lag_max_s, lag_s)

    def dropped(self, stage: str) -> None:
        # An arrival that could not be sent is a failed request from the user's point of view.
        accumulator = self._stage(stage)
        accumulator.dropped += 1
        accumulator.outcomes.fail(DROPPED)

    def take(
        self, t_start_s: float, t_end_s: float, current_stage: str | None, users: int, loadgen_cpu_cores: float
    ) -> list[ClientInterval]:
        """The interval's records, one per stage that recorded anything and one for `current_stage` even if idle
        (an idle interval is a measurement too); the next interval starts empty."""
        stages, self.stages = self.stages, {}
        if current_stage is not None and current_stage not in stages:
            stages[current_stage] = StageOutcomes(self.limits)
        records = []
        for name, accumulator in stages.items():
            spec = self.specs.get(name)
            offered = None
            if spec is not None and spec.arrival_rate_rps is not None:
                offered = spec.arrival_rate_rps / self.processes
            records.append(
                ClientInterval(
                    t_start_s=t_start_s,
                    t_end_s=t_end_s,
                    process=self.process,
                    stage=name,
                    users=users,
                    offered_rps=offered,
                    scheduled=accumulator.scheduled,
                    dropped=accumulator.dropped,
                    send_lag_max_s=accumulator.send_lag_max_s,
                    loadgen_cpu_cores=loadgen_cpu_cores,
                    **accumulator.outcomes.fields(),
                    by_request={
                        request: RequestTally(**outcomes.fields())
                        for request, outcomes in accumulator.by_request.items()
                    },
                )
            )
        return records


def loadgen_overhead(process: int, latencies_s: Sequence[float], rate_rps: float) -> LoadgenOverhead | None:
    """This process's own overhead from the latencies of its calibration's arrivals at `rate_rps` to a null
    endpoint; None with fewer than two (no percentile can be cut from them)."""
    if len(latencies_s) < 2:
        return None
    cuts_ms = statistics.quantiles([1000.0 * latency_s for latency_s in latencies_s], n=100, method="inclusive")
    return LoadgenOverhead(
        process=process,
        requests=len(latencies_s),
        rate_rps=rate_rps,
        p50_ms=cuts_ms[49],
        p95_ms=cuts_ms[94],
        p99_ms=cuts_ms[98],
    )
