"""One exception type for mistakes a user can fix: the CLI prints its message and exits 2, no traceback."""


class UsageError(Exception):
    """Bad input (a path, a name, a key, a value): the message says what was wrong and what would be right."""

    exit_code = 2


class TrainingFailed(Exception):
    """A run that started but could not finish (for example it diverged): exit 1, the others carry on."""

    exit_code = 1
