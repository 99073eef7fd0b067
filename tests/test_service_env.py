"""The service's environment: which model store, which Python, which PATH its BentoML processes get."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

from harness.config import ServiceConfig
from harness.errors import ConfigError
from harness.service_env import bentoml_command, bentoml_env, container_env, model_store_home, service_python


def service(**fields: object) -> ServiceConfig:
    return ServiceConfig.model_validate({"path": ".", "service": "service:S", **fields})


def test_the_model_store_named_by_the_scenario_wins(tmp_path: Path) -> None:
    named = service(model_store=str(tmp_path / "store"), env={"BENTOML_HOME": "/elsewhere"})
    assert model_store_home(named, {"BENTOML_HOME": "/caller", "HOME": "/home/u"}) == tmp_path / "store"


def test_service_env_then_the_callers_bentoml_home_then_the_default() -> None:
    environ = {"BENTOML_HOME": "/caller", "HOME": "/home/u"}
    assert model_store_home(service(env={"BENTOML_HOME": "/from-env"}), environ) == Path("/from-env")
    assert model_store_home(service(), environ) == Path("/caller")
    assert model_store_home(service(), {"HOME": "/home/u"}) == Path("/home/u/bentoml")


def test_a_virtual_environment_directory_means_its_interpreter_unresolved(tmp_path: Path) -> None:
    python = tmp_path / "venv" / "bin" / "python"
    python.parent.mkdir(parents=True)
    python.symlink_to(sys.executable)
    assert service_python(service(python=str(tmp_path / "venv"))) == python
    assert service_python(service(python=str(python))) == python  # a symlink stays itself: it selects the venv
    assert bentoml_command(service(python=str(python))) == [str(python), "-m", "bentoml"]
    assert service_python(service()) == Path(sys.executable)


@pytest.mark.parametrize("where", ["missing", "empty-dir", "not-executable"])
def test_no_interpreter_at_service_python_names_the_field(tmp_path: Path, where: str) -> None:
    target = tmp_path / where
    if where == "empty-dir":
        target.mkdir()
    elif where == "not-executable":
        target.write_text("#!/bin/sh\n")
    with pytest.raises(ConfigError, match=r"service\.python '.*': no Python interpreter there"):
        service_python(service(python=str(target)))


def test_bentoml_processes_see_the_service_env_its_python_first_and_the_home(tmp_path: Path) -> None:
    python = tmp_path / "venv" / "bin" / "python"
    python.parent.mkdir(parents=True)
    python.symlink_to(sys.executable)
    configured = service(python=str(python), env={"MODEL_KNOB": "7", "BENTOML_HOME": "/ignored"})
    env = bentoml_env(configured, {"PATH": "/usr/bin", "KEEP": "1"}, tmp_path / "home")
    assert env["MODEL_KNOB"] == "7" and env["KEEP"] == "1"
    assert env["BENTOML_HOME"] == str(tmp_path / "home")
    directories = env["PATH"].split(os.pathsep)
    # The service's Python first; the harness's own next, for `uv` (offline `bentoml build` needs it).
    assert directories == [str(python.parent), str(Path(sys.executable).parent), "/usr/bin"]


def test_containers_keep_their_images_own_bentoml_home() -> None:
    configured = service(env={"BENTOML_HOME": "/home/me/bentoml", "MODEL_KNOB": "7"})
    assert container_env(configured) == {"MODEL_KNOB": "7"}
