"""A local replica sees the model store read-only, in a mount namespace of its own that leaves the harness's alone."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from harness.targets.local import attach_model_store, mounted_read_only

_CHILD = """
import os, sys
models = sys.argv[1]
print(sorted(os.listdir(models)))
try:
    open(os.path.join(models, "written-by-replica"), "w").close()
    print("writable")
except OSError as error:
    print("refused", error.errno)
"""


@pytest.mark.integration
def test_a_replica_reads_the_store_and_cannot_write_it(tmp_path: Path) -> None:
    store = tmp_path / "store" / "models"
    (store / "wine-gbc").mkdir(parents=True)
    models_dir = tmp_path / "replica" / "models"
    models_dir.mkdir(parents=True)
    child = subprocess.run(
        [sys.executable, "-c", _CHILD, str(models_dir)],
        preexec_fn=lambda: attach_model_store(models_dir, store),
        capture_output=True,
        text=True,
        timeout=30,
        check=True,
    )
    seen, outcome = child.stdout.splitlines()
    assert seen == "['wine-gbc']"
    if os.geteuid() == 0:
        assert outcome == "refused 30"  # EROFS: the bind mount is read-only
        assert not os.listdir(models_dir), "the mount stayed in the replica's namespace"
        assert not mounted_read_only(os.getpid(), models_dir)
    else:
        assert models_dir.is_symlink() and models_dir.resolve() == store.resolve()
    assert not (store / "written-by-replica").exists() or os.geteuid() != 0


def test_mounted_read_only_reads_the_processs_own_mounts() -> None:
    if not Path("/proc/self/mountinfo").exists():
        pytest.skip("no /proc")
    assert not mounted_read_only(os.getpid(), Path("/no/such/mount/point"))
