"""One exception tree; each error carries the exit code a task maps it to.

Exit codes: 1 = a check failed, 2 = usage or configuration error, 130 = interrupted.
"""

from __future__ import annotations


class OvapipeError(Exception):
    """Base of every error ovapipe reports to a user (message, never a traceback)."""

    exit_code = 1

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message

    def __str__(self) -> str:
        return self.message


class ConfigError(OvapipeError):
    """Bad flags, variables, files or environment: the user must change the input."""

    exit_code = 2


class CheckFailed(OvapipeError):
    """A gate (validate-ova, validate-template, preflight) found an error."""

    exit_code = 1


class VSphereError(OvapipeError):
    """vCenter refused or failed an operation."""

    exit_code = 1


class BuildError(OvapipeError):
    """Packer or a build step failed."""

    exit_code = 1


class StepFailed(OvapipeError):
    """A step of a multistep run failed; names the step and the cause."""

    def __init__(self, step: str, cause: BaseException) -> None:
        exit_code = cause.exit_code if isinstance(cause, OvapipeError) else 1
        super().__init__(f"step '{step}' failed: {cause}")
        self.step = step
        self.cause = cause
        self.exit_code = exit_code


class Interrupted(OvapipeError):
    """Ctrl-C or SIGTERM; cleanups have run."""

    exit_code = 130
