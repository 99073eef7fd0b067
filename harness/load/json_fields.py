"""JSON answers as checks read them: the value at a dotted field path, and JSON equality (with a tolerance for
numbers). Pure; shared by the answer checks of harness.load.requests and harness.load.reference_answers."""

from __future__ import annotations

import re
from typing import Any

# What `field_at` returns for a path the document does not have (None is a value: JSON's null).
MISSING: Any = object()


def field_at(document: Any, path: str) -> Any:
    """The value at a dotted path (`labels.0`), or `MISSING`."""
    node = document
    for part in path.split("."):
        if isinstance(node, dict) and part in node:
            node = node[part]
        elif isinstance(node, list) and re.fullmatch(r"-?[0-9]+", part) and -len(node) <= int(part) < len(node):
            node = node[int(part)]
        else:
            return MISSING
    return node


def same_json(a: Any, b: Any, tolerance: float = 0.0) -> bool:
    """JSON equality: 1 and 1.0 are equal, true and 1 are not; numbers within `tolerance` of each other are equal."""
    if isinstance(a, bool) or isinstance(b, bool):
        return isinstance(a, bool) and isinstance(b, bool) and a == b
    if isinstance(a, int | float) and isinstance(b, int | float):
        return a == b or abs(a - b) <= tolerance
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(same_json(x, y, tolerance) for x, y in zip(a, b, strict=True))
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(same_json(a[key], b[key], tolerance) for key in a)
    return type(a) is type(b) and bool(a == b)
