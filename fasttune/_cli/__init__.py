"""The ``fasttune`` command's subcommands, one module each (``ls``, ``plot``, ``demo``).

``fasttune ls`` and ``fasttune plot`` read experiment directories without Ray;
``fasttune demo`` starts a local Ray.

Example:
    >>> parser = build_parser()
    >>> parser.parse_args(["ls", "results/my_sweep"]).path
    'results/my_sweep'
"""
from __future__ import annotations

import argparse

from fasttune._cli import demo, ls, plot


def build_parser() -> argparse.ArgumentParser:
    """The ``fasttune`` argument parser, with a subparser per command."""
    from fasttune import __version__

    parser = argparse.ArgumentParser(
        prog="fasttune",
        description="fasttune command line: inspect experiments (no Ray needed) and run a demo sweep.",
        epilog="Run 'fasttune COMMAND --help' for a command's options.")
    parser.add_argument("--version", action="version", version=f"fasttune {__version__}")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    ls.add_parser(subparsers)
    plot.add_parser(subparsers)
    demo.add_parser(subparsers)
    return parser
