"""Errors a user can cause: each says what was wrong, where, and what to do."""

from __future__ import annotations


class MlopsError(Exception):
    """Base of every error the product reports to a person instead of a traceback.

    ``exit_code`` is what the command line exits with: 2 for unusable input or bad arguments,
    1 for input that was read but failed its checks.
    """

    exit_code = 2

    def __init__(self, message: str, *, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint

    def __str__(self) -> str:
        return f"{self.message} ({self.hint})" if self.hint else self.message


class SpecError(MlopsError):
    """A dataset spec file is missing, unreadable or invalid."""


class UnknownDatasetError(MlopsError):
    """A ``--dataset`` name that was never registered."""


class BadNameError(MlopsError):
    """A dataset name that could escape its folder or is not a plain identifier."""


class UnusableInputError(MlopsError):
    """A batch file that cannot be read as a table at all (empty, not parquet or CSV, too large)."""


class LandingError(MlopsError):
    """The landing zone could not take or move a file."""


class SettingsError(MlopsError, ValueError):
    """An ``MLOPS_*`` setting is invalid; the message names it but never quotes secret inputs."""
