"""The one exception type for mistakes a user can make (bad path, column, parameter)."""


class MlcycleError(Exception):
    """A user-caused error: shown as one line, exit code 2, no traceback."""
