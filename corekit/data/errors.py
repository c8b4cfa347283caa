"""User-facing error raised when a data set cannot be found, read or parsed."""

from corekit.errors import UserError


class DataError(UserError):
    """A data set is missing, corrupt or misnamed; the message says how to fix it."""


class DataWarning(UserWarning):
    """A data set was loaded, but something in it was skipped, resized or looks wrong."""
