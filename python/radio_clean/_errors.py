"""What lies under an exception: the operating-system error that caused it, if one did."""

from __future__ import annotations

__all__ = ["os_error_in"]


def os_error_in(err: BaseException | None) -> OSError | None:
    """The `OSError` (disk full, read-only file system...) that caused ``err``, if one did.

    The middleware wraps write errors (``RuntimeError: Failed to serialize
    dataset ...``); the cause chain still holds the operating system's reason.
    """
    while err is not None and not isinstance(err, OSError):
        err = err.__cause__ or err.__context__
    return err
