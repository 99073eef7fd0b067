"""Request bodies for the load generator: realistic inputs drawn from data, never one constant vector."""

from __future__ import annotations

import json
import random
from pathlib import Path

from harness.errors import ConfigError

PAYLOAD_SOURCES = ("digits", "jsonl")


def digits_bodies(count: int, batch_rows: int, seed: int) -> list[bytes]:
    """`count` JSON bodies `{"images": [...]}`, each holding `batch_rows` real 8x8 digit images.

    The images come from scikit-learn's bundled digits data, so the model sees the same kind of
    input it was trained on and its compute per request is realistic.
    """
    from sklearn.datasets import load_digits  # slow import, only needed for this source

    images = load_digits().data
    rng = random.Random(seed)
    bodies = []
    for _ in range(count):
        rows = [images[rng.randrange(len(images))].tolist() for _ in range(batch_rows)]
        bodies.append(json.dumps({"images": rows}, separators=(",", ":")).encode())
    return bodies


def jsonl_bodies(path: Path) -> list[bytes]:
    """Each non-empty line of a JSON-lines file is one request body."""
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except OSError as error:
        raise ConfigError(
            f"payload.file '{path}': cannot read ({error.strerror})", hint="give a JSON-lines file of bodies"
        ) from error
    bodies = []
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            json.loads(line)
        except json.JSONDecodeError as error:
            raise ConfigError(f"payload.file '{path}' line {number}: not valid JSON ({error.msg})") from error
        bodies.append(line.encode())
    if not bodies:
        raise ConfigError(f"payload.file '{path}': no request bodies (expected one JSON document per line)")
    return bodies


def build_bodies(source: str, *, file: Path | None, batch_rows: int, seed: int, count: int = 512) -> list[bytes]:
    """Request bodies for a payload source; an unknown source names the valid ones."""
    if source == "digits":
        return digits_bodies(count, batch_rows, seed)
    if source == "jsonl":
        if file is None:
            raise ConfigError("payload.source 'jsonl' needs payload.file")
        return jsonl_bodies(file)
    raise ConfigError(f"payload.source '{source}' is unknown (expected one of: {', '.join(PAYLOAD_SOURCES)})")
