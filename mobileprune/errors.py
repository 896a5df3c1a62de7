"""The one exception type a user can cause.

Everything a user can get wrong (a path, a target, an architecture, a data folder) raises `UserError`
with a message that says what to do next. The CLI prints it as one line and exits 2; anything else is a
bug in mobileprune and keeps its traceback.
"""


class UserError(Exception):
    """A problem with the user's input, reported as one line by the CLI (exit code 2)."""
