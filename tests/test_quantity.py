"""The one Kubernetes quantity parser: every suffix the API server emits, and what it refuses."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from harness.quantity import parse_quantity


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("500m", 0.5),
        ("2", 2.0),
        ("512Mi", 512 * 2**20),
        ("1Gi", 2**30),
        ("1.5", 1.5),
        (3, 3.0),
        ("441123456n", 0.441123456),
        ("318712Ki", 318712 * 1024.0),
        ("1.5Gi", 1.5 * 2**30),
        ("12u", 12e-6),
        ("2e3", 2000.0),
        ("1E", 1e18),
        ("0", 0.0),
    ],
)
def test_parse_quantity(text: str | int, expected: float) -> None:
    assert parse_quantity(text) == pytest.approx(expected)


@given(st.integers(0, 10**12), st.sampled_from([("n", 1e-9), ("m", 1e-3), ("", 1.0), ("Ki", 1024.0), ("M", 1e6)]))
def test_parse_quantity_scales_by_suffix(number: int, suffix: tuple[str, float]) -> None:
    assert parse_quantity(f"{number}{suffix[0]}") == pytest.approx(number * suffix[1])


@pytest.mark.parametrize("text", ["lots", "-1Gi", "1e", "m", "", -1, float("nan")])
def test_parse_quantity_rejects_what_is_not_a_quantity(text: str | float) -> None:
    with pytest.raises(ValueError, match="not a Kubernetes quantity"):
        parse_quantity(text)
