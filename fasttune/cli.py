"""The ``fasttune`` command line: ``fasttune demo`` runs a real sweep on a local Ray."""
from __future__ import annotations

import argparse
import os
import sys
from typing import List, Optional

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


def demo(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(
        prog="fasttune demo",
        description="Run a seeded grid + random search of a ridge regression on a local Ray.",
    )
    parser.add_argument("--storage-path", default=os.path.abspath("fasttune_results"),
                        help="where results go (default: ./fasttune_results)")
    parser.add_argument("--num-samples", type=int, default=8, help="random samples per grid point (default 8)")
    parser.add_argument("--epochs", type=int, default=20, help="epochs per trial (default 20)")
    parser.add_argument("--seed", type=int, default=2024, help="seed of the random search (default 2024)")
    args = parser.parse_args(argv)

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
        run_config=tune.RunConfig(name="demo", storage_path=args.storage_path),
    )
    results = tuner.fit()
    best = results.get_best_result()
    print()
    print(f"Best val_loss: {best.metrics['val_loss']:.4f}")
    print(f"Best config:   {{'lr': {best.config['lr']:.5f}, 'l2': {best.config['l2']}, "
          f"'batch_size': {best.config['batch_size']}}}")
    print(f"Results:       {results.experiment_path}")
    return 0


def main(argv: Optional[List[str]] = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = argparse.ArgumentParser(prog="fasttune", description="fasttune command line")
    parser.add_argument("command", choices=["demo"], help="demo: run a real sweep on a local Ray")
    if not argv or argv[0] in ("-h", "--help"):
        parser.print_help()
        return 0 if argv else 2
    command, rest = argv[0], argv[1:]
    if command == "demo":
        return demo(rest)
    parser.parse_args([command])
    return 2


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
