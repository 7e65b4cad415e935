"""User-facing errors.

Every mistake a user can make (a missing file, an unknown sampler name, a bad number)
raises :class:`GenimageError` with one line that says what was wrong and how to fix it.
The CLI prints that line and exits non-zero; it never shows a traceback for these.
"""


class GenimageError(Exception):
    """A user error with a one-line, actionable message."""
