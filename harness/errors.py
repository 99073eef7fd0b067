"""The harness's one exception tree; only `harness.cli` turns these into messages and exit codes.

HarnessError
 +-- ConfigError       the scenario file or a CLI override is wrong (names field, value, expectation)
 +-- BuildError        bentoml build / containerisation failed
 +-- DeployError       replicas could not be started, became unready, or could not be removed
 +-- LoadError         the load generator failed to start or died
 +-- MetricsError      a metrics source could not be read where it was required
 +-- ReportError       a run directory cannot be read back into reports
 |    +-- StorageError a record, report or file of the run directory cannot be written (a full disk)
 +-- MissingExtraError a part of the harness that is an optional extra (docker, kubernetes, helm) is not installed

The CLI sorts them into the exit codes of `harness.exit_codes`: the input's (ConfigError, ReportError,
MissingExtraError) and the infrastructure's (the others).
"""

from __future__ import annotations


class HarnessError(Exception):
    """Base of every error the harness raises on purpose; `hint` says what to do about it."""

    def __init__(self, message: str, *, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint

    def __str__(self) -> str:
        return f"{self.message} ({self.hint})" if self.hint else self.message


class ConfigError(HarnessError):
    """The scenario or an override is invalid; `problems` lists every problem found (the message is the first)."""

    def __init__(self, message: str, *, hint: str | None = None, problems: tuple[str, ...] = ()) -> None:
        super().__init__(message, hint=hint)
        self.problems = problems or (message,)


class BuildError(HarnessError):
    """Building the bento or its container image failed."""


class DeployError(HarnessError):
    """Starting, readying or stopping replicas failed."""


class LoadError(HarnessError):
    """The load generator could not run."""


class MetricsError(HarnessError):
    """A required metrics source could not be read."""


class ReportError(HarnessError):
    """A run directory is incomplete or unreadable."""


class StorageError(ReportError):
    """A record, report or other file of the run directory cannot be written."""


class MissingExtraError(HarnessError):
    """What the run needs is an optional extra that is not installed; the message names the install command."""
