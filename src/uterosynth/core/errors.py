"""Errors that reach the user as one clear line and exit code 2."""

from __future__ import annotations


class UserError(Exception):
    """Bad input from the user: a file, a key or a value that cannot be used.

    The message is shown as one line without a traceback (unless ``--debug``) and the
    command exits with code 2. It names the file or key, says what was expected and what
    was found, and how to fix it.
    """

    exit_code = 2


class DataError(UserError):
    """A scan, label map, table or dataset on disk is unusable."""


class ConfigError(UserError):
    """A configuration file or override is invalid."""
