"""The one exception type that the CLI turns into a one-line error and a non-zero exit."""


class UserError(Exception):
    """Bad input from the user (file, key, value); the message names what and what was expected."""
