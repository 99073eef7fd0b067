"""The process exit codes of every `harness` verb, in one place: the CLI, the verdict and the sweep use these.

Like k6's, a mistake in the input, a failure of the infrastructure under the run and an interruption each have
a code of their own, apart from the verdict's, so a CI job can tell "the service is too slow" from "the
scenario has a typo" and "the cluster was unreachable". Only `harness.cli` maps errors to them.
"""

from __future__ import annotations

from enum import IntEnum


class ExitCode(IntEnum):
    """What a `harness` process's exit status means."""

    OK = 0
    FAIL = 1
    BAD_INPUT = 2
    INCONCLUSIVE = 3
    INFRASTRUCTURE = 4
    INTERNAL_ERROR = 5
    INTERRUPTED = 130

    @property
    def meaning(self) -> str:
        return _MEANING[self]


_MEANING: dict[ExitCode, str] = {
    ExitCode.OK: "PASS (or WARN): every objective held",
    ExitCode.FAIL: "FAIL: an objective failed (with --fail-on warn, also WARN); `compare` found a regression",
    ExitCode.BAD_INPUT: "bad input: the scenario, an option or an environment variable is wrong, or an extra "
    "it needs is not installed",
    ExitCode.INCONCLUSIVE: "INCONCLUSIVE: the run could not prove PASS or FAIL (too few samples, saturated load "
    "generator, crashed replicas)",
    ExitCode.INFRASTRUCTURE: "infrastructure failure: a build, an image, a deployment, the cluster, the load "
    "generator, a metrics source or the disk failed",
    ExitCode.INTERNAL_ERROR: "internal error: an unexpected error in the harness itself (--debug shows the traceback)",
    ExitCode.INTERRUPTED: "interrupted (Ctrl-C / SIGTERM); what was collected is kept",
}
