"""The endpoints file: the ready replicas' base URLs, written by the harness as replicas come and go
(`write_endpoints`, from `runner.EndpointPublisher`) and read by every load process (`Endpoints`), which sends to
them in turn. Imports neither Locust nor gevent: the locustfile only calls it.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path


def write_endpoints(path: Path, base_urls: Sequence[str]) -> None:
    """Atomically publish the ready replicas' base URLs to the load generator."""
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(sorted(base_urls)))
    tmp.replace(path)


class Endpoints:
    """Ready replica base URLs (no trailing slash), re-read from the harness's endpoints file as replicas come
    and go, and handed out in turn."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.urls: list[str] = []
        self._mtime_ns = -1
        self._next = 0
        self.refresh()

    def refresh(self) -> None:
        """Re-read the file if it changed; a file being replaced, unreadable or empty keeps the previous list."""
        try:
            mtime_ns = self.path.stat().st_mtime_ns
            if mtime_ns != self._mtime_ns:
                urls = json.loads(self.path.read_text())
                if urls:
                    self.urls = [url.rstrip("/") for url in urls]
                self._mtime_ns = mtime_ns
        except (OSError, json.JSONDecodeError):
            pass

    def next_url(self) -> str:
        """The next replica's URL, round robin (the list must not be empty)."""
        self._next = (self._next + 1) % len(self.urls)
        return self.urls[self._next]
