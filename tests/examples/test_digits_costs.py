"""What keeps the digits example fast under load (issue 12's stalls), checked without serving it: BentoML
never rebuilds the answer's JSON schema per response, long-lived objects are out of the garbage collector's
way and it collects less often, and request timers are not kept alive longer than needed."""

from __future__ import annotations

import gc
import importlib.util
import sys
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType

import pytest

SERVICE_FILE = Path(__file__).resolve().parents[2] / "examples" / "digits" / "service.py"


@pytest.fixture(scope="module")
def service() -> Iterator[ModuleType]:
    spec = importlib.util.spec_from_file_location("digits_service_under_test", SERVICE_FILE)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    yield module
    del sys.modules[spec.name]


def test_the_answer_has_a_media_type_so_bentoml_builds_no_schema_per_response(service: ModuleType) -> None:
    # Without one, BentoML's mime_type() builds a pydantic TypeAdapter and JSON schema on every response.
    assert service.DigitsClassifier.apis["classify"].output_spec.media_type == "application/json"


def test_the_traffic_timeout_is_short(service: ModuleType) -> None:
    # BentoML keeps each request's timer (and its context) alive for the whole timeout.
    assert service.DigitsClassifier.config["traffic"]["timeout"] <= 10


def test_the_worker_freezes_what_lives_as_long_as_it_and_collects_less_often(service: ModuleType) -> None:
    thresholds = gc.get_threshold()
    try:
        service.DigitsClassifier.inner()
        assert gc.get_freeze_count() > 0
        assert gc.get_threshold() == service.GC_THRESHOLDS
    finally:
        gc.unfreeze()
        gc.set_threshold(*thresholds)
