"""Integration tests of the digits example service (examples/digits) served by a real `bentoml serve`:
predictions, 4xx answers to every kind of bad input, metrics, adaptive batching and the load-shaping knobs."""

from __future__ import annotations

import io
import json
import os
import re
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import psutil
import pytest
from PIL import Image
from sklearn.datasets import load_digits

from harness.load.bodies import Part, encode_multipart

if TYPE_CHECKING:
    from conftest import BentoServers, ServedBento

pytestmark = pytest.mark.integration

DIGITS_DIR = Path(__file__).resolve().parents[2] / "examples" / "digits"
SERVICE = "service:DigitsClassifier"
# The service never trains on rows whose index is a multiple of this (HELD_OUT_EVERY in service.py).
HELD_OUT_EVERY = 5
REQUEST_TIMEOUT_S = 30.0
# The knob servers: each image costs this much CPU; on one of them a BentoML config override shortens the request
# timeout from the service's 10 s.
EXTRA_WORK_MS = 100
OVERRIDDEN_TIMEOUT_S = 2
# Requests a cold knob server gets before its tests, until one is answered in time.
WARM_UP_ATTEMPTS = 10


def _held_out() -> tuple[np.ndarray[Any, Any], np.ndarray[Any, Any]]:
    pixels, labels = load_digits(return_X_y=True)
    rows = np.arange(len(pixels)) % HELD_OUT_EVERY == 0
    return pixels[rows], labels[rows]


HELD_OUT_PIXELS, HELD_OUT_LABELS = _held_out()


def post(base_url: str, body: bytes, content_type: str | None = "application/json") -> tuple[int, str]:
    headers = {"Content-Type": content_type} if content_type else {}
    request = urllib.request.Request(f"{base_url}/classify", data=body, headers=headers, method="POST")
    try:
        with urllib.request.urlopen(request, timeout=REQUEST_TIMEOUT_S) as response:
            return int(response.status), response.read().decode()
    except urllib.error.HTTPError as error:
        return int(error.code), error.read().decode()


def classify(base_url: str, pixels: np.ndarray[Any, Any]) -> dict[str, Any]:
    status, text = post(base_url, json.dumps({"images": pixels.tolist()}).encode())
    assert status == 200, f"/classify answered {status}: {text}"
    answer: dict[str, Any] = json.loads(text)
    return answer


def get_text(url: str) -> str:
    with urllib.request.urlopen(url, timeout=REQUEST_TIMEOUT_S) as response:
        assert response.status == 200, f"GET {url} answered {response.status}"
        return str(response.read().decode())


def metric_value(metrics_text: str, name: str, **labels: str) -> float:
    """Sum of the samples of `name` whose labels include `labels`; fails when there is none."""
    total = None
    for line in metrics_text.splitlines():
        match = re.match(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{.*\})?\s+(\S+)$", line)
        if not match or match.group(1) != name:
            continue
        if all(f'{key}="{value}"' in (match.group(2) or "") for key, value in labels.items()):
            total = (total or 0.0) + float(match.group(3))
    assert total is not None, f"no sample of {name} with labels {labels} in /metrics"
    return total


def tree_cpu_s(process: subprocess.Popen[bytes]) -> float:
    """CPU seconds used so far by the server process and all its descendants (the workers)."""
    root = psutil.Process(process.pid)
    total = 0.0
    for member in [root, *root.children(recursive=True)]:
        try:
            times = member.cpu_times()
        except psutil.NoSuchProcess:
            continue
        total += times.user + times.system
    return total


@pytest.fixture(scope="module")
def digits(bentoml_servers: BentoServers) -> ServedBento:
    """The service with its defaults: logistic regression, no extra work, access log off."""
    return bentoml_servers.start(DIGITS_DIR, SERVICE)


@pytest.fixture(scope="module")
def knob_server(bentoml_servers: BentoServers) -> ServedBento:
    """The CPU-heavier variant, with a BentoML config override passed the way the harness passes them; its
    requests keep the service's 10 s timeout."""
    env = {
        "DIGITS_MODEL": "forest",
        "DIGITS_EXTRA_WORK_MS": str(EXTRA_WORK_MS),
        "BENTOML_CONFIG_OPTIONS": "services.DigitsClassifier.logging.access.enabled=true",
    }
    served = bentoml_servers.start(DIGITS_DIR, SERVICE, env=env)
    # A cold server's first answer (the forest's first prediction, BentoML's first request) took over 2 s on the
    # loaded machine (CI30 and CI33): warm it up before the tests measure its requests.
    body = json.dumps({"images": HELD_OUT_PIXELS[:1].tolist()}).encode()
    for _ in range(WARM_UP_ATTEMPTS):
        if post(served.base_url, body)[0] == 200:
            break
    return served


@pytest.fixture(scope="module")
def short_timeout_server(bentoml_servers: BentoServers) -> ServedBento:
    """Extra work per image and the request timeout shortened to OVERRIDDEN_TIMEOUT_S by a BentoML config
    override: a server of its own, since a healthy answer must not race a 2 s timeout on a loaded machine (two
    images of extra work took 0.3-0.9 s here at load 13-16; a cold answer took over 2 s in CI30 and CI33)."""
    env = {
        "DIGITS_EXTRA_WORK_MS": str(EXTRA_WORK_MS),
        "BENTOML_CONFIG_OPTIONS": f"services.DigitsClassifier.traffic.timeout={OVERRIDDEN_TIMEOUT_S}",
    }
    return bentoml_servers.start(DIGITS_DIR, SERVICE, env=env)


# --------------------------------------------------------------------------- predictions


def test_held_out_digits_are_classified_accurately(digits: ServedBento) -> None:
    predicted: list[int] = []
    for start in range(0, len(HELD_OUT_PIXELS), 24):
        batch = HELD_OUT_PIXELS[start : start + 24]
        answer = classify(digits.base_url, batch)
        assert set(answer) == {"labels", "probabilities"}
        assert len(answer["labels"]) == len(answer["probabilities"]) == len(batch)
        for label, row in zip(answer["labels"], answer["probabilities"], strict=True):
            assert len(row) == 10
            assert abs(sum(row) - 1.0) < 0.01
            assert label == int(np.argmax(row))
        predicted.extend(answer["labels"])
    accuracy = float(np.mean(np.asarray(predicted) == HELD_OUT_LABELS))
    assert accuracy > 0.9, f"held-out accuracy {accuracy:.3f}"


def test_answers_are_json_and_the_schema_documents_them(digits: ServedBento) -> None:
    request = urllib.request.Request(
        f"{digits.base_url}/classify",
        data=json.dumps({"images": HELD_OUT_PIXELS[:2].tolist()}).encode(),
        headers={"Content-Type": "application/json"},
        method="POST",
    )
    with urllib.request.urlopen(request, timeout=REQUEST_TIMEOUT_S) as response:
        assert response.headers.get_content_type() == "application/json"
        assert set(json.loads(response.read())) == {"labels", "probabilities"}
    schema = json.loads(get_text(f"{digits.base_url}/docs.json"))
    answer = schema["paths"]["/classify"]["post"]["responses"]["200"]["content"]["application/json"]["schema"]
    assert set(answer["properties"]) == {"labels", "probabilities"}


def test_integer_pixels_are_accepted(digits: ServedBento) -> None:
    status, text = post(digits.base_url, json.dumps({"images": [[int(v) for v in HELD_OUT_PIXELS[0]]]}).encode())
    assert status == 200, text
    assert json.loads(text)["labels"] == [int(HELD_OUT_LABELS[0])]


# --------------------------------------------------------------------------- invalid input

_IMAGE = [float(v) for v in HELD_OUT_PIXELS[0]]
_PIXELS_63 = ",".join("1.0" for _ in range(63))


def _with_last_pixel(value: Any) -> bytes:
    return json.dumps({"images": [[*_IMAGE[:-1], value]]}).encode()


INVALID_BODIES: dict[str, tuple[bytes, str | None, list[str]]] = {
    # case: (body, Content-Type, fragments the answer must contain)
    "image_too_short": (json.dumps({"images": [_IMAGE[:10]]}).encode(), "application/json", ["at least 64"]),
    "image_too_long": (json.dumps({"images": [[*_IMAGE, 1.0]]}).encode(), "application/json", ["at most 64"]),
    "images_not_nested": (json.dumps({"images": _IMAGE}).encode(), "application/json", ["valid array"]),
    "images_nested_too_deep": (json.dumps({"images": [[_IMAGE]]}).encode(), "application/json", ["valid number"]),
    "images_is_string": (b'{"images": "abc"}', "application/json", ["valid array"]),
    "pixel_is_string": (_with_last_pixel("3"), "application/json", ["valid number", '["images",0,63]']),
    "pixel_is_boolean": (_with_last_pixel(True), "application/json", ["valid number", '["images",0,63]']),
    "pixel_is_null": (_with_last_pixel(None), "application/json", ["valid number", '["images",0,63]']),
    "pixel_is_nan": (f'{{"images": [[{_PIXELS_63},NaN]]}}'.encode(), "application/json", ["finite number"]),
    "pixel_is_infinity": (f'{{"images": [[{_PIXELS_63},Infinity]]}}'.encode(), "application/json", ["finite"]),
    "pixel_above_16": (_with_last_pixel(17.0), "application/json", ["less than or equal to 16"]),
    "pixel_negative": (_with_last_pixel(-1.0), "application/json", ["greater than or equal to 0"]),
    "field_missing": (json.dumps({"pictures": [_IMAGE]}).encode(), "application/json", ["images", "Field required"]),
    "images_empty": (b'{"images": []}', "application/json", ["at least 1 item"]),
    "too_many_images": (json.dumps({"images": [_IMAGE] * 257}).encode(), "application/json", ["at most 256"]),
    "body_not_json": (b"hello world", "application/json", ["Invalid JSON"]),
    "body_not_utf8": (b'{"images": "\xff\xfe"}', "application/json", ["Invalid JSON"]),
    "body_empty": (b"", "application/json", ["Field required"]),
    "body_is_array": (json.dumps([_IMAGE]).encode(), "application/json", ["should be an object"]),
    "body_is_null": (b"null", "application/json", ["should be an object"]),
    # BentoML itself answers 500 to a multipart Content-Type without a boundary.
    "multipart_without_boundary": (b"garbage", "multipart/form-data", ["multipart/form-data", "application/json"]),
    "form_encoded": (b"images=1", "application/x-www-form-urlencoded", ["not supported", "application/json"]),
    "plain_text": (json.dumps({"images": [_IMAGE]}).encode(), "text/plain", ["text/plain", "not supported"]),
    "pickle": (b"\x80\x04N.", "application/vnd.bentoml+pickle", ["not supported"]),
}


@pytest.mark.parametrize("case", list(INVALID_BODIES))
def test_invalid_input_gets_4xx_naming_the_problem(digits: ServedBento, case: str) -> None:
    body, content_type, fragments = INVALID_BODIES[case]
    status, text = post(digits.base_url, body, content_type)
    assert 400 <= status < 500, f"{case}: status {status}, body {text}"
    for fragment in fragments:
        assert fragment in text, f"{case}: {fragment!r} not in {text}"


def test_service_still_answers_after_invalid_input(digits: ServedBento) -> None:
    for body, content_type, _ in INVALID_BODIES.values():
        post(digits.base_url, body, content_type)
    answer = classify(digits.base_url, HELD_OUT_PIXELS[:3])
    assert len(answer["labels"]) == 3


# --------------------------------------------------------------------------- image uploads

IMAGES_DIR = DIGITS_DIR / "images"
BOUNDARY = "digits-test-7f3a"
PNG = (IMAGES_DIR / "0010.png").read_bytes()


def upload(
    base_url: str, body: bytes, content_type: str = f"multipart/form-data; boundary={BOUNDARY}"
) -> tuple[int, str]:
    request = urllib.request.Request(
        f"{base_url}/classify_image", data=body, headers={"Content-Type": content_type}, method="POST"
    )
    try:
        with urllib.request.urlopen(request, timeout=REQUEST_TIMEOUT_S) as response:
            return int(response.status), response.read().decode()
    except urllib.error.HTTPError as error:
        return int(error.code), error.read().decode()


def image_part(content: bytes, name: str = "image") -> Part:
    return Part(name, content, "digit.png", "image/png")


def big_png() -> bytes:
    buffer = io.BytesIO()
    Image.new("L", (600, 600)).save(buffer, format="PNG")
    return buffer.getvalue()


def test_an_uploaded_png_is_classified_as_its_pixels_are(digits: ServedBento) -> None:
    rows = [json.loads(line) for line in (IMAGES_DIR / "labels.jsonl").read_text().splitlines()][:20]
    pixels, _ = load_digits(return_X_y=True)
    expected = classify(digits.base_url, pixels[[row["row"] for row in rows]])
    for index, row in enumerate(rows):
        content = (IMAGES_DIR / row["file"]).read_bytes()
        status, text = upload(digits.base_url, encode_multipart([image_part(content)], BOUNDARY))
        assert status == 200, text
        answer = json.loads(text)
        assert answer["label"] == expected["labels"][index], row
        # Grey levels round each pixel by at most 1/32 of a step: the probabilities barely move.
        assert np.allclose(answer["probabilities"], expected["probabilities"][index], atol=0.01), row


INVALID_UPLOADS: dict[str, tuple[list[Part] | bytes, str | None, int, list[str]]] = {
    # case: (parts or body, Content-Type (None: multipart with the boundary), status, fragments of the answer)
    "truncated": ([image_part(PNG[: len(PNG) // 2])], None, 400, ["not a readable image", "truncated"]),
    "not_an_image": ([image_part(b"hello, not a picture")], None, 400, ["not a readable image"]),
    "empty_file": ([image_part(b"")], None, 400, ["not a readable image"]),
    "image_missing": ([Part("note", b"seven")], None, 400, ["image", "Field required"]),
    "name_instead_of_file": ([Part("image", b"digit.png")], None, 400, ["uploaded as a file"]),
    "two_files": ([image_part(PNG), image_part(PNG, "other")], None, 400, ["Maximum number of files is 1"]),
    "too_large": ([image_part(PNG + bytes(300_000))], None, 413, ["at most 262144"]),
    "too_many_pixels": ([image_part(big_png())], None, 400, ["600x600", "at most 512"]),
    "no_boundary": ([image_part(PNG)], "multipart/form-data", 400, ["boundary"]),
    "not_multipart": (b"garbage", None, 400, ["not a valid multipart"]),
    "json": (b'{"image": "http://127.0.0.1/x.png"}', "application/json", 415, ["multipart/form-data"]),
}


@pytest.mark.parametrize("case", list(INVALID_UPLOADS))
def test_broken_uploads_get_4xx_naming_the_problem(digits: ServedBento, case: str) -> None:
    parts, content_type, expected_status, fragments = INVALID_UPLOADS[case]
    body = parts if isinstance(parts, bytes) else encode_multipart(parts, BOUNDARY)
    status, text = upload(digits.base_url, body, *([content_type] if content_type else []))
    assert status == expected_status, f"{case}: status {status}, body {text}"
    for fragment in fragments:
        assert fragment in text, f"{case}: {fragment!r} not in {text}"


# --------------------------------------------------------------------------- operations


def test_metrics_expose_request_duration(digits: ServedBento) -> None:
    classify(digits.base_url, HELD_OUT_PIXELS[:1])
    metrics = get_text(digits.base_url + "/metrics")
    count = metric_value(metrics, "bentoml_service_request_duration_seconds_count", endpoint="/classify")
    assert count >= 1.0
    get_text(digits.base_url + "/livez")


def test_concurrent_requests_are_batched(digits: ServedBento) -> None:
    def batch_counts() -> tuple[float, float]:
        metrics = get_text(digits.base_url + "/metrics")
        labels = {"method_name": "classify"}
        total = metric_value(metrics, "bentoml_service_adaptive_batch_size_count", **labels)
        singles = metric_value(metrics, "bentoml_service_adaptive_batch_size_bucket", le="1.0", **labels)
        return total, singles

    classify(digits.base_url, HELD_OUT_PIXELS[:1])  # the histogram exists only after a first batch
    total_before, singles_before = batch_counts()

    rows = [row % len(HELD_OUT_PIXELS) for row in range(256)]

    def client(first: int) -> list[tuple[int, int]]:
        # Each of the 32 clients sends 8 one-image requests, one after the other.
        return [
            (row, classify(digits.base_url, HELD_OUT_PIXELS[row : row + 1])["labels"][0]) for row in rows[first::32]
        ]

    with ThreadPoolExecutor(max_workers=32) as pool:
        answers = [answer for client_answers in pool.map(client, range(32)) for answer in client_answers]
    assert len(answers) == 256
    accuracy = np.mean([label == HELD_OUT_LABELS[row] for row, label in answers])
    assert accuracy > 0.9, f"accuracy under concurrency {accuracy:.3f}"
    total_after, singles_after = batch_counts()
    batches = total_after - total_before
    assert 0 < batches < 256, f"{batches} batches for 256 requests: none were combined"
    assert batches > singles_after - singles_before, "every batch held a single request"


def test_requests_split_across_batches_keep_their_answers(digits: ServedBento) -> None:
    # 37-image requests do not fit twice into a 64-image batch, so BentoML splits and re-joins them.
    chunks = [HELD_OUT_PIXELS[i : i + 37] for i in range(0, 37 * 8, 37)]
    alone = [classify(digits.base_url, chunk) for chunk in chunks]
    with ThreadPoolExecutor(max_workers=8) as pool:
        together = list(pool.map(lambda chunk: classify(digits.base_url, chunk), chunks))
    assert together == alone


def test_access_log_is_off_by_default(digits: ServedBento) -> None:
    classify(digits.base_url, HELD_OUT_PIXELS[:1])
    time.sleep(1.0)
    assert "path=/classify" not in digits.log_text()


# --------------------------------------------------------------------------- knobs and config overrides


def test_extra_work_burns_cpu_per_image(knob_server: ServedBento) -> None:
    # Two images, 0.2 s of CPU, inside the service's 10 s timeout even at a fortieth of a core.
    images = 2
    cpu_before_s = tree_cpu_s(knob_server.process)
    answer = classify(knob_server.base_url, HELD_OUT_PIXELS[:images])
    used_s = tree_cpu_s(knob_server.process) - cpu_before_s
    assert used_s >= 0.9 * images * EXTRA_WORK_MS / 1000, f"only {used_s:.3f}s CPU for {images} images"
    correct = sum(int(a == b) for a, b in zip(answer["labels"], HELD_OUT_LABELS[:images], strict=True))
    assert correct >= images - 1, f"forest model: {answer['labels']} vs {HELD_OUT_LABELS[:images].tolist()}"


def test_access_log_can_be_enabled_through_bentoml_config(knob_server: ServedBento) -> None:
    classify(knob_server.base_url, HELD_OUT_PIXELS[:1])
    deadline_s = time.monotonic() + 10.0
    while "path=/classify" not in knob_server.log_text():
        assert time.monotonic() < deadline_s, "no access log line for /classify within 10s"
        time.sleep(0.2)


def test_timeout_can_be_overridden_through_bentoml_config(short_timeout_server: ServedBento) -> None:
    images = 2 * OVERRIDDEN_TIMEOUT_S * 1000 // EXTRA_WORK_MS  # twice the timeout's worth of CPU work
    body = json.dumps({"images": HELD_OUT_PIXELS[:images].tolist()}).encode()
    started_s = time.monotonic()
    status, text = post(short_timeout_server.base_url, body)
    elapsed_s = time.monotonic() - started_s
    assert status == 504, f"status {status}: {text}"
    assert f"{OVERRIDDEN_TIMEOUT_S} seconds" in text
    assert elapsed_s < 3 * OVERRIDDEN_TIMEOUT_S


def test_unknown_model_name_fails_fast_naming_the_variable(tmp_path: Path) -> None:
    env = {**os.environ, "BENTOML_HOME": str(tmp_path), "BENTOML_DO_NOT_TRACK": "True", "DIGITS_MODEL": "bogus"}
    command = [sys.executable, "-m", "bentoml", "serve", SERVICE, "--host", "127.0.0.1", "--port", "0"]
    process = subprocess.Popen(
        command, cwd=DIGITS_DIR, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True
    )
    try:
        output, _ = process.communicate(timeout=60)
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
    assert process.returncode != 0
    assert "DIGITS_MODEL='bogus'" in output.decode(errors="replace")
