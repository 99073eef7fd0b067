"""The service's own environment: the Python it runs in and the BentoML model store it reads.

Every process that imports the user's service (`bentoml build`, `bentoml serve`, the Dockerfile
generator) is started from here, so they all see the same interpreter, store and PATH.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping
from pathlib import Path

from harness.config import ServiceConfig
from harness.errors import ConfigError


def model_store_home(service: ServiceConfig, environ: Mapping[str, str]) -> Path:
    """The BENTOML_HOME whose model store the service reads: `service.model_store`, else BENTOML_HOME in
    `service.env`, else the caller's BENTOML_HOME, else BentoML's default ~/bentoml."""
    if service.model_store is not None:
        return service.model_store
    named = service.env.get("BENTOML_HOME") or environ.get("BENTOML_HOME")
    if named:
        return Path(named).expanduser()
    return Path(environ.get("HOME") or Path.home()) / "bentoml"


def service_python(service: ServiceConfig) -> Path:
    """The interpreter the service runs in: `service.python` (an interpreter or a virtual environment's
    directory), else the harness's own. The path is not resolved: a venv's `bin/python` is a symlink that
    only selects the venv under its own name."""
    if service.python is None:
        return Path(sys.executable)
    candidate = service.python
    if candidate.is_dir():
        candidate = candidate / "bin" / "python"
    if not (candidate.is_file() and os.access(candidate, os.X_OK)):
        raise ConfigError(
            f"service.python '{service.python}': no Python interpreter there "
            "(expected an interpreter or a virtual environment's directory holding bin/python)"
        )
    return candidate


def bentoml_command(service: ServiceConfig) -> list[str]:
    """The start of a `bentoml ...` command line in the service's environment."""
    return [str(service_python(service)), "-m", "bentoml"]


def bentoml_env(service: ServiceConfig, environ: Mapping[str, str], bentoml_home: Path) -> dict[str, str]:
    """Environment of a BentoML process for the service: the caller's, `service.env`, then the home.

    PATH starts with the service interpreter's directory, then the harness's, where offline
    `bentoml build` finds `uv`.
    """
    env = dict(environ)
    env.update(service.env)
    directories = dict.fromkeys([str(service_python(service).parent), str(Path(sys.executable).parent)])
    env["PATH"] = os.pathsep.join([*directories, env.get("PATH", "")])
    env["BENTOML_HOME"] = str(bentoml_home)
    env["BENTOML_DO_NOT_TRACK"] = "true"
    return env


def container_env(service: ServiceConfig) -> dict[str, str]:
    """`service.env` for a replica in a container of the bento's image: without BENTOML_HOME, which names the
    caller's model store (the image holds the models already) and would move the image's own home."""
    return {name: value for name, value in service.env.items() if name != "BENTOML_HOME"}
