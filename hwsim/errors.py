"""The one exception type for user errors.

Library functions raise :class:`HwsimError` for anything a user can get wrong (an unknown name, a value out
of range, a malformed file). The CLI turns it into one line on stderr and exit code 2; it never shows a
traceback for these.
"""


class HwsimError(ValueError):
    """A user error: bad input that the message explains in one line."""
