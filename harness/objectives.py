"""The objective registry: every metric a scenario's objective can bound, with how it is written, its
unit, how it is measured and how it is shown.

config.py validates objective names and what each needs the load to send against it, verdict.py measures
through it, the reports show values through it, sweep.py and conclude.py ask it which objectives bound
latency or errors. A new objective metric is one entry in OBJECTIVE_METRICS (and its tests), never an
if-chain elsewhere. Pure: no I/O.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass

from harness.analysis.intervals import garwood_interval, requests_to_pass_error_rate, wilson_interval
from harness.analysis.tokens import goodput_rate, output_token_rate
from harness.model import (
    STREAM_FIGURES,
    PercentileEstimate,
    RequestLimits,
    StageResult,
    StepAutoscaling,
    percentile_key,
    stream_shortfall_key,
)


@dataclass(frozen=True)
class Measurement:
    """An objective metric on one stage: the value and its confidence interval in the metric's unit, or why
    there is no value."""

    value: float | None
    ci_low: float | None
    ci_high: float | None
    # How the verdict's reason names what was measured: "p95 (ms)", "error rate (3/1200)".
    what: str
    missing: str = ""


# (metric name, stage, confidence, the objective's per-request limits) -> Measurement
StageMeasure = Callable[[str, StageResult, float, RequestLimits | None], Measurement]


@dataclass(frozen=True)
class StepMeasure:
    """How an autoscaling objective reads one load step (no CI: one observation per step)."""

    value: Callable[[StepAutoscaling], float | None]
    # The reason's words for the measured value ("first scale-up decision") and for the awaited event.
    what: str
    event: str
    # Why a step without a value cannot be judged at all (None: judge it by how long the stage waited).
    unmeasurable: Callable[[StepAutoscaling], str | None]


@dataclass(frozen=True)
class Traffic:
    """What a scenario's load sends that some objective metrics need to be measured at all."""

    # Some request's check reads its answer (check.fields, check.same_as_alone).
    checks_answers: bool
    # Bad input is sent: payload.malformed_fraction > 0, or a request whose check expects only 4xx.
    sends_bad_input: bool
    # Some request's answer is read as a stream of tokens (Server-Sent Events).
    streams: bool = False


@dataclass(frozen=True)
class ObjectiveMetric:
    """One kind of objective metric. Exactly one of `stage` and `step` says how it is measured."""

    # How the documentation and error messages write it: "latency_pNN_ms".
    syntax: str
    pattern: re.Pattern[str]
    # The unit of measured values and thresholds: "ms", "rps", "s", or "" for a fraction.
    unit: str
    stage: StageMeasure | None = None
    step: StepMeasure | None = None
    # Shown as a percentage (a fraction of requests), else as a number with its unit.
    shown_as_percent: bool = False
    # Whether it decides a `harness sweep` probe: latency and errors do; a fixed throughput floor would fail
    # every probe below it, and a service that falls behind an open-model rate shows it as queueing latency.
    decides_sweep_probes: bool = False
    # (the objective's max or None, its min or None, confidence) -> fewest requests a stage needs before it can
    # PASS at all.
    requests_to_pass: Callable[[float | None, float | None, float], int] | None = None
    # stage -> why it FAILs whatever was measured and even in a stage otherwise invalid, or None.
    fails_stage: Callable[[StageResult], str | None] | None = None
    # The scenario's traffic -> what the objective needs that the load does not send (a config error), or None.
    unmeasurable_with: Callable[[Traffic], str | None] | None = None
    # The objective takes per-request limits (`per_request:`), which a request must all meet to be counted.
    takes_request_limits: bool = False


# --------------------------------------------------------------------------- how each metric is measured


def _in_ms(estimate: PercentileEstimate | None, what: str, none_computed: str, none_measured: str) -> Measurement:
    if estimate is None:
        return Measurement(None, None, None, what, none_computed)
    if estimate.value_s is None:
        return Measurement(None, None, None, what, none_measured)

    def ms(value_s: float | None) -> float | None:
        return None if value_s is None else value_s * 1000.0

    return Measurement(ms(estimate.value_s), ms(estimate.ci_low_s), ms(estimate.ci_high_s), f"{what} (ms)")


def _latency(metric: str, stage: StageResult, confidence: float, limits: RequestLimits | None) -> Measurement:
    q = latency_percentile(metric)
    assert q is not None  # the pattern matched
    key = percentile_key(q)
    return _in_ms(
        stage.latency.get(key),
        key,
        f"{key} was not computed for this stage",
        f"no successful requests to compute {key} from",
    )


def _streamed(metric: str, stage: StageResult, confidence: float, limits: RequestLimits | None) -> Measurement:
    found = stream_percentile(metric)
    assert found is not None  # the pattern matched
    figure, q = found
    what = f"{figure} {percentile_key(q)}"
    if not stage.streamed:
        return Measurement(None, None, None, what, "no streamed request was read to its end in this stage")
    shortfall = stage.sample_shortfalls.get(stream_shortfall_key(figure, q))
    if shortfall is not None:
        return Measurement(None, None, None, what, shortfall)
    none_measured = f"no streamed request had a {'first token' if figure == 'ttft' else 'second token'}"
    estimates: dict[str, PercentileEstimate] = getattr(stage, figure)
    return _in_ms(estimates.get(percentile_key(q)), what, f"{what} was not computed for this stage", none_measured)


def _output_tokens_per_s(
    metric: str, stage: StageResult, confidence: float, limits: RequestLimits | None
) -> Measurement:
    what = "output tokens/s"
    if not stage.streamed:
        return Measurement(None, None, None, what, "no streamed request was read to its end in this stage")
    rate = output_token_rate(stage.output_tokens, stage.output_tokens_squares, stage.duration_s, confidence)
    if rate is None:
        return Measurement(None, None, None, what, "the stage has no duration")
    return Measurement(*rate, f"{what} ({stage.output_tokens} tokens)")


def _goodput(metric: str, stage: StageResult, confidence: float, limits: RequestLimits | None) -> Measurement:
    assert limits is not None  # config requires them (takes_request_limits)
    what = f"goodput (rps, {limits.key})"
    good = stage.good_requests.get(limits.key)
    if good is None:
        return Measurement(None, None, None, what, f"requests meeting {limits.key} were not counted in this stage")
    rate = goodput_rate(good, stage.duration_s, confidence)
    if rate is None:
        return Measurement(None, None, None, what, "the stage has no duration")
    return Measurement(*rate, f"goodput (rps, {good} of {stage.streamed} streamed requests met {limits.key})")


def _goodput_fraction(metric: str, stage: StageResult, confidence: float, limits: RequestLimits | None) -> Measurement:
    assert limits is not None  # config requires them (takes_request_limits)
    good = stage.good_requests.get(limits.key)
    if good is None:
        return Measurement(None, None, None, "goodput", f"requests meeting {limits.key} were not counted in this stage")
    # Every request that ended counts: one that failed met no limit.
    return _share(f"goodput ({limits.key})", good, stage.requests, "no requests completed in this stage", confidence)


def _share(what: str, count: int, total: int, missing: str, confidence: float) -> Measurement:
    """`count` of `total` as a fraction with its Wilson interval; nothing measured when `total` is 0."""
    if total == 0:
        return Measurement(None, None, None, what, missing)
    low, high = wilson_interval(count, total, confidence)
    return Measurement(count / total, low, high, f"{what} ({count}/{total})")


def _error_rate(metric: str, stage: StageResult, confidence: float, limits: RequestLimits | None) -> Measurement:
    if stage.error_rate is None:
        return Measurement(None, None, None, "error rate", "no requests completed, so there is no error rate")
    return _share("error rate", stage.failures, stage.requests, "", confidence)


def _mismatch_rate(metric: str, stage: StageResult, confidence: float, limits: RequestLimits | None) -> Measurement:
    missing = (
        "no answer was checked in this stage (no request with check fields or same_as_alone answered with its "
        "expected status)"
    )
    return _share("mismatch rate", stage.mismatches, stage.checked, missing, confidence)


def _bad_input_5xx_rate(
    metric: str, stage: StageResult, confidence: float, limits: RequestLimits | None
) -> Measurement:
    missing = "no bad input was sent in this stage"
    return _share("bad-input 5xx rate", stage.bad_input_5xx, stage.bad_inputs, missing, confidence)


def _replica_died_under_bad_input(stage: StageResult) -> str | None:
    # A replica that dies while bad input is sent is the failure this objective exists for, not noise.
    if stage.crashed_replicas and stage.bad_inputs:
        return f"replica {', '.join(stage.crashed_replicas)} died while bad input was sent"
    return None


def _throughput(metric: str, stage: StageResult, confidence: float, limits: RequestLimits | None) -> Measurement:
    if stage.duration_s <= 0:
        return Measurement(None, None, None, "throughput (rps)", "the stage has no duration")
    low, high = garwood_interval(stage.requests, confidence)
    return Measurement(stage.achieved_rps, low / stage.duration_s, high / stage.duration_s, "throughput (rps)")


def _error_rate_requests(max_rate: float | None, min_rate: float | None, confidence: float) -> int:
    # Even with no failure at all, the Wilson upper bound falls below `max` only after enough requests.
    return requests_to_pass_error_rate(max_rate, confidence) if max_rate is not None and 0 < max_rate < 1 else 0


def _goodput_fraction_requests(max_share: float | None, min_share: float | None, confidence: float) -> int:
    # The mirror image: with every request good, the Wilson lower bound rises above `min` only after enough of them.
    return requests_to_pass_error_rate(1 - min_share, confidence) if min_share is not None and 0 < min_share < 1 else 0


def _needs_checked_answers(traffic: Traffic) -> str | None:
    if traffic.checks_answers:
        return None
    return "needs requests whose check has fields or same_as_alone to compare answers with"


def _needs_bad_input(traffic: Traffic) -> str | None:
    if traffic.sends_bad_input:
        return None
    return "needs bad input: payload.malformed_fraction > 0 or a request whose check.status lists only 4xx"


def _needs_streams(traffic: Traffic) -> str | None:
    if traffic.streams:
        return None
    return "needs requests whose answers stream (a request with openai: or stream:)"


def _judge_by_waiting(step: StepAutoscaling) -> str | None:
    return None


def _no_scale_up(step: StepAutoscaling) -> str | None:
    if step.first_scale_up_decision_s is None:
        return "no scale-up was decided in this step, so no new replicas had to become ready"
    return None


def _no_p95_objective(step: StepAutoscaling) -> str | None:
    return "no p95 latency objective to measure violations against"


_PERCENTILE = r"p(?P<q>[0-9]{1,2}(?:\.[0-9]+)?)"
_LATENCY = re.compile(rf"^latency_{_PERCENTILE}_ms$")
# Streamed requests' figures, by their prefix in STREAM_FIGURES: ttft_p95_ms, itl_p99_ms, tpot_p50_ms.
_STREAMED = re.compile(rf"^(?P<figure>{'|'.join(STREAM_FIGURES)})_{_PERCENTILE}_ms$")

# In the order error messages list them.
OBJECTIVE_METRICS: tuple[ObjectiveMetric, ...] = (
    ObjectiveMetric("latency_pNN_ms", _LATENCY, "ms", stage=_latency, decides_sweep_probes=True),
    ObjectiveMetric(
        "error_rate",
        re.compile(r"^error_rate$"),
        "",
        stage=_error_rate,
        shown_as_percent=True,
        decides_sweep_probes=True,
        requests_to_pass=_error_rate_requests,
    ),
    # Answers that disagree with their check (requests[].check.fields, or the same body's answer alone with
    # check.same_as_alone) among the answers checked.
    ObjectiveMetric(
        "mismatch_rate",
        re.compile(r"^mismatch_rate$"),
        "",
        stage=_mismatch_rate,
        shown_as_percent=True,
        unmeasurable_with=_needs_checked_answers,
    ),
    # Bad input (requests expecting 4xx, payload.malformed_fraction) answered 5xx or not at all, among bad input
    # sent; a replica dying in the stage while bad input was sent is a FAIL.
    ObjectiveMetric(
        "bad_input_5xx_rate",
        re.compile(r"^bad_input_5xx_rate$"),
        "",
        stage=_bad_input_5xx_rate,
        shown_as_percent=True,
        fails_stage=_replica_died_under_bad_input,
        unmeasurable_with=_needs_bad_input,
    ),
    ObjectiveMetric("throughput_rps", re.compile(r"^throughput_rps$"), "rps", stage=_throughput),
    # Streamed requests (harness.load.streaming): time to first token, every gap between tokens, and time per
    # output token, each at a percentile.
    ObjectiveMetric(
        "ttft_pNN_ms",
        re.compile(rf"^ttft_{_PERCENTILE}_ms$"),
        "ms",
        stage=_streamed,
        decides_sweep_probes=True,
        unmeasurable_with=_needs_streams,
    ),
    ObjectiveMetric(
        "itl_pNN_ms",
        re.compile(rf"^itl_{_PERCENTILE}_ms$"),
        "ms",
        stage=_streamed,
        decides_sweep_probes=True,
        unmeasurable_with=_needs_streams,
    ),
    ObjectiveMetric(
        "tpot_pNN_ms",
        re.compile(rf"^tpot_{_PERCENTILE}_ms$"),
        "ms",
        stage=_streamed,
        decides_sweep_probes=True,
        unmeasurable_with=_needs_streams,
    ),
    # Output tokens of streamed requests per second of the stage.
    ObjectiveMetric(
        "output_tokens_per_s",
        re.compile(r"^output_tokens_per_s$"),
        "tokens/s",
        stage=_output_tokens_per_s,
        unmeasurable_with=_needs_streams,
    ),
    # Streamed requests per second that met every limit of the objective's `per_request:` (vLLM's goodput).
    ObjectiveMetric(
        "goodput_rps",
        re.compile(r"^goodput_rps$"),
        "rps",
        stage=_goodput,
        unmeasurable_with=_needs_streams,
        takes_request_limits=True,
    ),
    # The share of the stage's requests that met every limit of its `per_request:` (DistServe's SLO attainment):
    # what `harness sweep` keeps to find the highest rate with enough goodput, as a rate alone cannot.
    ObjectiveMetric(
        "goodput_fraction",
        re.compile(r"^goodput_fraction$"),
        "",
        stage=_goodput_fraction,
        shown_as_percent=True,
        decides_sweep_probes=True,
        requests_to_pass=_goodput_fraction_requests,
        unmeasurable_with=_needs_streams,
        takes_request_limits=True,
    ),
    ObjectiveMetric(
        "scale_up_within_s",
        re.compile(r"^scale_up_within_s$"),
        "s",
        step=StepMeasure(
            lambda step: step.first_scale_up_decision_s,
            "first scale-up decision",
            "scale-up decision",
            _judge_by_waiting,
        ),
    ),
    ObjectiveMetric(
        "max_violation_s",
        re.compile(r"^max_violation_s$"),
        "s",
        step=StepMeasure(lambda step: step.violation_s, "p95 above objective", "p95 violation", _no_p95_objective),
    ),
    ObjectiveMetric(
        "ready_within_s",
        re.compile(r"^ready_within_s$"),
        "s",
        step=StepMeasure(
            lambda step: step.new_replicas_ready_s, "new replicas ready", "new replicas ready", _no_scale_up
        ),
    ),
)


# --------------------------------------------------------------------------- lookups


def objective_metric(name: str) -> ObjectiveMetric:
    """The registry entry of an objective metric name; a ValueError naming the valid ones when there is none."""
    for metric in OBJECTIVE_METRICS:
        if metric.pattern.match(name):
            q = metric_percentile(name)
            if q is not None and not 0 < q < 100:
                raise ValueError(f"percentile in '{name}' must be between 0 and 100")
            return metric
    *first, last = [m.syntax for m in OBJECTIVE_METRICS]
    raise ValueError(
        f"'{name}' is not an objective metric (expected latency_pNN_ms such as latency_p95_ms, "
        f"{', '.join(first[1:])} or {last})"
    )


def latency_percentile(name: str) -> float | None:
    """The percentile (0-100) a latency objective metric is about ("latency_p95_ms" -> 95.0), else None."""
    match = _LATENCY.match(name)
    return float(match.group("q")) if match else None


def stream_percentile(name: str) -> tuple[str, float] | None:
    """The streamed figure and percentile an objective metric is about ("ttft_p95_ms" -> ("ttft", 95.0)), else None."""
    match = _STREAMED.match(name)
    return (match.group("figure"), float(match.group("q"))) if match else None


def metric_percentile(name: str) -> float | None:
    """The percentile of any percentile metric (latency_p95_ms, ttft_p99_ms ...), else None."""
    streamed = stream_percentile(name)
    return streamed[1] if streamed is not None else latency_percentile(name)


def is_per_step(name: str) -> bool:
    """Whether a metric judges load steps of an autoscaled run rather than stages (scale_up_within_s ...)."""
    return objective_metric(name).step is not None


def documented_metric_names() -> str:
    """The metric names as a scenario's documentation lists them."""
    return ", ".join(m.syntax for m in OBJECTIVE_METRICS)
