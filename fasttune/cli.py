"""The ``fasttune`` command line: ``fasttune ls``, ``fasttune plot`` and ``fasttune demo``.

The commands live in :mod:`fasttune._cli`, one module each; this is the entry point.

Example:
    >>> import json, os, tempfile
    >>> exp = tempfile.mkdtemp()  # an experiment directory with one finished trial
    >>> os.mkdir(os.path.join(exp, "trial_0"))
    >>> with open(os.path.join(exp, "trial_0", "params.json"), "w") as f:
    ...     json.dump({"lr": 0.1}, f)
    >>> with open(os.path.join(exp, "trial_0", "result.json"), "w") as f:
    ...     json.dump({"loss": 0.5, "training_iteration": 3, "done": True}, f)
    >>> main(["ls", exp])
    trial_id  status      training_iteration  config/lr
    --------  ----------  ------------------  ---------
    trial_0   TERMINATED                   3        0.1
    0
"""
from __future__ import annotations

import sys
from typing import List, Optional

from fasttune.error import TuneError


def main(argv: Optional[List[str]] = None) -> int:
    """Run the ``fasttune`` command with ``argv`` (default: ``sys.argv[1:]``); returns
    the exit status: 0 on success, 1 on an error it explains, 2 on a usage error."""
    from fasttune._cli import build_parser

    parser = build_parser()
    args = parser.parse_args(sys.argv[1:] if argv is None else argv)
    if args.command is None:
        parser.print_help()
        return 2
    try:
        return args.func(args)
    except (TuneError, OSError, ValueError) as exc:
        print(f"fasttune {args.command}: error: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
