"""Argument types the ``fasttune`` subcommands share.

Example:
    >>> rows = positive_int("rows")
    >>> rows("3")
    3
"""
from __future__ import annotations

import argparse
from typing import Callable


def positive_int(what: str) -> Callable[[str], int]:
    """An argparse ``type`` for a count of ``what`` (1 or more), whose error names it."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
        if value < 1:
            raise argparse.ArgumentTypeError(f"{value} is not a positive number of {what}")
        return value

    return parse
