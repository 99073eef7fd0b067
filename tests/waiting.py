"""The one way tests wait for something to become true: poll a condition until a deadline, then fail naming what
was waited for. Deadlines are generous bounds for things that usually take milliseconds or seconds: a loaded
2-core machine must not miss them, and a test asserts what happened, never how fast."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")


def wait_until(condition: Callable[[], T], what: str, timeout_s: float, interval_s: float = 0.1) -> T:
    """Call `condition` until it returns something true and return that; fail after `timeout_s` naming `what`."""
    deadline_s = time.monotonic() + timeout_s
    while True:
        result = condition()
        if result:
            return result
        if time.monotonic() >= deadline_s:
            raise AssertionError(f"{what} not within {timeout_s:g} s")
        time.sleep(interval_s)
