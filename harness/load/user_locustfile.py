"""The user's own Locust users (`load.locustfile`), adapted to run under the harness's stages and recorder.

Their classes are subclassed so that each user instance talks to the next ready replica, and every request
they make (Locust's `request` event) is recorded against the stage it ran in. Imported by the harness
locustfile only, in the Locust process; `python -m harness.load.user_locustfile PATH` loads the file the same way
for the preflight (harness.load.runner.check_user_locustfile), in a process of its own.
"""

from __future__ import annotations

import importlib.util
import inspect
import sys
from collections.abc import Callable
from pathlib import Path

from locust import User

from harness.errors import ConfigError


class _NextReplica:
    """A `host` read once per user instance, as Locust's HttpUser and FastHttpUser do: the next replica."""

    def __init__(self, next_url: Callable[[], str]) -> None:
        self.next_url = next_url

    def __get__(self, instance: object, owner: type) -> str:
        return self.next_url()


def load_user_classes(path: Path, next_url: Callable[[], str]) -> dict[str, type[User]]:
    """The runnable User classes defined in the file at `path`, as subclasses whose host is the next replica."""
    spec = importlib.util.spec_from_file_location(f"harness_user_locustfile_{abs(hash(path))}", path)
    if spec is None or spec.loader is None:
        raise ConfigError(f"load.locustfile '{path}': not a Python file")
    module = importlib.util.module_from_spec(spec)
    sys.path.insert(0, str(path.parent))  # its own imports, as `locust -f` allows
    try:
        spec.loader.exec_module(module)
    except Exception as error:
        raise ConfigError(f"load.locustfile '{path}': importing it failed: {type(error).__name__}: {error}") from error
    classes = {
        name: item
        for name, item in vars(module).items()
        if inspect.isclass(item) and issubclass(item, User) and not item.abstract and item.__module__ == module.__name__
    }
    if not classes:
        raise ConfigError(f"load.locustfile '{path}': defines no User class (HttpUser or FastHttpUser subclass)")
    return {name: type(name, (cls,), {"host": _NextReplica(next_url)}) for name, cls in classes.items()}


if __name__ == "__main__":
    try:
        found = load_user_classes(Path(sys.argv[1]), lambda: "http://127.0.0.1")
    except ConfigError as error:
        print(error, file=sys.stderr)
        sys.exit(2)
    print(" ".join(sorted(found)))
