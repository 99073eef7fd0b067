"""Example model service for the harness: a scikit-learn digits classifier behind BentoML adaptive batching.

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
from pydantic import BaseModel, Field, PlainSerializer, WithJsonSchema
from starlette.types import ASGIApp, Receive, Scope, Send

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


class RejectNonJsonBody:
    """ASGI middleware answering 415 to POST bodies that are not JSON.

    BentoML would otherwise parse them as forms or multipart, and a multipart Content-Type without a
    boundary makes it answer 500. A missing Content-Type is treated as JSON, as BentoML does.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["method"] == "POST":
            content_type = dict(scope["headers"]).get(b"content-type", b"").decode("latin-1")
            media_type = content_type.split(";")[0].strip().lower()
            if media_type and media_type != "application/json" and not media_type.endswith("+json"):
                message = f"Content-Type {media_type!r} is not supported: send the request body as application/json"
                body = json.dumps({"error": message}).encode()
                headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
                await send({"type": "http.response.start", "status": 415, "headers": headers})
                await send({"type": "http.response.body", "body": body})
                return
        await self.app(scope, receive, send)


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


# `@bentoml.service` replaced the class with a bentoml Service object, which mypy cannot see.
cast(Any, DigitsClassifier).add_asgi_middleware(RejectNonJsonBody)
