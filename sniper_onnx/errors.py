"""The one exception type that reaches users as a one-line message."""


class SniperError(Exception):
    """A problem with the user's input or environment.

    The CLI prints ``str(error)`` on one line and exits non-zero without a traceback, so the message
    must name the file or value at fault and, where possible, what to do about it.
    """
