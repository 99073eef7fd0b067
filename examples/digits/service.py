"""Example model service for the harness: a scikit-learn digits classifier behind BentoML adaptive batching
(/classify, JSON pixels), and the same model for one uploaded image (/classify_image, multipart/form-data).

Knobs (environment): DIGITS_MODEL=logistic|forest, DIGITS_EXTRA_WORK_MS=<CPU ms burnt per image>.
"""

from __future__ import annotations

import gc
import json
import os
import time
from typing import TYPE_CHECKING, Annotated, Any, cast

import bentoml
import numpy as np
from bentoml.validators import ContentType
from PIL import Image as PILImage
from pydantic import BaseModel, Field, PlainSerializer, ValidatorFunctionWrapHandler, WithJsonSchema, WrapValidator
from starlette.exceptions import HTTPException
from starlette.formparsers import MultiPartException
from starlette.requests import Request
from starlette.types import ASGIApp, Message, Receive, Scope, Send

if TYPE_CHECKING:
    from sklearn.ensemble import RandomForestClassifier
    from sklearn.linear_model import LogisticRegression

PIXELS_PER_IMAGE = 64
MAX_PIXEL_VALUE = 16.0
MAX_IMAGES_PER_REQUEST = 256
# Rows whose index is a multiple of this are never trained on, so clients can measure accuracy on them.
HELD_OUT_EVERY = 5
SEED = 0

# Strict floats: JSON strings, booleans and null are type errors, not silently coerced numbers.
Pixel = Annotated[float, Field(ge=0.0, le=MAX_PIXEL_VALUE, allow_inf_nan=False, strict=True)]
Image = Annotated[list[Pixel], Field(min_length=PIXELS_PER_IMAGE, max_length=PIXELS_PER_IMAGE)]
Images = Annotated[
    list[Image],
    Field(min_length=1, max_length=MAX_IMAGES_PER_REQUEST, description="8x8 images flattened row-wise, values 0..16"),
]


class Prediction(BaseModel):
    """The classifier's answer for one image."""

    label: int
    probabilities: list[float]


class Classification(BaseModel):
    """Response body of /classify: a label and a row of ten class probabilities per image, in request order."""

    labels: list[int]
    probabilities: list[list[float]]


def _as_classification(predictions: list[Prediction]) -> Classification:
    return Classification(labels=[p.label for p in predictions], probabilities=[p.probabilities for p in predictions])


# The batched method must return one list item per image: BentoML slices the return value per request (and
# re-joins the parts of a request split across two batches) as a list. Each request's part is then rendered,
# and documented in the OpenAPI schema, as one Classification. The ContentType is not decoration: without a
# media type BentoML finds the response's by building this type's JSON schema anew for every response (a new
# pydantic TypeAdapter each time), which took a quarter of the worker's time under load.
Predictions = Annotated[
    list[Prediction],
    PlainSerializer(_as_classification, return_type=Classification),
    WithJsonSchema(Classification.model_json_schema()),
    ContentType("application/json"),
]


# The image upload: the route, the largest body it reads (a proxy's body limit: larger ones get 413 unread) and
# the largest side of an image it decodes (a small file can hold a huge image, a "decompression bomb").
IMAGE_ROUTE = "/classify_image"
MAX_UPLOAD_BYTES = 256 * 1024
MAX_IMAGE_SIDE = 512


def _readable_image(value: Any, handler: ValidatorFunctionWrapHandler) -> PILImage.Image:
    """The uploaded image, decoded now, or a validation error (400) naming what is wrong with it.

    BentoML opens the file with Pillow and lets its errors through: a file that is not an image, or is cut short,
    would otherwise answer 500 (on open) or fail in the model's code (on first use). Anything Pillow raises while
    reading uploaded bytes is the upload's fault.
    """
    try:
        image: PILImage.Image = handler(value)
        width, height = image.size
        if max(width, height) > MAX_IMAGE_SIDE:
            raise ValueError(f"the image is {width}x{height} pixels; at most {MAX_IMAGE_SIDE} a side")
        image.load()
    except ValueError:
        raise
    except Exception as error:
        raise ValueError(f"not a readable image ({type(error).__name__}: {error})") from None
    return image


# Pillow's image type is what makes BentoML read this argument as a file part of a multipart/form-data body.
ImageUpload = Annotated[PILImage.Image, WrapValidator(_readable_image)]
# As for Predictions: a media type spares BentoML building the answer's JSON schema anew for every answer.
ImagePrediction = Annotated[Prediction, ContentType("application/json")]


def image_pixels(image: PILImage.Image) -> np.ndarray[Any, np.dtype[np.float64]]:
    """An image as the data set's 64 pixel values, 0 (background, black) to 16 (ink, white): in grey levels,
    each of 8x8 blocks averaged, as the data set's images were made from larger scans."""
    grey = image.convert("L").resize((8, 8), PILImage.Resampling.BOX)
    pixels: np.ndarray[Any, np.dtype[np.float64]] = np.asarray(grey, dtype=np.float64).reshape(PIXELS_PER_IMAGE)
    return pixels * (MAX_PIXEL_VALUE / 255.0)


def held_out_mask(n_rows: int) -> np.ndarray[Any, np.dtype[np.bool_]]:
    """Which rows of the digits data set the service keeps out of training."""
    mask: np.ndarray[Any, np.dtype[np.bool_]] = np.arange(n_rows) % HELD_OUT_EVERY == 0
    return mask


def _read_extra_work_ms() -> float:
    raw = os.environ.get("DIGITS_EXTRA_WORK_MS", "0")
    try:
        value = float(raw)
    except ValueError:
        raise ValueError(f"DIGITS_EXTRA_WORK_MS={raw!r}: expected a number of milliseconds >= 0") from None
    if not (value >= 0.0 and np.isfinite(value)):
        raise ValueError(f"DIGITS_EXTRA_WORK_MS={raw!r}: expected a number of milliseconds >= 0")
    return value


MODEL_NAMES = ("logistic", "forest")


def _read_model_name() -> str:
    name = os.environ.get("DIGITS_MODEL", "logistic")
    if name not in MODEL_NAMES:
        raise ValueError(f"DIGITS_MODEL={name!r}: expected one of {', '.join(MODEL_NAMES)}")
    return name


# Garbage collection thresholds of the serving worker (generation 0 allocations, then collections of the
# generation below), set once the model is loaded.
GC_THRESHOLDS = (50_000, 20, 100)

# Read at import so that `bentoml serve` exits at once on a bad value instead of restarting workers forever.
MODEL_NAME = _read_model_name()
EXTRA_WORK_MS = _read_extra_work_ms()


def _train(model_name: str) -> LogisticRegression | RandomForestClassifier:
    # scikit-learn takes about 2 s to import: only the serving worker needs it, not the `bentoml serve` process
    # that imports this module merely to read the service's configuration.
    from sklearn.datasets import load_digits
    from sklearn.ensemble import RandomForestClassifier
    from sklearn.linear_model import LogisticRegression

    model: LogisticRegression | RandomForestClassifier
    if model_name == "forest":
        model = RandomForestClassifier(n_estimators=100, random_state=SEED, n_jobs=1)
    else:
        model = LogisticRegression(C=1.0, max_iter=2000)
    pixels, labels = load_digits(return_X_y=True)
    train = ~held_out_mask(len(pixels))
    return model.fit(pixels[train] / MAX_PIXEL_VALUE, labels[train])


def burn_cpu(duration_ms: float) -> None:
    """Do real arithmetic until this thread has used `duration_ms` of CPU time (not wall time)."""
    if duration_ms <= 0:
        return
    deadline_s = time.thread_time() + duration_ms / 1000.0
    block = np.linspace(0.0, 1.0, 4096)
    while time.thread_time() < deadline_s:
        block = np.sin(block) * 0.5 + 0.25


async def _refuse(send: Send, status: int, message: str) -> None:
    body = json.dumps({"error": message}).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


def body_refusal(path: str, content_type: str, content_length: str | None) -> tuple[int, str] | None:
    """Why a POST is refused before BentoML reads it (status, message), or None to let it through.

    The image route takes multipart/form-data only, with its boundary (BentoML answers 500 without one), up to
    MAX_UPLOAD_BYTES and with its length announced; every other route takes JSON only (BentoML would otherwise
    parse forms there, and a form's string fields become URLs it downloads). A missing Content-Type is JSON, as
    BentoML takes it.
    """
    media_type = content_type.split(";")[0].strip().lower()
    if path.rstrip("/") == IMAGE_ROUTE:
        if media_type != "multipart/form-data":
            return 415, f"Content-Type {media_type!r} is not supported: upload the image as multipart/form-data"
        if "boundary=" not in content_type.lower():
            return 400, "Content-Type multipart/form-data needs its boundary parameter"
        if content_length is None or not content_length.isdigit():
            return 411, "a Content-Length is required"
        if int(content_length) > MAX_UPLOAD_BYTES:
            return 413, f"the upload is {content_length} bytes; at most {MAX_UPLOAD_BYTES} are accepted"
        return None
    if media_type and media_type != "application/json" and not media_type.endswith("+json"):
        return 415, f"Content-Type {media_type!r} is not supported: send the request body as application/json"
    return None


async def upload_refusal(scope: Scope, messages: list[Message]) -> tuple[int, str] | None:
    """Why an upload's form is refused (status, message), or None: the image must be a file part. BentoML would
    take a text field there for a URL to download (curl's `-F image=digit.png` for `-F image=@digit.png` sends the
    name as text): any URL a client names fetched by the server, anything else a 500."""
    pending = list(messages)

    async def replay() -> Message:
        return pending.pop(0) if pending else {"type": "http.disconnect"}

    try:
        form = await Request(scope, replay).form(max_files=1, max_fields=8)
    except (MultiPartException, HTTPException) as error:
        return 400, f"not a valid multipart/form-data body ({getattr(error, 'message', None) or error})"
    try:
        if isinstance(form.get("image"), str):
            return 400, "the image must be uploaded as a file (a part with a filename), not as a text field"
    finally:
        await form.close()
    return None


class CheckRequestBody:
    """ASGI middleware answering 4xx to POST bodies the routes do not take (`body_refusal`) before they are read,
    and to uploads whose image is not a file (`upload_refusal`) before BentoML parses them."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] != "POST":
            await self.app(scope, receive, send)
            return
        headers = dict(scope["headers"])
        length = headers.get(b"content-length")
        refusal = body_refusal(
            scope["path"],
            headers.get(b"content-type", b"").decode("latin-1"),
            None if length is None else length.decode("latin-1"),
        )
        if refusal is not None:
            await _refuse(send, *refusal)
            return
        if scope["path"].rstrip("/") != IMAGE_ROUTE:
            await self.app(scope, receive, send)
            return
        # At most MAX_UPLOAD_BYTES (body_refusal checked its length): read it once, check it, pass it on.
        messages = []
        while True:
            message = await receive()
            messages.append(message)
            if message["type"] != "http.request" or not message.get("more_body"):
                break
        refusal = await upload_refusal(scope, messages)
        if refusal is not None:
            await _refuse(send, *refusal)
            return

        async def replay() -> Message:
            return messages.pop(0) if messages else await receive()

        await self.app(scope, replay, send)


@bentoml.service(
    # BentoML keeps each request's timeout timer, and with it the request's context and trace span, alive for
    # the whole timeout even after the answer (bentoml 1.4 TimeoutMiddleware never cancels it): at 300 rps a
    # 30 s timeout kept 100,000+ objects alive for every full garbage collection to walk. 10 s is still
    # about 10 times the longest wait adaptive batching allows (max_latency_ms).
    traffic={"timeout": 10, "concurrency": 32},
    # Access logs cost noticeable CPU per request under load; enable them through BentoML config if needed.
    logging={"access": {"enabled": False}},
)
class DigitsClassifier:
    """Classifies 8x8 handwritten digits; trained at start-up from scikit-learn's bundled data set."""

    def __init__(self) -> None:
        self.extra_work_ms = EXTRA_WORK_MS
        self.model = _train(MODEL_NAME)
        # Everything alive now (BentoML, scikit-learn, scipy, the model: a few hundred thousand objects) lives
        # as long as the worker. Frozen, Python's full collections skip it: unfrozen, each one walked all of it,
        # stalling every request in flight for 100-600 ms every few seconds under load.
        gc.collect()
        gc.freeze()
        # Requests' objects that BentoML keeps alive for the traffic timeout still made a full collection of
        # 100-250 ms about every second at 16 users (Python's default thresholds, 700/10/10); collecting
        # less often leaves most of them freed by reference counting first (5 full collections in 30 s).
        gc.set_threshold(GC_THRESHOLDS[0], GC_THRESHOLDS[1], GC_THRESHOLDS[2])

    # bentoml ships no type information (mypy sees Any), hence the ignore.
    @bentoml.api(batchable=True, max_batch_size=64, max_latency_ms=1000)  # type: ignore[untyped-decorator]
    def classify(self, images: Images) -> Predictions:
        """Predict the digit shown in each image, with the probability of every class."""
        # Each request was validated against `Images` before batching, so one bad request never fails a batch.
        pixels = np.asarray(images, dtype=np.float64)
        burn_cpu(self.extra_work_ms * len(pixels))
        probabilities = self.model.predict_proba(pixels / MAX_PIXEL_VALUE).round(4)
        labels = self.model.classes_[probabilities.argmax(axis=1)]
        return [
            Prediction(label=int(label), probabilities=row.tolist())
            for label, row in zip(labels, probabilities, strict=True)
        ]

    @bentoml.api(route=IMAGE_ROUTE)  # type: ignore[untyped-decorator]
    def classify_image(self, image: ImageUpload) -> ImagePrediction:
        """Predict the digit in an uploaded image (a white digit on black, any size up to 512 pixels a side)."""
        pixels = image_pixels(image)
        burn_cpu(self.extra_work_ms)
        probabilities = self.model.predict_proba(pixels.reshape(1, -1) / MAX_PIXEL_VALUE).round(4)[0]
        return Prediction(label=int(self.model.classes_[probabilities.argmax()]), probabilities=probabilities.tolist())


# `@bentoml.service` replaced the class with a bentoml Service object, which mypy cannot see.
cast(Any, DigitsClassifier).add_asgi_middleware(CheckRequestBody)
