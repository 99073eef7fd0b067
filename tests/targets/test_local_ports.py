"""A replica whose port another process bound first starts again on a new one (harness.targets.local), and
free_port draws below the kernel's ephemeral range, where outgoing connections take their source ports."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from harness.config import parse_scenario
from harness.model import Event
from harness.processes import PORT_FLOOR, free_port
from harness.targets import local
from harness.targets.local import PORT_IN_USE, LocalTarget

ROOT = Path(__file__).resolve().parents[2]


def test_free_port_is_below_the_ephemeral_range_and_bindable() -> None:
    low = int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    ports = {free_port() for _ in range(20)}
    assert all(PORT_FLOOR <= port < low for port in ports), ports
    assert len(ports) > 1, "drawn at random, not one fixed port"
    for port in ports:
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            sock.bind(("127.0.0.1", port))


@pytest.fixture
def taken_port() -> Iterator[int]:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        yield int(sock.getsockname()[1])


@pytest.mark.integration
def test_a_replica_whose_port_was_taken_starts_again_on_another(
    tmp_path: Path, taken_port: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    data = yaml.safe_load((ROOT / "loadtests" / "default.yaml").read_text())
    data["service"]["path"] = str(ROOT / "examples" / "digits")
    data["target"]["replicas"] = 1
    scenario = parse_scenario(data)
    # The first port handed out is one a listener already holds, as when another process bound it first.
    ports = iter([taken_port])
    monkeypatch.setattr(local, "free_port", lambda: next(ports, None) or free_port())
    events: list[Event] = []
    target = LocalTarget(scenario, tmp_path, on_event=events.append)
    try:
        target.start(1)
        (replica,) = target.replicas()
        assert replica.ready and replica.base_url != f"http://127.0.0.1:{taken_port}"
    finally:
        target.stop()
    kinds = [event.kind for event in events]
    assert kinds.count("replica_started") == 2 and "replica_crashed" not in kinds, kinds
    assert PORT_IN_USE not in (tmp_path / "replica-1.log").read_text(), "the log is the second start's"
