"""Start-up time of the harness (`make bench-startup`): wall and user time of fresh processes, median of
RUNS, against the goal of GOAL_S of wall time from process start until a run's work begins.

Measured: `import harness.run`; `harness validate` of the default scenario; and `harness run` of it up to
the moment the build would start (scenario loaded and validated, run directory written, build and local
target code imported), on a pseudo-terminal so the live view is rich's, as a user sees it. With
`--compare DIR`, the same commands run from another checkout (e.g. a worktree of origin/main), alternating
with this one so that both see the same machine load. Exits 1 when a measurement of this checkout is over
the goal.
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import pty
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SCENARIO = ROOT / "loadtests" / "default.yaml"
RUNS = 7
GOAL_S = 1.0

# `harness run`, stopped where the build would begin: what happens before it is start-up.
_RUN_UNTIL_BUILD = """
import os, sys, tempfile
import harness.run

def stop_at_build(self):
    import harness.targets.local  # the deploy's next import for the local target
    sys.stdout.flush()
    os._exit(0)

harness.run.Run._build_deploy_and_drive = stop_at_build
from harness.cli import main
# A run directory of its own: two runs within a second would have the same run id.
sys.argv = ["harness", "run", sys.argv[1], "--out", tempfile.mkdtemp(dir=sys.argv[2])]
main()
"""

_VALIDATE = "import sys; from harness.cli import main; sys.argv = ['harness', 'validate', *sys.argv[1:]]; main()"


def commands(out_dir: Path) -> dict[str, list[str]]:
    """The measured commands by name; each runs in a fresh interpreter."""
    python = sys.executable
    return {
        "import harness.run": [python, "-c", "import harness.run"],
        "harness validate default.yaml": [python, "-c", _VALIDATE, str(SCENARIO)],
        "harness run until the build": [python, "-c", _RUN_UNTIL_BUILD, str(SCENARIO), str(out_dir)],
    }


def time_once(argv: list[str], checkout: Path) -> tuple[float, float]:
    """Wall and user seconds of one run of argv with `checkout` first on the path, stdout on a terminal."""
    env = {**os.environ, "PYTHONPATH": str(checkout)}
    primary, secondary = pty.openpty()
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.perf_counter()
    try:
        process = subprocess.Popen(argv, cwd=checkout, env=env, stdout=secondary, stderr=subprocess.PIPE)
        os.close(secondary)
        output = b""
        while True:
            try:
                chunk = os.read(primary, 65536)
            except OSError:  # EIO: the child closed the terminal
                break
            if not chunk:
                break
            output += chunk
        _, stderr = process.communicate()
    finally:
        os.close(primary)
    wall_s = time.perf_counter() - started
    user_s = resource.getrusage(resource.RUSAGE_CHILDREN).ru_utime - before.ru_utime
    if process.returncode != 0:
        raise SystemExit(f"{' '.join(argv[:2])}... exited {process.returncode}: {stderr.decode()[-2000:]}")
    return wall_s, user_s


def bytecode_note() -> str:
    """Whether imports read cached bytecode: most of a cold start is compiling source when they do not."""
    spec = importlib.util.find_spec("pydantic")
    origin = spec.origin if spec is not None else None
    cached = origin is not None and Path(importlib.util.cache_from_source(origin)).exists()
    writes = "not written (PYTHONDONTWRITEBYTECODE)" if sys.dont_write_bytecode else "written on first import"
    return f"bytecode: libraries {'precompiled' if cached else 'not precompiled'}, caches {writes}"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--compare", type=Path, help="another checkout to measure alongside (e.g. origin/main)")
    parser.add_argument("--runs", type=int, default=RUNS)
    args = parser.parse_args()
    checkouts = {"this": ROOT}
    if args.compare is not None:
        checkouts["compare"] = args.compare.resolve()
    with tempfile.TemporaryDirectory(prefix="bench-startup-") as out:
        measured = commands(Path(out))
        times: dict[tuple[str, str], list[tuple[float, float]]] = {}
        for name, argv in measured.items():
            for _ in range(args.runs):
                for label, checkout in checkouts.items():  # alternating: both see the same load
                    times.setdefault((name, label), []).append(time_once(argv, checkout))
    print(f"median of {args.runs} fresh processes, wall / user seconds; goal: wall < {GOAL_S:.1f} s")
    print(f"load average: {' '.join(f'{load:.2f}' for load in os.getloadavg())}")
    print(bytecode_note())
    header = f"{'':32}" + "".join(f"{label + ' (' + str(path) + ')':>28}" for label, path in checkouts.items())
    print(header)
    over = []
    for name in measured:
        cells = []
        for label in checkouts:
            wall_s = statistics.median(wall for wall, _ in times[(name, label)])
            user_s = statistics.median(user for _, user in times[(name, label)])
            cells.append(f"{wall_s:>18.2f} / {user_s:.2f}")
            if label == "this" and wall_s >= GOAL_S:
                over.append(name)
        print(f"{name:32}" + "".join(cells))
    if over:
        print(f"over the goal of {GOAL_S:.1f} s: {', '.join(over)}")
        return 1
    print("all within the goal")
    return 0


if __name__ == "__main__":
    sys.exit(main())
