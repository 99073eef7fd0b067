"""The process exit codes of every `harness` verb, in one place: the CLI, the verdict and the sweep use these."""

from __future__ import annotations

from enum import IntEnum


class ExitCode(IntEnum):
    """What a `harness` process's exit status means."""

    OK = 0
    FAIL = 1
    HARNESS_ERROR = 2
    INCONCLUSIVE = 3
    INTERRUPTED = 130

    @property
    def meaning(self) -> str:
        return _MEANING[self]


_MEANING: dict[ExitCode, str] = {
    ExitCode.OK: "every objective PASSed (or WARNed)",
    ExitCode.FAIL: "an objective FAILed, or `compare` found a regression",
    ExitCode.HARNESS_ERROR: "harness error: bad scenario or option, build/deploy/load failure, any unexpected error",
    ExitCode.INCONCLUSIVE: "INCONCLUSIVE: the run could not prove PASS or FAIL (too few samples, saturated load "
    "generator, crashed replicas)",
    ExitCode.INTERRUPTED: "interrupted (Ctrl-C / SIGTERM); what was collected is kept",
}
