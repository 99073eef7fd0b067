"""The optional parts of the harness (pip extras), and the one error a run gives when it needs a missing one.

The default install runs the local and external targets and writes every report; the Docker and Kubernetes
targets, Helm's chart engine, the HTML report's plots and the digits payloads are extras, imported only where
they are used, so a lean install starts fast and stays small.
"""

from __future__ import annotations

import importlib.util

from harness.errors import MissingExtraError
from harness.resources import clone_dir

# The distribution's name, free on PyPI (`harness` there is an unrelated project); the import package and
# command are `harness`.
DISTRIBUTION = "bentoml-scale-harness"
# The clone an editable install runs from; None for an installed wheel.
CLONE = clone_dir()

# Each extra, and the module whose presence says it is installed.
EXTRA_MODULES: dict[str, str] = {
    "docker": "docker",
    "kubernetes": "kubernetes",
    "helm": "helm_python",
    "plots": "plotly",
    "digits": "sklearn",
    "remote-write": "opentelemetry.exporter.prometheus_remote_write",
}


def install_command(extra: str) -> str:
    """The one command that installs `extra`: into the clone's editable install, or beside an installed wheel."""
    if CLONE is not None:
        return f"pip install -e '{CLONE}[{extra}]'"
    return f"pip install '{DISTRIBUTION}[{extra}]'"


def installed(extra: str) -> bool:
    """Whether the extra's package can be imported, found without importing it (docker and kubernetes must
    not be imported in a process that later imports Locust)."""
    try:
        return importlib.util.find_spec(EXTRA_MODULES[extra]) is not None
    except ModuleNotFoundError:  # a dotted module's parent package is missing
        return False


def missing(extra: str, needed_by: str) -> str:
    """What to say when `extra` is not installed: `needed_by` ("the docker target") needs it, and how to install
    it."""
    return f"{needed_by} needs the {extra} extra: {install_command(extra)}"


def require(extra: str, needed_by: str) -> None:
    """Raise MissingExtraError naming the install command unless `extra` is installed; `needed_by` says what
    needs it ("the docker target")."""
    if not installed(extra):
        raise MissingExtraError(missing(extra, needed_by))
