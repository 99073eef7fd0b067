"""The files a load plan reads, as the in-cluster generator pods get them: their names in the pods, the plan with
the pods' paths, and the parts packed into ConfigMaps under Kubernetes' 1 MiB limit that the pods join again."""

from __future__ import annotations

import base64
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from harness.config import parse_scenario
from harness.errors import ConfigError
from harness.load.plan import LoadPlan, build_load_plan
from harness.load.pod_files import (
    CONFIGMAP_MAX_BYTES,
    INPUTS_LAYOUT_FILE,
    MAX_FILES_BYTES,
    PART_BYTES,
    POD_FILES_DIR,
    POD_INPUTS_DIR,
    configmap_parts,
    local_files,
    pod_plan,
    read_plan_files,
)


def joined(configmaps: Sequence[Mapping[str, Any]]) -> dict[str, bytes]:
    """The files as charts/loadgen's pods join them from the ConfigMaps' data and binaryData (as values or as
    rendered manifests): every part of a name, in the order of its number."""
    parts: list[tuple[str, bytes]] = []
    for configmap in configmaps:
        parts += [(key, text.encode()) for key, text in (configmap.get("data") or {}).items()]
        parts += [(key, base64.b64decode(value)) for key, value in (configmap.get("binaryData") or {}).items()]
    files: dict[str, bytes] = {}
    for key, content in sorted(parts):
        name = key.rsplit(".", 1)[0]
        files[name] = files.get(name, b"") + content
    return files


def configmap_bytes(configmap: dict[str, dict[str, str]]) -> int:
    """A ConfigMap's size as the API server counts it against its 1 MiB: keys and values, binary ones decoded."""
    text = sum(len(key) + len(value.encode()) for key, value in configmap["data"].items())
    binary = sum(len(key) + len(base64.b64decode(value)) for key, value in configmap["binaryData"].items())
    return text + binary


def plan_with_files(tmp_path: Path, **scenario: Any) -> LoadPlan:
    data = {
        "name": "t",
        "target": {"kind": "external", "urls": ["http://127.0.0.1:3000"]},
        "stages": [{"name": "s", "duration_s": 5, "users": 1}],
        **scenario,
    }
    return build_load_plan(parse_scenario(data), endpoints_file=tmp_path / "e.json", intervals_dir=tmp_path / "i")


def test_every_file_the_plan_reads_gets_one_numbered_name_in_the_pods(tmp_path: Path) -> None:
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    rows, bodies, other_rows = (
        tmp_path / "a" / "rows.jsonl",
        tmp_path / "b" / "my bodies.jsonl",
        tmp_path / "b" / "rows.jsonl",
    )
    plan = plan_with_files(
        tmp_path,
        requests=[
            {"name": "one", "path": "/p", "body_template": {"x": "{{x}}"}, "dataset": str(rows)},
            {"name": "two", "path": "/p", "body_file": str(bodies)},
            # The same data set again keeps its one name; another of the same name gets its own.
            {"name": "three", "path": "/p", "body_template": {"y": "{{x}}"}, "dataset": str(rows)},
            {"name": "four", "path": "/p", "body_template": {"y": "{{x}}"}, "dataset": str(other_rows)},
        ],
    )
    assert local_files(plan) == {rows: "0-rows.jsonl", bodies: "1-my_bodies.jsonl", other_rows: "2-rows.jsonl"}
    in_pod = pod_plan(plan, workers=3)
    assert in_pod.requests is not None
    assert [(r.body_file, r.dataset) for r in in_pod.requests] == [
        (None, POD_FILES_DIR / "0-rows.jsonl"),
        (POD_FILES_DIR / "1-my_bodies.jsonl", None),
        (None, POD_FILES_DIR / "0-rows.jsonl"),
        (None, POD_FILES_DIR / "2-rows.jsonl"),
    ]
    assert (in_pod.processes, in_pod.endpoints_file) == (3, str(POD_FILES_DIR / "endpoints.json"))
    # Everything else crosses unchanged, and the pod's plan crosses as JSON like any other.
    assert [r.model_copy(update={"body_file": None, "dataset": None}) for r in in_pod.requests] == [
        r.model_copy(update={"body_file": None, "dataset": None}) for r in plan.requests or ()
    ]
    assert LoadPlan.from_json(in_pod.to_json()) == in_pod


def test_the_users_locustfile_and_payload_file_go_to_the_pods_too(tmp_path: Path) -> None:
    locustfile = tmp_path / "users.py"
    plan = plan_with_files(tmp_path, load={"locustfile": str(locustfile)})
    assert pod_plan(plan, 1).user_locustfile == str(POD_FILES_DIR / "0-users.py")
    payload = tmp_path / "bodies.jsonl"
    plan = plan_with_files(tmp_path, payload={"source": "jsonl", "file": str(payload)})
    assert pod_plan(plan, 1).payload.file == str(POD_FILES_DIR / "0-bodies.jsonl")
    assert local_files(plan_with_files(tmp_path)) == {}, "the digits payload reads no file"


def test_an_openai_requests_prompts_go_to_the_pods_and_a_trace_inside_the_plan(tmp_path: Path) -> None:
    prompts, trace = tmp_path / "chats.jsonl", tmp_path / "trace.txt"
    prompts.write_text('{"messages": [{"role": "user", "content": "hi"}]}\n')
    trace.write_text("0\n0.5\n0.75\n")
    openai = {"prompts": str(prompts), "max_tokens": 8}
    plan = plan_with_files(
        tmp_path,
        stages=[{"name": "s", "duration_s": 5, "arrival_rate_rps": 2, "arrival": "trace", "trace": str(trace)}],
        requests=[{"name": "chat", "path": "/v1/chat/completions", "openai": openai}],
    )
    assert local_files(plan) == {prompts: "0-chats.jsonl"}
    in_pod = pod_plan(plan, workers=2)
    assert in_pod.requests is not None and in_pod.requests[0].openai is not None
    assert in_pod.requests[0].openai.prompts == POD_FILES_DIR / "0-chats.jsonl"
    assert in_pod.requests[0].openai.max_tokens == 8 and in_pod.requests[0].stream is None
    assert in_pod.stages[0].trace_s == (0.0, 0.5, 0.75)
    assert read_plan_files(plan) == {"0-chats.jsonl": prompts.read_bytes()}
    assert LoadPlan.from_json(in_pod.to_json()) == in_pod


def test_a_file_that_cannot_be_read_is_named(tmp_path: Path) -> None:
    plan = plan_with_files(tmp_path, load={"locustfile": str(tmp_path / "missing.py")})
    with pytest.raises(ConfigError, match=r"missing\.py': cannot read it to send to the load generator pods"):
        read_plan_files(plan)


def test_small_files_share_a_configmap_as_readable_text() -> None:
    files = {"load_plan.json": b'{"stages": []}', "0-rows.jsonl": '{"name": "\u00e9t\u00e9"}\n'.encode()}
    (configmap,) = configmap_parts(files)
    assert configmap["data"] == {"load_plan.json.0000": '{"stages": []}', "0-rows.jsonl.0000": '{"name": "été"}\n'}
    assert configmap["binaryData"] == {}
    assert joined([configmap]) == files


def test_a_large_file_is_cut_into_parts_over_several_configmaps_each_under_the_limit() -> None:
    large = b"".join(b'{"row": %d, "pad": "%s"}\n' % (i, b"x" * 200) for i in range(12_000))  # 2.6 MiB
    binary = bytes(range(256)) * 2000  # not UTF-8: base64
    files = {"load_plan.json": b"{}", "0-rows.jsonl": large, "1-image.bin": binary}
    configmaps = configmap_parts(files)
    assert len(configmaps) == 4
    assert all(configmap_bytes(configmap) <= CONFIGMAP_MAX_BYTES for configmap in configmaps)
    assert sorted(key for c in configmaps for key in c["data"] if key.startswith("0-rows")) == [
        "0-rows.jsonl.0000",
        "0-rows.jsonl.0001",
        "0-rows.jsonl.0002",
    ]
    assert [key for c in configmaps for key in c["binaryData"]] == ["1-image.bin.0000"]
    assert joined(configmaps) == files


@settings(max_examples=40, deadline=None)
@given(
    st.dictionaries(
        st.from_regex(r"[a-z0-9]{1,8}\.(jsonl|py|bin)", fullmatch=True),
        st.one_of(
            st.text(max_size=50).map(str.encode),
            st.binary(max_size=50),
            # Around a part's size, with multi-byte characters on the cut.
            st.integers(PART_BYTES - 3, PART_BYTES + 3).map(lambda n: ("é" * n).encode()),
        ),
        max_size=4,
    )
)
def test_parts_join_back_into_the_files(files: dict[str, bytes]) -> None:
    configmaps = configmap_parts(files)
    assert all(configmap_bytes(configmap) <= CONFIGMAP_MAX_BYTES for configmap in configmaps)
    assert joined(configmaps) == files


def test_more_than_the_limit_in_all_is_refused_in_one_line() -> None:
    files = {"0-rows.jsonl": b"x" * (MAX_FILES_BYTES // 2), "1-more.jsonl": b"x" * (MAX_FILES_BYTES // 2 + 1)}
    with pytest.raises(ConfigError, match=r"files come to 64.0 MiB \(0-rows.jsonl 32.0 MiB, 1-more.jsonl 32.0 MiB\)"):
        configmap_parts(files)


def test_a_requests_input_files_are_laid_out_in_the_pods_as_on_this_machine(tmp_path: Path) -> None:
    """Requests made of files: each of their files (with the data set naming them) gets a name in the pods, the
    layout file says where each lies under inputs/<request's index>/ relative to the others, and the pod's plan
    reads them there; a data set another request reads as JSON keeps its flat name too."""
    images = tmp_path / "images"
    (images / "3").mkdir(parents=True)
    for name in ("3/a.png", "3/b.png"):
        (images / name).write_bytes(b"\x89PNG" + name.encode())
    labels = images / "labels.jsonl"
    labels.write_text('{"file": "3/a.png", "label": 3}\n{"file": "3/b.png", "label": 3}\n')
    plan = plan_with_files(
        tmp_path,
        requests=[
            {"name": "json", "path": "/p", "body_template": {"x": "{{label}}"}, "dataset": str(labels)},
            {"name": "up", "path": "/up", "dataset": str(labels), "multipart": {"image": {"file": "{{file}}"}}},
            {"name": "raw", "path": "/raw", "files": str(images / "3"), "body_binary": {"file": "{{file}}"}},
        ],
    )
    assert local_files(plan) == {labels: "0-labels.jsonl", images / "3/a.png": "1-a.png", images / "3/b.png": "2-b.png"}
    files = read_plan_files(plan)
    assert files[INPUTS_LAYOUT_FILE].decode().splitlines() == [
        "0-labels.jsonl\tinputs/1/labels.jsonl",
        "1-a.png\tinputs/1/3/a.png",
        "2-b.png\tinputs/1/3/b.png",
        "1-a.png\tinputs/2/a.png",
        "2-b.png\tinputs/2/b.png",
    ]
    in_pod = pod_plan(plan, workers=2)
    assert in_pod.requests is not None
    json_request, upload, raw = in_pod.requests
    assert json_request.dataset == POD_FILES_DIR / "0-labels.jsonl"
    assert (
        upload.dataset == POD_INPUTS_DIR / "1" / "labels.jsonl"
        and upload.multipart == (plan.requests or ())[1].multipart
    )
    assert raw.files == POD_INPUTS_DIR / "2"
    assert LoadPlan.from_json(in_pod.to_json()) == in_pod
    # Without such requests there is no layout file.
    assert INPUTS_LAYOUT_FILE not in read_plan_files(plan_with_files(tmp_path, requests=[plan.requests[0]]))


def test_a_file_name_the_pods_cannot_lay_out_is_named(tmp_path: Path) -> None:
    folder = tmp_path / "up"
    folder.mkdir()
    (folder / "a\tb.png").write_bytes(b"x")
    plan = plan_with_files(
        tmp_path, requests=[{"name": "up", "path": "/up", "files": str(folder), "body_binary": {"file": "{{file}}"}}]
    )
    with pytest.raises(ConfigError, match=r"^requests\[0\] 'up': '.*a\tb\.png' has a tab or line break in its name"):
        read_plan_files(plan)
