"""``fasttune demo``: a real sweep (mini-batch SGD on a ridge regression) on a local Ray.

Example:
    >>> import argparse
    >>> parser = argparse.ArgumentParser(prog="fasttune")
    >>> _ = add_parser(parser.add_subparsers())
    >>> parser.parse_args(["demo", "--num-samples", "2"]).num_samples
    2
"""
from __future__ import annotations

import argparse
import os
from typing import Any

import numpy as np


def _make_data(seed: int = 0):
    rng = np.random.default_rng(seed)
    n, d = 20000, 50
    X = rng.normal(size=(n, d))
    w_true = rng.normal(size=d) * (rng.random(d) < 0.5)
    y = X @ w_true + rng.normal(scale=0.5, size=n)
    return X[:16000], y[:16000], X[16000:], y[16000:]


def train_ridge(config):
    """Mini-batch SGD on a ridge regression; reports validation MSE every epoch."""
    import fasttune as tune

    X, y, X_val, y_val = _make_data(0)
    rng = np.random.default_rng(config.get("seed", 0))
    w = np.zeros(X.shape[1])
    batch = int(config["batch_size"])
    for epoch in range(int(config["epochs"])):
        order = rng.permutation(len(X))
        for start in range(0, len(X), batch):
            idx = order[start:start + batch]
            grad = X[idx].T @ (X[idx] @ w - y[idx]) / len(idx) + config["l2"] * w
            w -= config["lr"] * grad
        val_loss = float(np.mean((X_val @ w - y_val) ** 2))
        if not np.isfinite(val_loss):
            val_loss = float("inf")
        tune.report({"val_loss": val_loss, "epoch": epoch})


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    """Add ``demo`` to the ``fasttune`` command's subparsers."""
    parser = subparsers.add_parser(
        "demo", help="run a real sweep (ridge regression) on a local Ray",
        description="Run a seeded grid + random search of a ridge regression on a local Ray, then "
                    "inspect it with fasttune ls / fasttune plot.",
    )
    parser.add_argument("--storage-path", default=os.path.abspath("fasttune_results"),
                        help="where results go (default: ./fasttune_results)")
    parser.add_argument("--num-samples", type=int, default=8, help="random samples per grid point (default 8)")
    parser.add_argument("--epochs", type=int, default=20, help="epochs per trial (default 20)")
    parser.add_argument("--seed", type=int, default=2024, help="seed of the random search (default 2024)")
    # A demo shows the live view and the summary; 3 (Ray Tune's default) prints every trial's results.
    parser.add_argument("--verbose", type=int, choices=[0, 1, 2, 3], default=1,
                        help="0 silent, 1 live status (default), 2 also a line per trial, 3 also every result")
    parser.set_defaults(func=run)
    return parser


def run(args: argparse.Namespace) -> int:
    """Run the demo sweep for parsed ``args`` and print the best trial."""
    import fasttune as tune
    from fasttune.search.basic_variant import BasicVariantGenerator

    tuner = tune.Tuner(
        train_ridge,
        param_space={
            "lr": tune.loguniform(1e-3, 3e-1),
            "l2": tune.grid_search([0.0, 1e-3, 1e-1]),
            "batch_size": tune.choice([16, 32, 64]),
            "epochs": args.epochs,
        },
        tune_config=tune.TuneConfig(
            metric="val_loss",
            mode="min",
            num_samples=args.num_samples,
            search_alg=BasicVariantGenerator(random_state=args.seed),
        ),
        run_config=tune.RunConfig(name="demo", storage_path=args.storage_path, verbose=args.verbose),
    )
    results = tuner.fit()
    best = results.get_best_result()
    print()
    print(f"Best val_loss: {best.metrics['val_loss']:.4f}")
    print(f"Best config:   {{'lr': {best.config['lr']:.5f}, 'l2': {best.config['l2']}, "
          f"'batch_size': {best.config['batch_size']}}}")
    print(f"Results:       {results.experiment_path}")
    print(f"Inspect with:  fasttune ls {results.experiment_path} --sort best:val_loss --limit 5")
    print(f"               fasttune plot {results.experiment_path} -o demo.png")
    return 0
