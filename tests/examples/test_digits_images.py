"""The digits example's image uploads (examples/digits/images), checked without serving them: each PNG is the data
set's held-out row it names, at its label, and the service's own conversion gives back the row's pixel values."""

from __future__ import annotations

import importlib.util
import json
import sys
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType

import numpy as np
import pytest
from PIL import Image
from sklearn.datasets import load_digits

DIGITS_DIR = Path(__file__).resolve().parents[2] / "examples" / "digits"
IMAGES_DIR = DIGITS_DIR / "images"


@pytest.fixture(scope="module")
def service() -> Iterator[ModuleType]:
    spec = importlib.util.spec_from_file_location("digits_service_for_images", DIGITS_DIR / "service.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    yield module
    del sys.modules[spec.name]


def test_each_image_is_the_held_out_row_it_names_at_its_label(service: ModuleType) -> None:
    pixels, labels = load_digits(return_X_y=True)
    rows = [json.loads(line) for line in (IMAGES_DIR / "labels.jsonl").read_text().splitlines()]
    assert len(rows) == 100 and sorted(path.name for path in IMAGES_DIR.glob("*.png")) == [r["file"] for r in rows]
    for row in rows:
        assert row["row"] % service.HELD_OUT_EVERY == 0, "an image the model was trained on"
        assert row["label"] == labels[row["row"]]
        with Image.open(IMAGES_DIR / row["file"]) as image:
            assert image.format == "PNG" and image.size == (32, 32) and image.mode == "L"
            got = service.image_pixels(image)
        # One grey level is 16/255 of a pixel value: rounding to it is all the file loses.
        assert np.abs(got - pixels[row["row"]]).max() <= 16 / 255 / 2 + 1e-9, row


def test_a_large_image_averages_down_to_the_same_pixels(service: ModuleType) -> None:
    with Image.open(IMAGES_DIR / "0010.png") as image:
        small = service.image_pixels(image)
        large = service.image_pixels(image.resize((256, 256), Image.Resampling.NEAREST))
    assert np.allclose(small, large)
