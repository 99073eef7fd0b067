"""Uploads from inside the real cluster (scripts/cluster): loadtests/digits-images.yaml, shortened, with the
in-cluster load generator. Its 100 PNGs and their data set reach the generator pod as ConfigMap parts, are laid
out there as on this machine, and every upload is answered 2xx with its label checked, every broken one (half the
sends, every kind) 4xx, none 5xx."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from tests.targets.cluster_support import LOAD_SHEDDING, run_cli
from tests.targets.conftest import DIGITS_DIR, ROOT, RealCluster
from tests.targets.test_kubernetes_cluster_load import in_cluster_scenario

pytestmark = [pytest.mark.integration, pytest.mark.cluster]

# The kinds of broken upload the bad-input mix sends to a multipart request with a file part.
UPLOAD_KINDS = {"truncated", "wrong_file_type", "text_for_file", "empty_part", "missing_part", "huge", "no_boundary"}


@pytest.mark.usefixtures("loadgen_image")  # built once before any run builds it: see conftest
def test_in_cluster_uploads_of_png_files_answered_2xx_and_broken_ones_4xx(
    cluster: RealCluster, digits_image: str, tmp_path: Path
) -> None:
    images = yaml.safe_load((ROOT / "loadtests" / "digits-images.yaml").read_text())
    (request,) = images["requests"]
    request["dataset"] = str(DIGITS_DIR / "images" / "labels.jsonl")
    data = in_cluster_scenario(
        cluster,
        digits_image,
        "in-cluster-uploads",
        stages=[{"name": "open-25", "duration_s": 8, "arrival_rate_rps": 25, "arrival": "constant"}],
        requests=[request],
        payload={"malformed_fraction": 0.5},
        # Bounds that 100 samples a side can prove on a busy machine; the counts below are the test.
        objectives=[
            {"metric": "error_rate", "max": 0.05},
            {"metric": "mismatch_rate", "max": 0.15},
            {"metric": "bad_input_5xx_rate", "max": 0.05},
        ],
    )
    run_dir = run_cli(data, tmp_path, "uploads")
    verdict = json.loads((run_dir / "verdict.json").read_text())
    (stage,) = verdict["stages"]
    print(
        f"in-cluster uploads: {stage['requests']} valid, {stage['failures']} failed, {stage['mismatches']} of "
        f"{stage['checked']} labels wrong; {stage['bad_inputs']} broken, {stage['bad_input_5xx']} 5xx, "
        f"{stage['bad_input_accepted']} 2xx"
    )
    # 200 sends, about half of each: every valid upload answered 200 with a label (the model's own error on these
    # images is 4 in 100), every broken one 4xx.
    assert stage["requests"] > 60 and stage["checked"] == stage["requests"]
    assert set(stage["errors"]) <= LOAD_SHEDDING, stage["errors"]
    assert stage["mismatches"] <= 0.1 * stage["checked"]
    assert stage["bad_inputs"] > 60 and stage["bad_input_5xx"] == 0 and stage["bad_input_accepted"] == 0
    # Every kind was sent and answered 4xx (Locust counts any other status as a failure).
    locust = {stat["name"]: stat for stat in json.loads((run_dir / "locust.json").read_text())}
    sent = {name.removeprefix("classify-image [malformed ").removesuffix("]"): stat for name, stat in locust.items()}
    assert set(sent) == {"classify-image", *UPLOAD_KINDS}, sorted(locust)
    assert all(sent[kind]["num_failures"] == 0 for kind in UPLOAD_KINDS), {k: sent[k]["num_failures"] for k in sent}
    judged = [o for o in verdict["objectives"] if o["metric"] != "error_rate"]
    assert {o["status"] for o in judged} <= {"PASS", "WARN"}, verdict["objectives"]
