"""Errors that reach the user as one clear line and exit code 2.

The library raises :class:`DataError` (unusable data on disk) or :class:`ConfigError` (an
invalid config key or value), never a bare :class:`UserError`; a broken calling contract is a
builtin such as ``ValueError``. Messages speak of files and config keys, never of command-line
flags: ``keys`` names the parameters or config keys that fix the problem, and the command line
turns them into its own flags.
"""

from __future__ import annotations

from collections.abc import Iterable


class UserError(Exception):
    """Bad input from the user: a file, a key or a value that cannot be used.

    The message is shown as one line without a traceback (unless ``--debug``) and the
    command exits with code 2. It names the file or key, says what was expected and what
    was found, and how to fix it.

    Args:
        message: the one-line message.
        keys: parameters or config keys (``overwrite``, ``train.steps``) that fix the problem;
            the command line names its flags for them.
    """

    exit_code = 2

    def __init__(self, message: str = "", *, keys: Iterable[str] = ()) -> None:
        super().__init__(message)
        self.keys: tuple[str, ...] = tuple(keys)


class DataError(UserError):
    """A scan, label map, table or dataset on disk is unusable, or arrays handed in do not fit."""


class ConfigError(UserError):
    """A configuration file or override is invalid."""


def first_line(err: BaseException) -> str:
    """The first non-empty line of ``err``'s message (its type's name when it has none), to quote a
    library's error inside one line of ours."""
    return next((line.strip() for line in str(err).splitlines() if line.strip()), type(err).__name__)
