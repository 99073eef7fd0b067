"""What a run checks before it builds or deploys anything, for the in-cluster load generator: the scenario's own
requests (also requests made of files) and locustfile are accepted, and files too large to send to the cluster are
named in one line, with the part of the scenario that reads the most of them."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from harness.cli import cli
from harness.config import load_scenario
from harness.errors import ConfigError
from harness.exit_codes import ExitCode
from harness.load import pod_files
from harness.preflight import preflight

ROOT = Path(__file__).resolve().parents[1]
DEFAULT = ROOT / "loadtests" / "default.yaml"
IN_CLUSTER = {
    "target.kind": "kubernetes",
    "target.kubernetes.image": "s:1",
    "target.kubernetes.loadgen": "in-cluster",
}


def with_requests(tmp_path: Path, **overrides: Any) -> dict[str, Any]:
    rows = tmp_path / "rows.jsonl"
    rows.write_text('{"pixels": [0.0]}\n{"pixels": [1.0]}\n')
    request = {
        "name": "classify",
        "path": "/classify",
        "headers": {"Authorization": "Bearer ${PREFLIGHT_TOKEN}"},
        "body_template": {"images": ["{{pixels}}"]},
        "dataset": str(rows),
        "check": {"same_as_alone": True},
    }
    return {**IN_CLUSTER, "requests": [request], "payload.malformed_fraction": 0.1, **overrides}


@pytest.mark.integration
def test_requests_and_a_locustfile_are_accepted_for_in_cluster_load(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PREFLIGHT_TOKEN", "t")
    preflight(load_scenario(DEFAULT, with_requests(tmp_path)))
    locustfile = tmp_path / "users.py"
    locustfile.write_text(
        "from locust import HttpUser, task\n\nclass U(HttpUser):\n    @task\n    def t(self):\n        pass\n"
    )
    preflight(
        load_scenario(
            DEFAULT,
            {
                **IN_CLUSTER,
                "load.locustfile": str(locustfile),
                "stages": [{"name": "users", "duration_s": 5, "users": 1}],
            },
        )
    )


def test_a_header_variable_that_is_not_set_is_named_before_anything_is_deployed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("PREFLIGHT_TOKEN", raising=False)
    with pytest.raises(
        ConfigError, match=r"requests\[0\]\.headers\.Authorization: environment variable PREFLIGHT_TOKEN"
    ):
        preflight(load_scenario(DEFAULT, with_requests(tmp_path)))


def test_files_too_large_for_the_cluster_are_named_before_anything_is_deployed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PREFLIGHT_TOKEN", "t")
    monkeypatch.setattr(pod_files, "MAX_FILES_BYTES", 16)
    with pytest.raises(
        ConfigError,
        match=r"^requests\[0\] 'classify': its 1 file\(s\) come to 36 bytes \(36 bytes with the rest of the run's\), "
        r"and the harness sends at most 16 bytes of files to the in-cluster load generator",
    ):
        preflight(load_scenario(DEFAULT, with_requests(tmp_path)))
    scenario = load_scenario(DEFAULT, with_requests(tmp_path, **{"target.kubernetes.loadgen": "host"}))
    preflight(scenario)  # nothing is sent to the cluster when Locust runs on this machine


def test_requests_made_of_files_go_to_the_cluster_up_to_the_limit_then_are_named_in_one_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An upload of every image of a folder, and an upload whose file a data set names, in the cluster: accepted
    (exit 0) while their files fit; past the limit `harness validate` exits 2 with one line naming the request
    that reads the most and its size."""
    images = tmp_path / "images"
    images.mkdir()
    for number in range(3):
        (images / f"{number}.png").write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(500 * (number + 1)))
    (tmp_path / "labels.jsonl").write_text('{"file": "images/0.png", "label": 0}\n')
    scenario = tmp_path / "uploads.yaml"
    scenario.write_text(f"""
name: uploads
target: {{kind: kubernetes, kubernetes: {{image: "s:1", loadgen: in-cluster}}}}
service: {{path: {tmp_path}, service: "service:S"}}
stages: [{{name: s, duration_s: 5, users: 1}}]
requests:
  - {{name: folder, path: /upload, files: images, body_binary: {{file: "{{{{file}}}}", content_type: image/png}}}}
  - name: labelled
    path: /classify_image
    dataset: labels.jsonl
    multipart: {{image: {{file: "{{{{file}}}}"}}, label: "{{{{label}}}}"}}
""")
    result = CliRunner().invoke(cli, ["validate", str(scenario)])
    assert result.exit_code == ExitCode.OK, result.output
    monkeypatch.setattr(pod_files, "MAX_FILES_BYTES", 2048)
    result = CliRunner().invoke(cli, ["validate", str(scenario)])
    assert result.exit_code == ExitCode.BAD_INPUT
    (line,) = result.stderr.splitlines()
    assert (
        "requests[0] 'folder': its 3 file(s) come to 3.0 KiB (3.0 KiB with the rest of the run's), and the harness "
        "sends at most 2.0 KiB of files to the in-cluster load generator" in line
    ), line
