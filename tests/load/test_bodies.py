"""Bodies made of files and form fields: rows from a folder or a data set, files read once, every body encoded
before the load as the bytes sent, read back by Starlette's own form parser (what BentoML serves with); and the
files a request needs where a load generator runs elsewhere."""

from __future__ import annotations

import asyncio
import json
import shutil
from pathlib import Path, PurePosixPath
from typing import Any

import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st
from starlette.datastructures import FormData, UploadFile
from starlette.requests import Request

from harness.config import FileInput, RequestConfig, load_scenario, parse_scenario
from harness.errors import ConfigError
from harness.load import bodies
from harness.load.bodies import (
    Part,
    encode_form,
    encode_multipart,
    folder_rows,
    input_files,
    input_layout,
    relocate,
    request_boundary,
    split_form,
    split_multipart,
)
from harness.load.reference_answers import body_key
from harness.load.requests import prepare_bodies, ready_requests

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def request(**fields: Any) -> RequestConfig:
    return RequestConfig.model_validate({"name": "upload", "path": "/upload", **fields})


def read_form(body: bytes, content_type: str) -> dict[str, Any]:
    """The body as Starlette parses it for a service: fields as text, files as (name, type, bytes)."""

    async def parse() -> FormData:
        chunks = [{"type": "http.request", "body": body, "more_body": False}]

        async def receive() -> dict[str, Any]:
            return chunks.pop(0)

        scope = {
            "type": "http",
            "method": "POST",
            "path": "/",
            "headers": [(b"content-type", content_type.encode()), (b"content-length", str(len(body)).encode())],
        }
        return await Request(scope, receive).form()

    async def values() -> dict[str, Any]:
        form = await parse()
        read = {}
        for name, value in form.multi_items():
            if isinstance(value, UploadFile):
                read[name] = (value.filename, value.content_type, await value.read())
            else:
                read[name] = value
        return read

    return asyncio.run(values())


@pytest.fixture
def images(tmp_path: Path) -> Path:
    """A folder of fake PNGs in class subfolders, with a hidden file and folder the rows leave out, and a data set
    naming them relative to its own folder."""
    folder = tmp_path / "images"
    for label in (3, 7):
        (folder / str(label)).mkdir(parents=True)
        for index in range(2):
            (folder / str(label) / f"{index}.png").write_bytes(PNG_MAGIC + bytes([label, index]) * 50)
    (folder / ".thumbs").mkdir()
    (folder / ".thumbs" / "x.png").write_bytes(b"hidden")
    (folder / ".DS_Store").write_bytes(b"hidden")
    rows = [{"path": f"{label}/{index}.png", "label": label} for label in (3, 7) for index in range(2)]
    (folder / "labels.jsonl").write_text("".join(json.dumps(row) + "\n" for row in rows))
    return folder


def test_a_folder_gives_one_row_per_file_in_name_order_without_hidden_ones(images: Path) -> None:
    rows = folder_rows(images, "requests[0].files")
    assert rows == [{"file": name} for name in ("3/0.png", "3/1.png", "7/0.png", "7/1.png", "labels.jsonl")]
    (images.parent / "empty").mkdir()
    with pytest.raises(ConfigError, match=r"requests\[0\]\.files '.*empty': no files in it"):
        folder_rows(images.parent / "empty", "requests[0].files")
    with pytest.raises(ConfigError, match="not a folder"):
        folder_rows(images / "labels.jsonl", "requests[0].files")


def test_binary_bodies_are_the_files_bytes_sent_with_their_type(images: Path) -> None:
    config = request(files=str(images / "3"), body_binary={"file": "{{file}}"})
    prepared, content_type = prepare_bodies(config, "requests[0]")
    assert content_type == "image/png"
    assert [body.body for body in prepared] == [(images / "3" / f"{i}.png").read_bytes() for i in range(2)]
    assert [body.row for body in prepared] == [{"file": "0.png"}, {"file": "1.png"}]
    mixed = request(files=str(images), body_binary={"file": "{{file}}"})
    with pytest.raises(ConfigError, match=r"of different types \(3/0\.png: image/png, labels\.jsonl: "):
        prepare_bodies(mixed, "requests[0]")
    declared = request(files=str(images), body_binary={"file": "{{file}}", "content_type": "application/octet-stream"})
    assert prepare_bodies(declared, "requests[0]")[1] == "application/octet-stream"


def test_multipart_bodies_carry_the_rows_file_and_fields_as_a_server_reads_them(images: Path) -> None:
    config = request(
        dataset=str(images / "labels.jsonl"),
        multipart={
            "image": {"file": "{{path}}", "content_type": "image/png"},
            "note": "digit {{label}}",
            "threshold": 0.5,
        },
        check={"fields": [{"field": "label", "expected_column": "label"}]},
    )
    (ready,) = ready_requests([config], {})
    content_type = ready.headers["Content-Type"]
    assert content_type == f"multipart/form-data; boundary={request_boundary('upload')}"
    assert len(ready.bodies) == 4
    for body in ready.bodies:
        assert body.row is not None and body.body is not None
        form = read_form(body.body, content_type)
        filename, file_type, content = form["image"]
        assert filename == Path(body.row["path"]).name and file_type == "image/png"
        assert content == (images / body.row["path"]).read_bytes()
        assert form["note"] == f"digit {body.row['label']}" and form["threshold"] == "0.5"
    # Prepared again (in the load generator's process): the same bytes, so the same keys for answers alone.
    (again,) = ready_requests([config], {})
    assert [body_key(b.body) for b in again.bodies] == [body_key(b.body) for b in ready.bodies]


def test_a_form_is_urlencoded_from_the_rows(tmp_path: Path) -> None:
    dataset = tmp_path / "texts.jsonl"
    dataset.write_text('{"text": "a cat & a dog"}\n{"text": "été"}\n')
    config = request(form={"text": "{{text}}", "lang": "en", "n": 3}, dataset=str(dataset))
    (ready,) = ready_requests([config], {})
    assert ready.headers["Content-Type"] == "application/x-www-form-urlencoded"
    assert ready.bodies[0].body == b"text=a+cat+%26+a+dog&lang=en&n=3"
    read = [read_form(body.body or b"", "application/x-www-form-urlencoded") for body in ready.bodies]
    assert read == [{"text": "a cat & a dog", "lang": "en", "n": "3"}, {"text": "été", "lang": "en", "n": "3"}]


def test_a_missing_column_or_file_names_the_field_and_the_row(images: Path) -> None:
    dataset = images / "labels.jsonl"
    with pytest.raises(
        ConfigError, match=r"requests\[0\]\.multipart: column 'file' is not in requests\[0\]\.dataset line 1"
    ):
        prepare_bodies(request(dataset=str(dataset), multipart={"image": {"file": "{{file}}"}}), "requests[0]")
    with pytest.raises(ConfigError, match=r"column 'path' is not in the rows of requests\[0\]\.files \(it has: file\)"):
        prepare_bodies(request(files=str(images), body_binary={"file": "{{path}}"}), "requests[0]")
    (images / "3" / "1.png").unlink()
    with pytest.raises(ConfigError, match=r"requests\[0\]\.multipart\.image: cannot read '.*3/1\.png' \(No such file"):
        prepare_bodies(request(dataset=str(dataset), multipart={"image": {"file": "{{path}}"}}), "requests[0]")


def test_each_file_is_read_once_however_many_rows_name_it(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "a.png").write_bytes(PNG_MAGIC)
    (tmp_path / "rows.jsonl").write_text('{"f": "a.png", "i": 1}\n' * 50)
    reads: list[Path] = []
    original = Path.read_bytes

    def counted(path: Path) -> bytes:
        reads.append(path)
        return original(path)

    monkeypatch.setattr(Path, "read_bytes", counted)
    prepared, _ = prepare_bodies(request(dataset=str(tmp_path / "rows.jsonl"), body_binary={"file": "{{f}}"}), "r")
    assert len(prepared) == 50 and reads == [tmp_path / "a.png"]
    assert len({id(body.body) for body in prepared}) == 1  # one copy in memory, however many rows


def test_bodies_past_the_memory_bound_stop_at_preparation(images: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(bodies, "MAX_PREPARED_BYTES", 150)
    with pytest.raises(ConfigError, match=r"requests\[0\]: its bodies add up to more than 0 MiB by row 2"):
        prepare_bodies(request(files=str(images / "3"), body_binary={"file": "{{file}}"}), "requests[0]")


@settings(max_examples=60, deadline=None)
@given(
    parts=st.lists(
        st.tuples(
            st.text(st.characters(blacklist_characters='"\\\r\n', blacklist_categories=("Cs",)), min_size=1),
            st.binary(max_size=300),
            st.none() | st.text(st.characters(whitelist_categories=("L", "N")), min_size=1, max_size=8),
        ),
        min_size=1,
        max_size=4,
    )
)
def test_a_multipart_body_splits_back_into_its_parts(parts: list[tuple[str, bytes, str | None]]) -> None:
    made = [
        Part(name, content, filename, "application/octet-stream" if filename else None)
        for name, content, filename in parts
    ]
    boundary = request_boundary("any")
    assert split_multipart(encode_multipart(made, boundary), boundary) == made


@settings(max_examples=60, deadline=None)
@given(fields=st.lists(st.tuples(st.text(min_size=1), st.text()), min_size=1, max_size=4))
def test_a_form_splits_back_into_its_fields(fields: list[tuple[str, str]]) -> None:
    made = [Part(name, value.encode("utf-8", errors="surrogateescape")) for name, value in fields]
    assert [(p.name, p.content) for p in split_form(encode_form(made))] == [(p.name, p.content) for p in made]


# --------------------------------------------------------------------------- schema


def scenario_with(*requests: dict[str, Any]) -> dict[str, Any]:
    return {
        "name": "files",
        "service": {"path": ".", "service": "service:S"},
        "stages": [{"name": "s", "duration_s": 1, "users": 1, "spawn_rate": 1}],
        "requests": list(requests),
    }


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"multipart": {"a": "x"}, "form": {"a": "x"}}, r"give one body .*, not multipart and form"),
        ({"body_binary": {"file": "a.png"}, "body_file": "b.jsonl"}, r"not body_file and body_binary"),
        ({"files": "imgs", "body_template": {"a": 1}, "dataset": "d.jsonl"}, r"from a dataset or from a files folder"),
        ({"files": "imgs"}, r"files gives one row per file; send it with body_binary or multipart"),
        ({"body_binary": {"file": "{{f}}"}}, r"needs a dataset or a files folder"),
        ({"multipart": {"a": {"file": "x.png", "filename": "{{n}}"}}}, r"needs a dataset or a files folder"),
        ({"method": "GET", "multipart": {"a": "x"}}, r"a GET request has no body"),
        ({"multipart": {"a": "x"}, "headers": {"content-type": "multipart/form-data"}}, r"is the harness's to set"),
        ({"multipart": {}}, r"field 'requests\[0\]\.multipart'"),
        ({"multipart": {'a"b': "x"}}, r"requests\[0\]\.multipart"),
        ({"body_binary": {"file": "a", "content_type": "png"}}, r"requests\[0\]\.body_binary\.content_type"),
        ({"form": {"a": True}}, r"requests\[0\]\.form\.a"),
    ],
)
def test_body_mistakes_name_the_field(fields: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        parse_scenario(scenario_with({"name": "up", "path": "/up", **fields}))


def test_literal_files_resolve_against_the_scenario_and_row_files_against_their_folder(
    tmp_path: Path, images: Path
) -> None:
    (tmp_path / "logo.png").write_bytes(PNG_MAGIC)
    literal = {"name": "logo", "path": "/up", "multipart": {"image": {"file": "logo.png"}, "n": 1}}
    rows = {"name": "rows", "path": "/up", "files": "images/3", "body_binary": {"file": "{{file}}"}}
    path = tmp_path / "scenario.yaml"
    path.write_text(yaml.safe_dump(scenario_with(literal, rows)))
    scenario = load_scenario(path)
    assert scenario.requests is not None
    first, second = scenario.requests
    assert first.multipart is not None and first.multipart["image"] == FileInput(file=str(tmp_path / "logo.png"))
    assert second.files == images / "3" and second.body_binary is not None and second.body_binary.file == "{{file}}"
    ready = ready_requests(scenario.requests, {})
    assert read_form(ready[0].bodies[0].body or b"", ready[0].headers["Content-Type"])["image"][2] == PNG_MAGIC
    assert len(ready[1].bodies) == 2


# --------------------------------------------------------------------------- elsewhere


def test_a_request_relocated_with_its_files_prepares_the_same_bodies(tmp_path: Path, images: Path) -> None:
    """What an in-cluster delivery does: copy input_files under a folder of its own keeping their layout (as
    input_layout gives it), relocate the request there."""
    (tmp_path / "logo.png").write_bytes(PNG_MAGIC + b"logo")
    configs = [
        request(
            dataset=str(images / "labels.jsonl"),
            multipart={"image": {"file": "{{path}}"}, "label": "{{label}}"},
            name="rows",
        ),
        request(files=str(images / "7"), body_binary={"file": "{{file}}"}, name="folder"),
        request(multipart={"logo": {"file": str(tmp_path / "logo.png")}}, name="literal"),
    ]
    needed = [input_files(config) for config in configs]
    assert needed[0] == [images / "labels.jsonl", *(images / f"{label}/{i}.png" for label in (3, 7) for i in (0, 1))]
    assert needed[1] == [images / "7" / "0.png", images / "7" / "1.png"]
    assert needed[2] == [tmp_path / "logo.png"]
    before = ready_requests(configs, {})
    layouts = [input_layout(config) for config in configs]
    assert [root for root, _ in layouts] == [images, images / "7", tmp_path]
    assert list(layouts[0][1].values())[:2] == [PurePosixPath("labels.jsonl"), PurePosixPath("3/0.png")]
    pods = [tmp_path / "pod" / str(index) for index in range(len(configs))]
    for (_, relative), pod in zip(layouts, pods, strict=True):
        for file, path in relative.items():
            (pod / path).parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(file, pod / path)
    shutil.rmtree(images)
    (tmp_path / "logo.png").unlink()
    moved = [relocate(config, root, pod) for config, (root, _), pod in zip(configs, layouts, pods, strict=True)]
    assert moved[0].dataset == pods[0] / "labels.jsonl" and moved[1].files == pods[1]
    after = ready_requests(moved, {})
    assert [[b.body for b in r.bodies] for r in after] == [[b.body for b in r.bodies] for r in before]
    assert [len(r.bodies) for r in after] == [4, 2, 1]
