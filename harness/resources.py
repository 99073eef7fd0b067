"""The files the harness reads at run time, found as package data wherever the package is installed.

In the repository they live at the top (`charts/`, `dockerfiles/`, `docs/verdict.schema.json`, `docs/grafana/`);
`harness/_data` holds symlinks to them, which an editable install reads through and the wheel build follows,
so a wheel or sdist carries copies (pyproject.toml's package-data). Nothing here reads the clone around
the package.
"""

from __future__ import annotations

import importlib.resources
from pathlib import Path

from harness.errors import HarnessError

# The package-data directory, inside the `harness` package.
DATA_DIR = "_data"


def package_dir() -> Path:
    """The installed `harness` package's directory (its modules and its data)."""
    root = importlib.resources.files("harness")
    # Wheels installed by pip or uv are plain directories; a zipped install cannot hand Helm or Docker a path.
    if not isinstance(root, Path):
        raise HarnessError(f"the harness package is not installed as files on disk ({root}); install it with pip")
    return root


def data_path(*parts: str) -> Path:
    """A file or directory the harness ships as package data, e.g. `data_path("charts", "model-service")`."""
    return package_dir().joinpath(DATA_DIR, *parts)


def module_file(package: str, name: str) -> Path:
    """A file of one of the harness's own packages, e.g. `module_file("harness.load", "locustfile.py")`; a path,
    because a child process (Locust) is given it."""
    found = importlib.resources.files(package) / name
    if not isinstance(found, Path):
        raise HarnessError(f"{package}/{name} is not a file on disk ({found}); install the harness with pip")
    return found


def clone_dir() -> Path | None:
    """The repository this package was imported from (an editable install or a test run in a clone), else None."""
    candidate = package_dir().resolve().parent
    return candidate if (candidate / "pyproject.toml").is_file() and (candidate / "harness").is_dir() else None
