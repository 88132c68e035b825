"""Errors a user can cause, printed as one line by the command-line tools."""


class UserError(Exception):
    """A mistake in the user's input (a file, an option): shown as one line, exit status 2."""


class CorpusError(UserError):
    """A corpus file that cannot be read; the message starts with ``FILE:LINE:``."""


class TrainingError(Exception):
    """A training run that cannot go on (for example a NaN loss)."""


class NonFiniteLossError(TrainingError):
    """The training loss became NaN or infinite."""


def caused_by_interrupt(error: BaseException | None) -> bool:
    """Whether Ctrl-C (KeyboardInterrupt) is ``error`` or in its chain: an interrupt that lands while
    a file or a query is being written often surfaces as the error of the write it cut short."""
    while error is not None:
        if isinstance(error, KeyboardInterrupt):
            return True
        error = error.__cause__ or error.__context__
    return False
