"""``python -m bench``: the throughput suite, fasttune against Ray Tune (see bench/README.md).

Same options as ``python -m bench.sweeps``; e.g. ``python -m bench --quick --repeats 1``.
"""
import sys

from bench.sweeps import main

sys.exit(main())
