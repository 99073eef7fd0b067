"""Side-loading into a node's containerd: two harnesses importing into one node at once take turns."""

from __future__ import annotations

import threading
from pathlib import Path

from harness.targets.containerd_node import ContainerdNode


def test_two_imports_into_one_node_take_turns_and_other_nodes_do_not_wait(tmp_path: Path) -> None:
    node = tmp_path / "containerd.sock"
    first_inside, first_may_leave = threading.Event(), threading.Event()
    entered: list[str] = []

    def first() -> None:
        with ContainerdNode(node)._importing():
            entered.append("first")
            first_inside.set()
            first_may_leave.wait(30)
            entered.append("first leaving")

    def second() -> None:
        with ContainerdNode(node)._importing():
            entered.append("second")

    threads = [threading.Thread(target=first)]
    threads[0].start()
    assert first_inside.wait(30)
    threads.append(threading.Thread(target=second))
    threads[1].start()
    # Another node's imports do not wait for this one's.
    with ContainerdNode(tmp_path / "other.sock")._importing():
        pass
    threads[1].join(0.5)
    assert entered == ["first"], "the second import waits while the first holds the node"
    first_may_leave.set()
    for thread in threads:
        thread.join(30)
    assert entered == ["first", "first leaving", "second"]
