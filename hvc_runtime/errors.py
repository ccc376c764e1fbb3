"""The one exception type users see: a one-line message naming the file and the problem."""


class HvcError(Exception):
    """A user-facing error; the CLI prints its message on one line and exits non-zero."""
