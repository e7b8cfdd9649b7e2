"""Errors that reach the user as one line on stderr.

Anything raised as a :class:`GencliError` is printed by the CLI as ``gencli: <message>`` and
turned into its ``exit_code`` (1 for runtime failures, 2 for usage errors). Library code raises
these with a message that names the file/reference and says what the user can do.
"""


class GencliError(Exception):
    """A runtime failure with a one-line, actionable message (exit code 1)."""

    exit_code = 1


class UsageError(GencliError):
    """The user asked for something that does not make sense (exit code 2)."""

    exit_code = 2


class InputError(GencliError):
    """A user-supplied input (image, folder, checkpoint...) is unreadable or invalid."""


class WeightsNotFound(GencliError):
    """A weights reference could not be resolved anywhere."""


class CapabilityError(UsageError):
    """A family was asked for something it cannot do (e.g. ddpm cannot translate)."""
