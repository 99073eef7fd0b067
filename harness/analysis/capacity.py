"""Capacity plan: replicas, per-replica requests, BentoML concurrency and cost for a target peak load.

All figures derive from the measured per-replica sustainable throughput (harness.analysis.saturation)
and the resources one replica used at that load:

    replicas_needed        ceil(target_peak_rps x (1 + headroom) / per_replica_rps), at least 1
    cpu_request_cores      resources.requests.cpu if configured, else observed CPU x (1 + headroom),
                           rounded up to 50m (Kubernetes millicores)
    memory_request_bytes   resources.requests.memory if configured, else observed RSS x 1.3, rounded up
                           to 16 MiB. A fixed 30% margin, not the load headroom: a model server's memory
                           is mostly the model and runtime, which does not grow with request rate
    concurrency_per_replica  BentoML `traffic.concurrency`, by Little's law L = lambda x W: requests in
                           flight = per_replica_rps x mean latency, times (1 + headroom), rounded up,
                           at least 1. The mean, not a percentile, is what Little's law needs; without
                           a mean the p95 stands in (an over-estimate, so the limit errs high)
    monthly_cost           replicas x cpu_request_cores x price_per_core_hour x 730 h
"""

from __future__ import annotations

import math

from harness.config import CapacityConfig, Resources
from harness.model import CapacityPlan

HOURS_PER_MONTH = 730.0
CPU_STEP_MILLICORES = 50
MEMORY_STEP_BYTES = 16 * 2**20
MEMORY_MARGIN = 0.3
# Relative slack before rounding up, so that 100 x 1.3 / 10 = 13.000000000000002 asks for 13, not 14.
_ROUNDING_SLACK = 1e-9


def _ceil(value: float) -> int:
    return math.ceil(value - abs(value) * _ROUNDING_SLACK)


def _round_up(value: float, step: int) -> int:
    """`value` rounded up to a whole, non-zero multiple of `step`."""
    return max(1, _ceil(value / step)) * step


def _optional_positive(name: str, value: float | None) -> None:
    if value is not None and not (math.isfinite(value) and value >= 0):
        raise ValueError(f"{name}={value!r} must be a finite number >= 0 or None")


def plan_capacity(
    per_replica_rps: float | None,
    config: CapacityConfig,
    resources: Resources,
    observed_cpu_cores_per_replica: float | None,
    observed_rss_bytes_per_replica: float | None,
    latency_p95_s_at_sustainable: float | None,
    latency_mean_s: float | None,
) -> CapacityPlan | None:
    """A capacity plan for `config.target_peak_rps` (see the module docstring for each figure).

    None when no target is configured, and None when per_replica_rps is None (nothing was proven
    sustainable): a plan without a measured throughput would be numbers that look measured but are not.
    The caller records why (Saturation.reason says it). A figure that needs an observation that is
    missing is None within the plan, and the plan's reason says so.
    """
    target_rps = config.target_peak_rps
    if target_rps is None or per_replica_rps is None:
        return None
    if not (math.isfinite(per_replica_rps) and per_replica_rps > 0):
        raise ValueError(f"per_replica_rps={per_replica_rps!r} must be a finite number > 0 or None")
    for name, value in (
        ("observed_cpu_cores_per_replica", observed_cpu_cores_per_replica),
        ("observed_rss_bytes_per_replica", observed_rss_bytes_per_replica),
        ("latency_p95_s_at_sustainable", latency_p95_s_at_sustainable),
        ("latency_mean_s", latency_mean_s),
    ):
        _optional_positive(name, value)
    headroom = config.headroom
    notes: list[str] = []

    replicas = max(1, _ceil(target_rps * (1 + headroom) / per_replica_rps))
    notes.append(
        f"{replicas} replica(s): {target_rps:g} rps x (1 + {headroom:g} headroom) / "
        f"{per_replica_rps:.4g} rps sustained per replica, rounded up"
    )

    cpu_cores: float | None
    if resources.requests.cpu_cores is not None:
        cpu_cores = resources.requests.cpu_cores
        notes.append(f"CPU request {cpu_cores:g} cores as configured")
    elif observed_cpu_cores_per_replica is not None:
        # Whole millicores first, so 150m is 0.15 and not 0.15000000000000002.
        cpu_cores = _round_up(observed_cpu_cores_per_replica * (1 + headroom) * 1000, CPU_STEP_MILLICORES) / 1000
        notes.append(
            f"CPU request {cpu_cores * 1000:.0f}m: observed {observed_cpu_cores_per_replica:.3g} cores per "
            f"replica x (1 + {headroom:g}), rounded up to 50m"
        )
    else:
        cpu_cores = None
        notes.append("no CPU request: none configured and replica CPU was not observed")

    memory_bytes: float | None
    if resources.requests.memory_bytes is not None:
        memory_bytes = resources.requests.memory_bytes
        notes.append(f"memory request {memory_bytes / 2**20:.0f} MiB as configured")
    elif observed_rss_bytes_per_replica is not None:
        memory_bytes = float(_round_up(observed_rss_bytes_per_replica * (1 + MEMORY_MARGIN), MEMORY_STEP_BYTES))
        notes.append(
            f"memory request {memory_bytes / 2**20:.0f} MiB: observed RSS {observed_rss_bytes_per_replica / 2**20:.0f} "
            f"MiB x {1 + MEMORY_MARGIN:g}, rounded up to 16 MiB"
        )
    else:
        memory_bytes = None
        notes.append("no memory request: none configured and replica RSS was not observed")

    latency_s, latency_name = (
        (latency_mean_s, "mean") if latency_mean_s is not None else (latency_p95_s_at_sustainable, "p95")
    )
    concurrency: int | None
    if latency_s is not None:
        concurrency = max(1, _ceil(per_replica_rps * latency_s * (1 + headroom)))
        notes.append(
            f"traffic.concurrency {concurrency}: Little's law, {per_replica_rps:.4g} rps x {latency_s * 1000:.4g} ms "
            f"{latency_name} latency x (1 + {headroom:g}) requests in flight per replica"
        )
    else:
        concurrency = None
        notes.append("no traffic.concurrency: latency at the sustainable load is unknown")

    monthly_cost: float | None = None
    if config.price_per_core_hour is not None and cpu_cores is not None:
        monthly_cost = replicas * cpu_cores * config.price_per_core_hour * HOURS_PER_MONTH
        notes.append(
            f"monthly cost {monthly_cost:.2f}: {replicas} x {cpu_cores:g} cores x {config.price_per_core_hour:g} "
            f"per core-hour x {HOURS_PER_MONTH:g} h"
        )
    elif config.price_per_core_hour is not None:
        notes.append("no monthly cost: the CPU request is unknown")

    return CapacityPlan(
        target_peak_rps=target_rps,
        headroom=headroom,
        per_replica_rps=per_replica_rps,
        replicas_needed=replicas,
        cpu_request_cores=cpu_cores,
        memory_request_bytes=memory_bytes,
        concurrency_per_replica=concurrency,
        monthly_cost=monthly_cost,
        reason="; ".join(notes),
    )
