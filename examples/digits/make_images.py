"""Write the digits example's image uploads: held-out images of scikit-learn's digits data set as PNG files
(images/NNNN.png, NNNN the data set's row) and images/labels.jsonl naming each file with its label, the data set
loadtests/digits-images.yaml sends to /classify_image.

Each 8x8 image (values 0..16) becomes a 32x32 grey PNG, a white digit on black, each pixel a 4x4 block: the
service's own 8x8 averaging gives back the data set's values (to 1/255 of the range). Run from anywhere:
`python examples/digits/make_images.py [COUNT]`; the files are checked in, so only a change needs it.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
from PIL import Image
from service import HELD_OUT_EVERY, MAX_PIXEL_VALUE
from sklearn.datasets import load_digits

IMAGES_DIR = Path(__file__).resolve().parent / "images"
SCALE = 4
DEFAULT_COUNT = 100


def png_of(pixels: np.ndarray, scale: int = SCALE) -> Image.Image:
    """A data set image (64 values 0..16) as an 8*scale pixels square grey image."""
    grey = np.rint(pixels.reshape(8, 8) * (255.0 / MAX_PIXEL_VALUE)).astype(np.uint8)
    return Image.fromarray(grey, mode="L").resize((8 * scale, 8 * scale), Image.Resampling.NEAREST)


def main(count: int) -> None:
    pixels, labels = load_digits(return_X_y=True)
    rows = [row for row in range(len(pixels)) if row % HELD_OUT_EVERY == 0][:count]
    IMAGES_DIR.mkdir(exist_ok=True)
    for old in IMAGES_DIR.glob("*.png"):
        old.unlink()
    lines = []
    for row in rows:
        name = f"{row:04d}.png"
        png_of(pixels[row]).save(IMAGES_DIR / name, format="PNG", optimize=True)
        lines.append(json.dumps({"file": name, "label": int(labels[row]), "row": row}) + "\n")
    (IMAGES_DIR / "labels.jsonl").write_text("".join(lines))
    print(f"wrote {len(rows)} images and labels.jsonl to {IMAGES_DIR}")


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else DEFAULT_COUNT)
