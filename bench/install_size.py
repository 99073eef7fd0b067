"""Size of the default install (`make bench-install-size`): the package without extras in a fresh virtual
environment, against the goal of GOAL_MB, with the largest distributions first.

The venv is made with `uv venv` (no pip in it) and the clone is installed into it with `uv pip install
--compile-bytecode`, the bytecode `pip install` also writes by default and the Makefile's install compiles
(`--no-compile` measures without it). Sizes are disk usage as `du -sm` counts it (MiB of allocated blocks);
each distribution's files are the ones its RECORD lists, with the bytecode of its modules. Wheels come from
uv's cache or PyPI. Exits 1 when the venv is over the goal.
"""

from __future__ import annotations

import argparse
import csv
import os
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
GOAL_MB = 400
LARGEST = 10
MIB = 1024 * 1024


def disk_bytes(path: Path) -> int:
    """Bytes allocated to one file or directory entry, as du counts them."""
    return os.lstat(path).st_blocks * 512


def tree_bytes(root: Path) -> int:
    """Bytes allocated to everything under root (`du -s`): each inode once."""
    seen: set[int] = set()
    total = 0
    for directory, _, files in os.walk(root):
        for path in [Path(directory), *(Path(directory) / name for name in files)]:
            inode = os.lstat(path).st_ino
            if inode not in seen:
                seen.add(inode)
                total += disk_bytes(path)
    return total


def _bytecode_of(module: Path) -> Iterator[Path]:
    """The compiled files of one .py module (any interpreter, any optimisation level)."""
    cache = module.parent / "__pycache__"
    if cache.is_dir():
        yield from cache.glob(f"{module.stem}.*.pyc")


def distribution_bytes(site_packages: Path) -> dict[str, int]:
    """Bytes per installed distribution: the files its RECORD lists and the bytecode of its modules."""
    sizes: dict[str, int] = {}
    for dist_info in sorted(site_packages.glob("*.dist-info")):
        record = dist_info / "RECORD"
        if not record.is_file():
            continue
        name = dist_info.name.removesuffix(".dist-info").rsplit("-", 1)[0]
        files: set[Path] = set()
        with record.open(newline="", encoding="utf-8") as lines:
            for row in csv.reader(lines):
                path = (site_packages / row[0]).resolve()
                if path.is_file():
                    files.add(path)
                    if path.suffix == ".py":
                        files.update(p.resolve() for p in _bytecode_of(path))
        sizes[name] = sum(disk_bytes(path) for path in files)
    return sizes


def make_venv(venv: Path, *, compile_bytecode: bool) -> None:
    """A fresh venv at `venv` holding this clone without extras."""
    uv = [sys.executable, "-m", "uv"]
    subprocess.run([*uv, "venv", "--quiet", "--python", sys.executable, str(venv)], check=True)
    install = [*uv, "pip", "install", "--quiet", "--python", str(venv / "bin" / "python")]
    subprocess.run([*install, *(["--compile-bytecode"] if compile_bytecode else []), str(ROOT)], check=True)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--no-compile", action="store_true", help="measure without bytecode")
    arguments = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="harness-install-size-") as scratch:
        venv = Path(scratch) / "venv"
        make_venv(venv, compile_bytecode=not arguments.no_compile)
        (site_packages,) = venv.glob("lib/python*/site-packages")
        total_mb = tree_bytes(venv) / MIB
        sizes = distribution_bytes(site_packages)
    bytecode = "without bytecode" if arguments.no_compile else "with bytecode"
    print(f"default install ({bytecode}): {total_mb:.0f} MB in a fresh venv, {len(sizes)} distributions")
    print(f"largest {LARGEST}:")
    for name, size in sorted(sizes.items(), key=lambda item: -item[1])[:LARGEST]:
        print(f"  {size / MIB:6.1f} MB  {name}")
    over = total_mb > GOAL_MB
    print(f"goal: under {GOAL_MB} MB: {'over' if over else 'met'}")
    return 1 if over else 0


if __name__ == "__main__":
    sys.exit(main())
