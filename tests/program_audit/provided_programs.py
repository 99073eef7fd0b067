"""The programs `make test` provides: those of the Debian packages its install steps install and of what they
depend on, of the machine's base system, of the venv, and of the Go builds it caches. Read from the install
steps themselves (`make -n -B test` and the scripts it calls), so a new step or package counts at once."""

from __future__ import annotations

import functools
import os
import re
import shlex
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from program_audit_hook import unaudited_which

REPO = Path(__file__).resolve().parents[2]
_BIN_DIRS = ("/bin/", "/sbin/", "/usr/bin/", "/usr/sbin/", "/usr/local/bin/", "/usr/local/sbin/")
_INSTALL_STEP = re.compile(r"install-system-packages\.sh\"?[ \t]+([^;&|>\n]+)")
_GO_INSTALL = re.compile(r"\bgo install ([\w./-]+)@")
_SCRIPT_CALL = re.compile(r"\b(?:bash|sh)\s+\"?(?:\$ROOT/|\$HERE/)?([\w./-]+\.sh)")
# What a new machine of the project's kind has before `make` (the env's machine description, "On a new machine":
# Go, CPython, git, gcc and make), beside Debian's required and important packages.
MACHINE_PROGRAMS = frozenset({"go", "gofmt", "git", "make", "gcc", "cc", "python3", "python", "pip", "pip3"})
# Where `make test` itself puts programs: the venv, Go-built binaries it caches, and the repository's scripts.
_HOME = Path.home()
_BUILT_ROOTS = (REPO, Path(sys.prefix), _HOME / ".cache" / "harness-cluster", _HOME / ".cache" / "harness-tools")
# Programs a test writes for itself live in temporary folders.
_TEST_MADE_ROOTS = (Path("/tmp"), Path(os.environ.get("TMPDIR", "/tmp")))


@dataclass(frozen=True)
class ProvidedPrograms:
    names: frozenset[str]
    files: frozenset[str]
    packages: frozenset[str]

    def provides(self, program: str) -> bool:
        """Whether `program` (a name looked up on PATH, or a path) is one that `make test` makes available."""
        if os.sep not in program:
            if program in self.names:
                return True
            found = unaudited_which(program)
            return found is not None and self._provides_path(Path(found))
        return Path(program).name in self.names or self._provides_path(Path(program))

    def _provides_path(self, path: Path) -> bool:
        resolved = path.resolve()
        if str(resolved) in self.files or str(path) in self.files:
            return True
        roots = (*_BUILT_ROOTS, *_TEST_MADE_ROOTS, Path(sys.base_prefix))
        return any(resolved.is_relative_to(root.resolve()) or path.is_relative_to(root) for root in roots)


@functools.cache
def _install_steps_of_make_test(makefile_dir: Path = REPO) -> str:
    """The commands `make test` runs (its recipe and those of its prerequisites, as `make -n -B` prints them)."""
    return subprocess.run(
        ["make", "-n", "-B", "-C", str(makefile_dir), "test"], capture_output=True, text=True, check=True, timeout=60
    ).stdout


def go_built_programs_of_make_test(makefile_dir: Path = REPO) -> frozenset[str]:
    """The programs `make test` builds with `go install` (their module path's last element)."""
    steps = _install_steps_of_make_test(makefile_dir)
    return frozenset(match.group(1).rstrip("/").rsplit("/", 1)[-1] for match in _GO_INSTALL.finditer(steps))


def installed_packages_of_make_test(makefile_dir: Path = REPO) -> frozenset[str]:
    """The Debian packages named by the install steps `make test` runs, and by the scripts they call."""
    packages: set[str] = set()
    texts, seen_scripts = [_install_steps_of_make_test(makefile_dir)], set()
    while texts:
        text = texts.pop()
        for match in _INSTALL_STEP.finditer(text):
            packages.update(word for word in shlex.split(match.group(1)) if re.fullmatch(r"[a-z0-9][a-z0-9.+-]+", word))
        for match in _SCRIPT_CALL.finditer(text):
            script = (makefile_dir / match.group(1)).resolve()
            if script.is_file() and script not in seen_scripts and script.name != "install-system-packages.sh":
                seen_scripts.add(script)
                texts.append(script.read_text())
    return frozenset(packages)


def _dpkg_graph() -> tuple[dict[str, list[list[str]]], dict[str, set[str]], set[str]]:
    """Installed packages: each one's dependencies (alternatives per entry), who provides each virtual name, and
    those the base system has (Essential, or priority required or important)."""
    listing = subprocess.run(
        [
            "dpkg-query",
            "-W",
            "-f",
            "${Package}\t${db:Status-Abbrev}\t${Essential}\t${Priority}\t${Pre-Depends}, ${Depends}\t${Provides}\n",
        ],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    ).stdout
    depends: dict[str, list[list[str]]] = {}
    providers: dict[str, set[str]] = {}
    base: set[str] = set()
    for line in listing.splitlines():
        name, status, essential, priority, relations, provides = (line.split("\t") + [""] * 6)[:6]
        if not status.startswith("ii"):
            continue
        entries = [entry.strip() for entry in relations.split(",") if entry.strip()]
        depends[name] = [[alt.split()[0].split(":")[0] for alt in entry.split("|") if alt.strip()] for entry in entries]
        for virtual in provides.split(","):
            if virtual.strip():
                providers.setdefault(virtual.split()[0], set()).add(name)
        if essential == "yes" or priority in ("required", "important"):
            base.add(name)
    return depends, providers, base


def _closure(roots: set[str], depends: dict[str, list[list[str]]], providers: dict[str, set[str]]) -> set[str]:
    closed: set[str] = set()
    pending = list(roots)
    while pending:
        name = pending.pop()
        for package in ({name} if name in depends else set()) | providers.get(name, set()):
            if package in closed:
                continue
            closed.add(package)
            for alternatives in depends.get(package, []):
                pending.extend(alternatives)
    return closed


@functools.cache
def provided_programs() -> ProvidedPrograms:
    depends, providers, base = _dpkg_graph()
    packages = _closure(set(installed_packages_of_make_test()) | base, depends, providers)
    listed = subprocess.run(
        ["dpkg-query", "-L", *sorted(packages)], capture_output=True, text=True, check=False, timeout=120
    ).stdout
    files = {line for line in listed.splitlines() if line.startswith(_BIN_DIRS) and not line.endswith("/")}
    names = {Path(file).name for file in files} | set(MACHINE_PROGRAMS) | set(go_built_programs_of_make_test())
    venv_bin = Path(sys.prefix) / "bin"
    if venv_bin.is_dir():
        names.update(entry.name for entry in venv_bin.iterdir())
    return ProvidedPrograms(frozenset(names), frozenset(files), frozenset(packages))
