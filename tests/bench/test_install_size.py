"""bench/install_size.py's accounting: each distribution's RECORD files with their modules' bytecode, and the
venv's total as du counts it."""

from __future__ import annotations

from pathlib import Path

from bench.install_size import disk_bytes, distribution_bytes, tree_bytes


def _write(path: Path, size_bytes: int) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"x" * size_bytes)
    return path


def test_a_distribution_counts_its_record_files_and_its_bytecode_and_no_one_elses(tmp_path: Path) -> None:
    site = tmp_path / "site-packages"
    mine = [
        _write(site / "pkg" / "__init__.py", 10),
        _write(site / "pkg" / "big.so", 50_000),
        _write(site / "pkg" / "__pycache__" / "__init__.cpython-311.pyc", 9000),
    ]
    _write(site / "other" / "mod.py", 20_000)
    _write(site / "other" / "__pycache__" / "mod.cpython-311.pyc", 20_000)
    record = _write(site / "pkg-1.0.dist-info" / "RECORD", 0)
    record.write_text("pkg/__init__.py,sha256=x,10\npkg/big.so,,\npkg-1.0.dist-info/RECORD,,\npkg/gone.py,,\n")

    assert distribution_bytes(site) == {"pkg": sum(disk_bytes(path) for path in [*mine, record])}


def test_the_total_counts_every_file_and_directory_once(tmp_path: Path) -> None:
    data = _write(tmp_path / "a" / "data", 100_000)
    (tmp_path / "a" / "link").hardlink_to(data)
    directories = [tmp_path, tmp_path / "a"]
    assert tree_bytes(tmp_path) == disk_bytes(data) + sum(disk_bytes(d) for d in directories)
