"""What a run checks before it builds or deploys anything (`harness run` and `harness validate` alike): the
scenario's files and options as the run will use them, a missing optional extra, and warnings the scenario's
numbers make foreseeable."""

from __future__ import annotations

import os
from pathlib import Path

from harness import extras
from harness.analysis.latency import min_samples_for_percentile
from harness.config import Scenario
from harness.errors import ConfigError
from harness.load.payloads import build_bodies
from harness.load.plan import build_load_plan, stage_specs
from harness.load.pod_files import configmap_parts, read_plan_files
from harness.load.requests import ready_requests
from harness.load.runner import check_user_locustfile
from harness.local_autoscaler import check_supported
from harness.targets.registry import extras_needed, machine_preflight, target_kind
from harness.tls import context_for


def preflight(scenario: Scenario) -> None:
    """Catch input mistakes, and a missing optional extra, before anything is deployed."""
    for extra in extras_needed(scenario):
        extras.require(extra, f"the {scenario.target.kind} target")
    if scenario.metrics.remote_write_url:
        extras.require("remote-write", "metrics.remote_write_url")
    in_cluster = target_kind(scenario).load_in_cluster(scenario)
    if scenario.requests is None and scenario.payload.source == "digits" and not in_cluster:
        # The load generator draws the bodies from scikit-learn's bundled images (the cluster's image has it).
        extras.require("digits", "payload.source 'digits' (the default payload)")
    if target_kind(scenario).serves_service_dir and not scenario.service.project_dir.is_dir():
        raise ConfigError(f"service.path '{scenario.service.path}': no such directory (expected a BentoML project)")
    if scenario.payload.source == "jsonl":
        build_bodies("jsonl", file=scenario.payload.file, batch_rows=1, seed=0)
    stage_specs(scenario, with_traces=True)  # names a trace file that cannot be read or replayed
    context_for(scenario.target.urls, scenario.target.tls)  # names a target.tls file that cannot be read or used
    if scenario.load.locustfile is not None:
        if not scenario.load.locustfile.is_file():
            raise ConfigError(f"load.locustfile '{scenario.load.locustfile}': no such file")
        check_user_locustfile(scenario.load.locustfile)
    autoscaling = scenario.autoscaling
    if autoscaling is not None and autoscaling.enabled and not target_kind(scenario).scales_itself:
        # The harness plays the HPA controller itself: only metrics it observes can drive it.
        check_supported(autoscaling)
    if scenario.requests is not None:
        # Reads every body file, data set and file, fills every template and checks every ${NAME} is set.
        ready_requests(scenario.requests, os.environ)
    if in_cluster:
        # The files the generator pods read go to the cluster as ConfigMaps: too much of them is named now (the
        # part of the scenario that reads the most), and a file name the pods cannot lay out.
        plan = build_load_plan(scenario, endpoints_file=Path("endpoints.json"), intervals_dir=Path("intervals"))
        configmap_parts(read_plan_files(plan))
    machine_preflight(scenario)


def tls_warnings(scenario: Scenario) -> list[str]:
    """A verdict on https URLs whose certificates were not checked says so."""
    if any(url.startswith("https:") for url in scenario.target.urls) and not scenario.target.tls.verify:
        return [
            "TLS verification was off (target.tls.verify: false): the service's certificate and host name were "
            "not checked"
        ]
    return []


def short_stage_warnings(scenario: Scenario) -> list[str]:
    """Open-model stages too short for a percentile objective judged on them: their request count is known in
    advance, so the INCONCLUSIVE they would end in is foreseeable."""
    warnings = []
    judged = {stage.name: stage for stage in scenario.stages if stage.judged}
    for objective in scenario.objectives:
        q = objective.percentile
        if q is None:
            continue
        needed = min_samples_for_percentile(q, scenario.validity.min_tail_samples)
        for name in objective.stages or list(judged):
            stage = judged.get(name)
            if stage is None or stage.arrival_rate_rps is None:
                continue
            expected = stage.arrival_rate_rps * stage.duration_s
            if expected < needed:
                warnings.append(
                    f"stage '{name}' sends about {expected:.0f} requests ({stage.arrival_rate_rps:g} rps for "
                    f"{stage.duration_s:g} s), too few for objective {objective.metric}, which needs at least "
                    f"{needed} (validity.min_tail_samples={scenario.validity.min_tail_samples}): it will be "
                    "INCONCLUSIVE; lengthen the stage or raise its rate"
                )
    return warnings
