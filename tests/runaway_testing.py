"""A guard that turns a runaway computation into a test failure instead of a hang.

Not a timing assertion: the bound is orders of magnitude above what the code under
test needs, and only stops what would otherwise run for minutes or hours (the main
thread's SIGALRM interrupts Python code and the regex engine, which checks for signals
as it runs).
"""
import contextlib
import signal


@contextlib.contextmanager
def stopped_after(seconds, what):
    """Run the block; if it is still running after ``seconds``, fail with ``what``."""

    def stop(signum, frame):
        raise AssertionError(f"{what} was still running after {seconds} s, which only a runaway (e.g. "
                             f"quadratic) computation takes; stopped.")

    previous = signal.signal(signal.SIGALRM, stop)
    signal.alarm(seconds)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)
