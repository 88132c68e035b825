"""Errors a user can cause, printed as one line by the command-line tools."""


class UserError(Exception):
    """A mistake in the user's input (a file, an option): shown as one line, exit status 2."""


class CorpusError(UserError):
    """A corpus file that cannot be read; the message starts with ``FILE:LINE:``."""


class TrainingError(Exception):
    """A training run that cannot go on (for example a NaN loss)."""


class NonFiniteLossError(TrainingError):
    """The training loss became NaN or infinite."""
