"""What the Keras and Lightning callback tests share: a sweep of callback variants, each
trial writing what the framework itself logged (the oracle) beside what the callback reported."""
import json
import os

import fasttune as tune
from fasttune_testing import fit, lines


def sweep_variants(trainable, variants, storage, tmp_path):
    """Runs ``trainable(variant, oracle_path)`` for each variant, one trial at a time (one
    worker, one import of the framework); returns ``[(result, result.json's rows, the oracle
    the trial wrote or None), ...]`` in variant order."""
    oracles = [str(tmp_path / f"oracle{i}.json") for i in range(len(variants))]
    grid = fit(lambda config: trainable(variants[config["variant"]], oracles[config["variant"]]),
               storage, {"variant": tune.grid_search(list(range(len(variants))))},
               tune_config=tune.TuneConfig(max_concurrent_trials=1))
    by_variant = {result.config["variant"]: result for result in grid}
    swept = []
    for index, oracle_path in enumerate(oracles):
        oracle = None
        if os.path.exists(oracle_path):
            with open(oracle_path) as f:
                oracle = json.load(f)
        result = by_variant[index]
        rows_path = os.path.join(result.path, "result.json")  # none where a trial failed before reporting
        swept.append((result, lines(rows_path) if os.path.exists(rows_path) else [], oracle))
    return swept


def save_oracle(path, oracle):
    with open(path, "w") as f:
        json.dump(oracle, f)
