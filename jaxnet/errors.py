"""User errors: the exception types the CLI prints as one line (exit 2)."""

from __future__ import annotations

import re
from collections.abc import Callable

# A setting named in a message, in backticks: `lr` or `lr=0.0`.
_SETTING = re.compile(r"`(\w+)(?:=([^`]*))?`")


def render(text: str, flag_of: Callable[[str], str | None] = lambda name: None) -> str:
    """`text` with each setting it names in backticks written for its reader.

    Args:
      text: a message naming settings as `name` or `name=value` (see JaxnetError).
      flag_of: a setting's name -> its flag ("lr" -> "--lr"), or None to keep the name.
        A `name=value` becomes "FLAG value" (quotes dropped), or stays "name=value".
    """
    def write(match):
        name, value = match.groups()
        flag = flag_of(name)
        if flag is None:
            return name if value is None else f"{name}={value}"
        if value is None:
            return flag
        if value in ("True", "False") and flag.startswith("--"):  # an on/off flag
            return flag if value == "True" else f"--no-{flag[2:]}"
        if len(value) >= 2 and value[0] == value[-1] and value[0] in "'\"":
            value = value[1:-1]
        return f"{flag} {value}"
    return _SETTING.sub(write, text)


class JaxnetError(Exception):
    """A mistake in what the user asked for (a setting, a file, a combination).

    Its message says what was wrong, what was expected and how to fix it. The CLI prints it
    as one line and exits with status 2; any other exception keeps its traceback.

    A message names the settings it is about by their library names, in backticks:
    "`lr=0.0` is invalid" or "pass `halving` too". `str(err)` shows them as the library
    calls them ("lr=0.0 is invalid"); the CLI shows its flags instead ("--lr 0.0 is
    invalid"). So the library states each rule once, in its own words, and the CLI only
    maps names to flags.
    """

    @property
    def template(self) -> str:
        """The message with its settings still in backticks, for `render`."""
        return super().__str__()

    @property
    def fields(self) -> tuple[str, ...]:
        """The settings the message names, each once, in order: ("test_fraction", ...)."""
        return tuple(dict.fromkeys(m.group(1) for m in _SETTING.finditer(self.template)))

    @property
    def field(self) -> str | None:
        """The setting at fault (the first the message names), or None."""
        return next(iter(self.fields), None)

    def __str__(self) -> str:
        return render(self.template)


class ConfigError(JaxnetError, ValueError):
    """A config value or a combination of settings that cannot be used."""


class UsageError(JaxnetError):
    """A command line that cannot be run as given (a flag, a folder, a combination)."""


class OutputExistsError(JaxnetError, FileExistsError):
    """A file the user made would be overwritten without being asked to."""
