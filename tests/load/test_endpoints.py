"""The endpoints file between the harness and its load processes (harness.load.endpoints): written whole, read as it
changes, its replicas taken in turn."""

from __future__ import annotations

import os
from pathlib import Path

from hypothesis import given
from hypothesis import strategies as st

from harness.load.endpoints import Endpoints, write_endpoints


def test_the_replicas_are_read_as_written_and_taken_in_turn(tmp_path: Path) -> None:
    path = tmp_path / "endpoints.json"
    write_endpoints(path, ["http://b:2/", "http://a:1"])
    endpoints = Endpoints(path)
    assert endpoints.urls == ["http://a:1", "http://b:2"], "sorted, without the trailing slash"
    assert [endpoints.next_url() for _ in range(4)] == ["http://b:2", "http://a:1", "http://b:2", "http://a:1"]


def test_a_changed_file_is_read_again_and_an_empty_or_broken_one_keeps_the_replicas(tmp_path: Path) -> None:
    path = tmp_path / "endpoints.json"
    endpoints = Endpoints(path)
    assert endpoints.urls == [], "no file yet"
    write_endpoints(path, ["http://a:1"])
    endpoints.refresh()
    assert endpoints.urls == ["http://a:1"]
    write_endpoints(path, [])
    os.utime(path, ns=(1, 1))  # another mtime whatever the file system's resolution
    endpoints.refresh()
    assert endpoints.urls == ["http://a:1"], "no ready replica: keep sending where the last ones were"
    path.write_text('["http://half')
    os.utime(path, ns=(2, 2))
    endpoints.refresh()
    assert endpoints.urls == ["http://a:1"], "a file being replaced"
    write_endpoints(path, ["http://c:3", "http://d:4"])
    os.utime(path, ns=(3, 3))
    endpoints.refresh()
    assert endpoints.urls == ["http://c:3", "http://d:4"]


@given(st.lists(st.integers(min_value=1, max_value=65535), min_size=1, max_size=10, unique=True), st.integers(0, 50))
def test_round_robin_sends_to_every_replica_equally(ports: list[int], rounds: int) -> None:
    endpoints = Endpoints(Path("/nonexistent/endpoints.json"))
    endpoints.urls = [f"http://127.0.0.1:{port}" for port in ports]
    taken = [endpoints.next_url() for _ in range(rounds * len(ports))]
    assert all(taken.count(url) == rounds for url in endpoints.urls)
