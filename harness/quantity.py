"""Kubernetes resource quantities ("500m", "512Mi", "250123456n") as plain numbers.

The one parser of the harness: scenario validation, the HPA emulation and the Kubernetes target's
metrics reading all use it. Pure (no kubernetes client), so the decision core may import it.
"""

from __future__ import annotations

import math
import re
from decimal import Decimal

# The API server's grammar: a decimal number, optionally with an exponent, then one suffix. No negative
# quantity means anything to the harness (requests, usage, targets), so a minus sign is refused.
_QUANTITY = re.compile(
    r"^\+?([0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:[eE]([+-]?[0-9]+))?(n|u|m|k|M|G|T|P|E|Ki|Mi|Gi|Ti|Pi|Ei)?$"
)
_SUFFIX = {
    None: Decimal(1),
    "n": Decimal("1e-9"),
    "u": Decimal("1e-6"),
    "m": Decimal("1e-3"),
    "k": Decimal("1e3"),
    "M": Decimal("1e6"),
    "G": Decimal("1e9"),
    "T": Decimal("1e12"),
    "P": Decimal("1e15"),
    "E": Decimal("1e18"),
    "Ki": Decimal(2**10),
    "Mi": Decimal(2**20),
    "Gi": Decimal(2**30),
    "Ti": Decimal(2**40),
    "Pi": Decimal(2**50),
    "Ei": Decimal(2**60),
}


def parse_quantity(value: str | int | float) -> float:
    """A Kubernetes quantity as a number (cores, bytes or a plain count); a ValueError when it is not one."""
    if isinstance(value, int | float):
        if not (math.isfinite(value) and value >= 0):
            raise ValueError(f"'{value}' is not a Kubernetes quantity (expected a finite number >= 0, e.g. 0.5)")
        return float(value)
    match = _QUANTITY.match(str(value).strip())
    if not match:
        raise ValueError(f"'{value}' is not a Kubernetes quantity (expected e.g. 500m, 2, 512Mi)")
    number, exponent, suffix = match.groups()
    return float(Decimal(number).scaleb(int(exponent or 0)) * _SUFFIX[suffix])
