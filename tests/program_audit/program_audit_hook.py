"""Records every program a process of the test suite looks up (`shutil.which`) or executes (subprocess, exec,
spawn) in the log file named by HARNESS_PROGRAM_AUDIT, with the test that was running, so that a test that
uses a program which `make test` does not install fails on every machine (tests/conftest.py), not only on a
new one. Standard library only: it runs in every Python process the suite starts, the service's included."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import sys
import sysconfig
from pathlib import Path
from types import FrameType
from typing import Any

LOG_VARIABLE = "HARNESS_PROGRAM_AUDIT"
_EXECUTING_EVENTS = frozenset({"subprocess.Popen", "os.exec", "os.posix_spawn", "os.spawn"})
_installed = False
# The project's own code (not the venv inside it): a program it chooses to use must be one `make test` installs.
# A library probing for optional tools of its own (BentoML looks for nerdctl, podman, ...) is not recorded.
# HARNESS_PROGRAM_AUDIT_PROJECT names another folder as the project (the audit's own test, whose tests are made
# in a temporary folder).
_PROJECT = os.environ.get("HARNESS_PROGRAM_AUDIT_PROJECT") or str(Path(__file__).resolve().parents[2])
_PROJECT = _PROJECT.rstrip(os.sep) + os.sep
_LIBRARY_MARKERS = ("site-packages", "dist-packages", os.sep + ".venv" + os.sep)
_STDLIB = sysconfig.get_paths()["stdlib"] + os.sep
# shutil.which as it was: the check of what a process looked up must not count as a look-up itself.
unaudited_which = shutil.which


def _program_name(value: Any) -> str | None:
    if isinstance(value, bytes):
        value = os.fsdecode(value)
    if isinstance(value, os.PathLike):
        value = os.fspath(value)
    if isinstance(value, str) and value:
        return value
    return None


def _first_argument(argv: Any) -> Any:
    if isinstance(argv, (str, bytes, os.PathLike)):
        # A string command: its program is the first word (shell=True runs /bin/sh, recorded as sh).
        text = _program_name(argv)
        return text.split()[0] if text and text.split() else None
    if isinstance(argv, (list, tuple)) and argv:
        return argv[0]
    return None


def _project_caller(frame: FrameType | None) -> str | None:
    """The file of the first caller outside the standard library (subprocess, shutil, os) when it is the project's
    code, else None."""
    while frame is not None:
        filename = frame.f_code.co_filename
        if filename == __file__ or (filename.startswith(_STDLIB) and "site-packages" not in filename):
            frame = frame.f_back
            continue
        ours = filename.startswith(_PROJECT) and not any(marker in filename for marker in _LIBRARY_MARKERS)
        return filename if ours else None
    return None


def install(log_path: str) -> None:
    """Start recording this process's program look-ups and executions into `log_path` (once per process)."""
    global _installed
    if _installed:
        return
    _installed = True
    seen: set[tuple[str, str, str]] = set()

    def record(how: str, program: str | None) -> None:
        caller = _project_caller(sys._getframe(2)) if program else None
        if caller is None:
            return
        test = os.environ.get("PYTEST_CURRENT_TEST", "")
        key = (how, program, test)
        if key in seen:
            return
        seen.add(key)
        entry = {"test": test, "how": how, "program": program, "pid": os.getpid(), "caller": caller}
        line = json.dumps(entry) + "\n"
        try:
            # One write of a short line to a file opened for appending: lines of concurrent processes never mix.
            descriptor = os.open(log_path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
            try:
                os.write(descriptor, line.encode())
            finally:
                os.close(descriptor)
        except OSError:
            pass

    def hook(event: str, args: tuple[Any, ...]) -> None:
        if event not in _EXECUTING_EVENTS:
            return
        try:
            if event == "subprocess.Popen":
                # (executable, args, cwd, env): with shell=True, args already starts with /bin/sh.
                executable, argv = args[0], args[1]
                record("executes", _program_name(executable) or _program_name(_first_argument(argv)))
            elif event == "os.spawn":
                record("executes", _program_name(args[1]))  # (mode, path, args, env)
            else:
                record("executes", _program_name(args[0]))  # (path, args, env)
        except Exception:  # the audit must never break the process it watches
            pass

    def which(cmd: Any, mode: int = os.F_OK | os.X_OK, path: Any = None) -> Any:
        with contextlib.suppress(Exception):
            record("looks up", _program_name(cmd))
        return unaudited_which(cmd, mode, path)

    shutil.which = which  # type: ignore[assignment]
    sys.addaudithook(hook)


def install_from_environment() -> None:
    log_path = os.environ.get(LOG_VARIABLE)
    if log_path:
        install(log_path)
