"""Errors that fasttune raises to its users."""


class TuneError(Exception):
    """A sweep could not go on; the message names the problem and the fix.

    Example:
        >>> from fasttune import TuneError
        >>> issubclass(TuneError, Exception)
        True
    """


class TuneStopTrial(BaseException):
    """Raised inside a trainable's ``report()`` to end the trial early.

    It derives from ``BaseException`` so that a trainable's ``except Exception``
    cannot swallow it; fasttune catches it where the trainable was started.
    """
