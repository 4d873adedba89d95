"""The one family of exceptions wflp raises on bad input or stale state.

Every message says what is wrong *and* what to do about it, so that the CLI can
print it as a single line.
"""

from __future__ import annotations

from typing import Optional


class WflpError(Exception):
    """Base class of every error wflp raises on purpose."""


class InputError(WflpError):
    """An input (file, glob, list) cannot be read."""


class MalformedFileError(InputError):
    """A configuration file exists but its content cannot be parsed."""


class OutputError(WflpError):
    """An output specification does not fit the inputs it is asked to store."""


class RecordMismatchError(WflpError):
    """An existing output (or partial output) was made by a different computation."""

    def __init__(self, message: str, differences: dict | None = None):
        super().__init__(message)
        self.differences = differences or {}


class RecordError(RecordMismatchError):
    """A record file exists but is unreadable or is not a wflp record."""


class NotPicklableError(WflpError):
    """A function or argument must travel to worker processes but cannot be pickled."""


class ParameterError(WflpError, ValueError):
    """An argument value makes no sense (negative counts, unknown option ...)."""


class OperationError(WflpError):
    """An item failed inside an operation and the operation was asked to raise."""

    #: the traceback in the process that ran the item, when it was another one
    worker_traceback: Optional[str] = None


class ItemTimeoutError(OperationError):
    """An item ran longer than AutoparaInfo.item_time_limit; it counts as a failed item."""


class JobsPending(WflpError):
    """Queued jobs were submitted and not waited for (RemoteInfo(wait_for_results=False))."""


class PluginError(WflpError):
    """A plugin failed to load, registered something invalid, or clashes with another."""


class UnknownNameError(PluginError, KeyError):
    """No registered thing of that kind has that name."""

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0]) if self.args else ""
