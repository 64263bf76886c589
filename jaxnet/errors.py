"""User errors: the exception types the CLI prints as one line (exit 2)."""


class JaxnetError(Exception):
    """A mistake in what the user asked for (a flag, a file, a config value).

    Its message says what was wrong, what was expected and how to fix it. The CLI prints it
    as one line and exits with status 2; any other exception keeps its traceback.
    """


class ConfigError(JaxnetError, ValueError):
    """A config value or a combination of settings that cannot be used."""


class UsageError(JaxnetError):
    """A command line that cannot be run as given (a flag, a folder, a combination)."""
