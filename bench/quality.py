"""Quality suite: anytime best-so-far curves of fasttune's searchers and schedulers.

    python -m bench.quality                       # every algorithm x problem, 5 seeds
    python -m bench.quality --seeds 3 --algorithms random,tpe --problems branin

Searchers (``random`` = BasicVariantGenerator, ``tpe`` = OptunaSearch, ``hyperopt`` =
HyperOptSearch, ``nevergrad`` = NevergradSearch with NGOpt, ``bayesopt`` = BayesOptSearch
with Ray Tune's defaults, ``zoopt`` = ZOOptSearch (ASRacos) with the run's budget; each where its package is installed, otherwise recorded as skipped) run on Branin, Hartmann-6 and Rosenbrock-4,
one result per trial; their budget axis is *trials completed*.  Schedulers (``fifo``,
``asha``, ``hyperband``, ``median`` = MedianStoppingRule, ``pbt``, ``pb2``) run random
configs (seeded BasicVariantGenerator; ``bohb``, HyperBandForBOHB, runs TuneBOHB's instead)
on the iterative versions of the same functions
(see :mod:`bench.problems`) and on the PBT toy problem; their budget axis is
*training iterations consumed* by all trials together, and a run ends when the budget
is spent (a :class:`~fasttune.Stopper` counts the results).

Reproducible bit for bit: the x axis is a budget, never wall time; every loss is a pure
function of config and iteration; every source of randomness is seeded (the searcher's
own seed, BasicVariantGenerator's ``random_state``, and ``random`` / ``numpy.random``
for PBT and PB2); and one trial runs at a time, so results reach the driver, and the
schedulers' and searchers' decisions are made, in the same order on every run.  The
exception is ``bohb``: TuneBOHB is asked for the next trial while trials run (HyperBand's
brackets fill ahead), so what it has heard by then, and its curve, depend on timing.
Searchers run with ``TuneConfig(max_concurrent_trials=1)``: a searcher is asked for its
next trial only after the last one completed and was told.  Scheduler trials each ask
for all of the cluster's CPUs instead, so the next trial waits PENDING while one runs:
HyperBand's brackets fill and PBT's population takes turns at its perturbation points
(with ``max_concurrent_trials=1`` a trial is only created once the last one ended, and
brackets and populations would hold one trial).

Output: ``bench/out/quality-<timestamp>.json`` and ``quality-latest.{json,md}`` (every
seed's curve, the final best median and interquartile range per algorithm x problem) and
PNG plots beside them (median and IQR band over seeds; regret on a log axis).

Example (a tiny budget; needs a running Ray):
    >>> from bench.quality import run_one           # doctest: +SKIP
    >>> curve = run_one("random", "branin", seed=0, budget=8)   # doctest: +SKIP
    >>> len(curve), curve[-1] <= curve[0]            # doctest: +SKIP
    (8, True)
"""
from __future__ import annotations

import argparse
import datetime as _dt
import json
import os
import random
import shutil
import sys
import tempfile
import time
from dataclasses import dataclass
from typing import Any, Callable, Dict, List, Optional, Sequence

import numpy as np

import fasttune as tune
from bench.problems import PBT_TOY, PROBLEMS, Problem, ToyProblem, toy_step

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
OUT_DIR = os.path.join(REPO_ROOT, "bench", "out")

# Trials per searcher run, per problem (one result each).
SEARCHER_BUDGETS = {"branin": 50, "hartmann6": 100, "rosenbrock4": 100}
# Schedulers on the synthetic functions: trials train up to MAX_T iterations; the budget is
# what a population of POPULATION fully trained trials costs (what FIFO spends on them).
MAX_T = 27
POPULATION = 16
PERTURBATION_INTERVAL = 3
SCHEDULER_BUDGET = POPULATION * MAX_T
# The PBT toy problem: a population of 8 trained for PBT_TOY.steps iterations each.
TOY_POPULATION = 8
TOY_PERTURBATION_INTERVAL = 4
TOY_BUDGET = TOY_POPULATION * PBT_TOY.steps

SEARCHERS = ("random", "tpe", "hyperopt", "nevergrad", "bayesopt", "zoopt")
SCHEDULERS = ("fifo", "asha", "hyperband", "median", "pbt", "pb2", "bohb")


# --------------------------------------------------------------------------
# Trainables (class trainables: pause, resume and PBT's exploit go through their state)
# --------------------------------------------------------------------------

class SyntheticTrial(tune.Trainable):
    """Trains towards ``f(x)`` of the problem named by ``config["problem"]``: the loss at
    iteration t is ``Problem.loss(config, t)``; stops itself at ``config["max_t"]``.
    ``max_t == 0`` is a searcher's trial: one result, ``f(x)`` itself."""

    def setup(self, config: Dict[str, Any]) -> None:
        self.problem = PROBLEMS[config["problem"]]

    def step(self) -> Dict[str, Any]:
        if self.config["max_t"] == 0:
            return {"loss": self.problem.value(self.config), "done": True}
        t = self.iteration + 1
        return {"loss": self.problem.loss(self.config, t), "done": t >= self.config["max_t"]}

    def save_checkpoint(self, checkpoint_dir: str) -> Dict[str, Any]:
        return {}  # the iteration counter is restored by the engine

    def load_checkpoint(self, checkpoint: Dict[str, Any]) -> None:
        pass

    def reset_config(self, new_config: Dict[str, Any]) -> bool:
        return True


class ToyTrial(tune.Trainable):
    """The PBT toy problem: progress ``q`` after each step with this trial's ``lr``."""

    def setup(self, config: Dict[str, Any]) -> None:
        self.q = 0.0

    def step(self) -> Dict[str, Any]:
        self.q = toy_step(self.q, self.config["lr"])
        return {"q": self.q, "done": self.iteration + 1 >= self.config["max_t"]}

    def save_checkpoint(self, checkpoint_dir: str) -> Dict[str, Any]:
        return {"q": self.q}

    def load_checkpoint(self, checkpoint: Dict[str, Any]) -> None:
        self.q = checkpoint["q"]

    def reset_config(self, new_config: Dict[str, Any]) -> bool:
        return True


# --------------------------------------------------------------------------
# Recording and budget
# --------------------------------------------------------------------------

class ResultRecorder(tune.Callback):
    """Keeps the metric of every result in the order the driver handles them."""

    def __init__(self, metric: str) -> None:
        self.metric = metric
        self.values: List[float] = []

    def on_trial_result(self, iteration, trials, trial, result, **info) -> None:
        self.values.append(float(result[self.metric]))


class ResultBudget(tune.Stopper):
    """Ends the experiment once ``budget`` results (training iterations) were reported."""

    def __init__(self, budget: int) -> None:
        self.budget = budget
        self.seen = 0

    def __call__(self, trial_id: str, result: Dict[str, Any]) -> bool:
        self.seen += 1
        return False

    def stop_all(self) -> bool:
        return self.seen >= self.budget


def best_so_far(values: Sequence[float], mode: str, budget: int) -> List[float]:
    """The anytime best of ``values`` at each of ``budget`` budget points; a run that
    ended early (all its trials done) keeps its last best to the end.

    Example:
        >>> best_so_far([3.0, 1.0, 2.0], "min", 4)
        [3.0, 1.0, 1.0, 1.0]
    """
    if not values:
        raise ValueError("best_so_far: the run reported no results; check its errors.")
    pick = min if mode == "min" else max
    out: List[float] = []
    best = values[0]
    for v in values[:budget]:
        best = pick(best, v)
        out.append(best)
    out.extend([best] * (budget - len(out)))
    return out


# --------------------------------------------------------------------------
# Algorithms
# --------------------------------------------------------------------------

def _space(problem: Problem) -> Dict[str, Any]:
    return {n: tune.uniform(lo, hi) for n, (lo, hi) in problem.space_bounds().items()}


def _nevergrad(problem: Problem, seed: int, budget: int):
    import nevergrad as ng

    from fasttune.search.nevergrad import NevergradSearch

    params = ng.p.Dict(**{n: ng.p.Scalar(lower=lo, upper=hi) for n, (lo, hi) in problem.space_bounds().items()})
    params.random_state = np.random.RandomState(seed)
    return NevergradSearch(optimizer=ng.optimizers.NGOpt(parametrization=params, budget=budget, num_workers=1),
                           metric="loss", mode="min")


def make_searcher(name: str, problem: Problem, seed: int, budget: int):
    """The search algorithm ``name`` for ``problem``, seeded; ImportError when its
    package is not installed."""
    if name == "random":
        from fasttune.search import BasicVariantGenerator

        return BasicVariantGenerator(random_state=seed)
    if name == "tpe":
        import optuna

        from fasttune.search.optuna import OptunaSearch

        optuna.logging.set_verbosity(optuna.logging.WARNING)
        return OptunaSearch(sampler=optuna.samplers.TPESampler(seed=seed))
    if name == "hyperopt":
        from fasttune.search.hyperopt import HyperOptSearch

        return HyperOptSearch(random_state_seed=seed)
    if name == "nevergrad":
        return _nevergrad(problem, seed, budget)
    if name == "bayesopt":
        from fasttune.search.bayesopt import BayesOptSearch

        return BayesOptSearch(random_state=seed)
    if name == "zoopt":
        from fasttune.search.zoopt import ZOOptSearch

        return ZOOptSearch(budget=budget, seed=seed)
    raise ValueError(f"unknown searcher {name!r}; known: {', '.join(SEARCHERS)}")


def _bohb_searcher(seed: int):
    """BOHB's half that suggests configs, seeded (``bohb`` runs it with HyperBandForBOHB)."""
    from fasttune.search.bohb import TuneBOHB

    return TuneBOHB(seed=seed)


def make_scheduler(name: str, bounds: Dict[str, tuple], max_t: int, interval: int,
                   log_scale: bool = False):
    """The scheduler ``name`` over the parameters ``bounds`` (name -> (low, high)), every
    rule on the ``training_iteration`` clock (never wall time)."""
    from fasttune import schedulers

    clock = "training_iteration"
    if name == "fifo":
        return schedulers.FIFOScheduler()
    if name == "asha":
        return schedulers.ASHAScheduler(time_attr=clock, max_t=max_t, grace_period=1, reduction_factor=3)
    if name == "hyperband":
        return schedulers.HyperBandScheduler(time_attr=clock, max_t=max_t, reduction_factor=3)
    if name == "median":
        return schedulers.MedianStoppingRule(time_attr=clock, grace_period=interval, min_samples_required=3)
    if name == "pbt":
        sample = tune.loguniform if log_scale else tune.uniform
        return schedulers.PopulationBasedTraining(
            time_attr=clock, perturbation_interval=interval,
            hyperparam_mutations={n: sample(lo, hi) for n, (lo, hi) in bounds.items()})
    if name == "pb2":
        from fasttune.schedulers.pb2 import PB2

        return PB2(time_attr=clock, perturbation_interval=interval,
                   hyperparam_bounds={n: [lo, hi] for n, (lo, hi) in bounds.items()})
    if name == "bohb":
        return schedulers.HyperBandForBOHB(time_attr=clock, max_t=max_t, reduction_factor=3)
    raise ValueError(f"unknown scheduler {name!r}; known: {', '.join(SCHEDULERS)}")


@dataclass(frozen=True)
class _Plan:
    trainable: Any
    param_space: Dict[str, Any]
    metric: str
    mode: str
    budget: int
    num_samples: int
    search_alg: Any = None
    scheduler: Any = None
    stopper: Any = None
    checkpoint_frequency: int = 0


def _plan(algorithm: str, problem_name: str, seed: int, budget: Optional[int]) -> _Plan:
    from fasttune.search import BasicVariantGenerator

    if algorithm in SEARCHERS:
        if problem_name not in PROBLEMS:
            raise ValueError(f"searchers run on {', '.join(PROBLEMS)}, not {problem_name!r}")
        problem = PROBLEMS[problem_name]
        budget = budget or SEARCHER_BUDGETS[problem_name]
        space = dict(_space(problem), problem=problem.name, max_t=0)
        if algorithm == "nevergrad":  # its seeded parametrization holds the domains
            space = {"problem": problem.name, "max_t": 0}
        return _Plan(SyntheticTrial, space, "loss", "min", budget, budget,
                     search_alg=make_searcher(algorithm, problem, seed, budget))
    if algorithm not in SCHEDULERS:
        raise ValueError(f"unknown algorithm {algorithm!r}; known: {', '.join(SEARCHERS + SCHEDULERS)}")
    if problem_name == PBT_TOY.name:
        budget = budget or TOY_BUDGET
        bounds, max_t, interval, population = {"lr": PBT_TOY.lr_bounds}, PBT_TOY.steps, TOY_PERTURBATION_INTERVAL, TOY_POPULATION
        space = {"lr": tune.loguniform(*PBT_TOY.lr_bounds), "max_t": max_t}
        trainable, metric, mode, log_scale = ToyTrial, "q", "max", True
    elif problem_name in PROBLEMS:
        problem = PROBLEMS[problem_name]
        budget = budget or SCHEDULER_BUDGET
        bounds, max_t, interval, population = problem.space_bounds(), MAX_T, PERTURBATION_INTERVAL, POPULATION
        space = dict(_space(problem), problem=problem.name, max_t=max_t)
        trainable, metric, mode, log_scale = SyntheticTrial, "loss", "min", False
    else:
        raise ValueError(f"unknown problem {problem_name!r}; known: {', '.join(list(PROBLEMS) + [PBT_TOY.name])}")
    # FIFO and the population schedulers train a fixed population to max_t; the early
    # stoppers get as many trials as the budget could start and stop when it is spent.
    fixed = algorithm in ("fifo", "pbt", "pb2")
    num_samples = max(1, budget // max_t) if fixed else budget
    return _Plan(trainable, space, metric, mode, budget, num_samples,
                 search_alg=(_bohb_searcher(seed) if algorithm == "bohb"
                             else BasicVariantGenerator(random_state=seed)),
                 scheduler=make_scheduler(algorithm, bounds, max_t, interval, log_scale),
                 stopper=ResultBudget(budget),
                 checkpoint_frequency=interval if algorithm in ("pbt", "pb2") else 0)


def run_one(algorithm: str, problem: str, seed: int, budget: Optional[int] = None,
            storage_root: Optional[str] = None) -> List[float]:
    """One seeded run through ``Tuner.fit()``: the best-so-far curve over the budget
    (trials completed for searchers, iterations consumed for schedulers).  Needs Ray
    started (``ray.init()``); ImportError when the algorithm's package is missing."""
    random.seed(seed)
    np.random.seed(seed)
    plan = _plan(algorithm, problem, seed, budget)
    recorder = ResultRecorder(plan.metric)
    trainable, max_concurrent = plan.trainable, 1
    if plan.scheduler is not None:
        # Each trial asks for every CPU, so one runs at a time while the next waits
        # PENDING: HyperBand's brackets fill and PBT's population takes turns, as they do
        # when trials outnumber CPUs.  (max_concurrent_trials=1 would create a trial only
        # once the last one ended: a bracket or population of one.)
        import ray

        trainable = tune.with_resources(plan.trainable, {"cpu": ray.cluster_resources().get("CPU", 1)})
        max_concurrent = None
    storage = tempfile.mkdtemp(prefix=f"quality-{algorithm}-{problem}-", dir=storage_root)
    try:
        tuner = tune.Tuner(
            trainable,
            param_space=plan.param_space,
            tune_config=tune.TuneConfig(
                metric=plan.metric, mode=plan.mode, num_samples=plan.num_samples,
                search_alg=plan.search_alg, scheduler=plan.scheduler,
                max_concurrent_trials=max_concurrent, reuse_actors=True),
            run_config=tune.RunConfig(
                name="quality", storage_path=storage, verbose=0, stop=plan.stopper,
                callbacks=[recorder],
                checkpoint_config=tune.CheckpointConfig(
                    checkpoint_frequency=plan.checkpoint_frequency, num_to_keep=2)),
        )
        grid = tuner.fit()
        errors = [r.error for r in grid if r.error is not None]
        if errors:
            raise RuntimeError(f"{algorithm} on {problem} (seed {seed}): {len(errors)} trial(s) "
                               f"failed; the first: {errors[0]}")
    finally:
        shutil.rmtree(storage, ignore_errors=True)
    return best_so_far(recorder.values, plan.mode, plan.budget)


# --------------------------------------------------------------------------
# Summaries and report
# --------------------------------------------------------------------------

def quartiles(curves: Sequence[Sequence[float]]) -> Dict[str, List[float]]:
    """Median and interquartile band over seeds at every budget point.

    Example:
        >>> quartiles([[1.0, 1.0], [2.0, 0.5], [3.0, 0.5]])["median"]
        [2.0, 0.5]
    """
    q1, med, q3 = np.percentile(np.asarray(curves, dtype=float), [25, 50, 75], axis=0)
    return {"q1": q1.tolist(), "median": med.tolist(), "q3": q3.tolist()}


def _problem_meta(name: str) -> Dict[str, Any]:
    if name == PBT_TOY.name:
        return {"optimum": None, "mode": "max", "metric": "q", "axis": "training iterations consumed"}
    return {"optimum": PROBLEMS[name].optimum, "mode": "min", "metric": "loss",
            "dim": PROBLEMS[name].dim}


def _fmt(x: float) -> str:
    return f"{x:.4g}" if abs(x) < 1e4 else f"{x:,.0f}"


def render_markdown(report: Dict[str, Any]) -> str:
    """The final-best table (median [q1, q3] over seeds) per algorithm x problem."""
    problems = report["problems"]
    lines = [
        f"- command: `{report['command']}`",
        f"- seeds: {report['seeds']}; git {report['machine'].get('git_rev')}; "
        f"one trial at a time (searchers: `max_concurrent_trials=1`; schedulers: each trial "
        f"asks for every CPU, the next waits PENDING); budgets in trials or iterations, "
        f"never wall time",
        "",
    ]
    for kind, algos, axis in (("searchers", report["searchers"], "trials"),
                              ("schedulers", report["schedulers"], "training iterations")):
        cols = [p for p in problems if any((a, p) in _keys(report) for a in algos)]
        if not cols:
            continue
        head = ["algorithm"] + [
            f"{p} (budget {report['budgets'][kind][p]} {axis}; "
            + (f"optimum {_problem_meta(p)['optimum']})" if _problem_meta(p)["optimum"] is not None
               else "max q)")
            for p in cols]
        lines += [f"**{kind.capitalize()}**: final best, median [q1 – q3] over seeds "
                  f"({'lower' if kind == 'searchers' else 'lower, except q: higher'} is better)", "",
                  "| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
        for a in algos:
            cells = [a]
            for p in cols:
                entry = report["results"].get(f"{a}/{p}")
                if entry is None:
                    cells.append("—")
                elif "skipped" in entry:
                    cells.append("skipped")
                else:
                    f = entry["final"]
                    cells.append(f"{_fmt(f['median'])} [{_fmt(f['q1'])} – {_fmt(f['q3'])}]")
            lines.append("| " + " | ".join(cells) + " |")
        lines.append("")
    for key, entry in report["results"].items():
        if "skipped" in entry:
            lines.append(f"- {key}: skipped ({entry['skipped']})")
    return "\n".join(lines) + "\n"


def _keys(report: Dict[str, Any]):
    return {tuple(k.split("/")) for k in report["results"]}


def _save(report: Dict[str, Any], out_dir: str, stamp: str) -> str:
    """Write the report as JSON and Markdown (timestamped and ``quality-latest``)."""
    md = render_markdown(report)
    for base in (f"quality-{stamp}", "quality-latest"):
        with open(os.path.join(out_dir, base + ".json"), "w") as f:
            json.dump(report, f)
        with open(os.path.join(out_dir, base + ".md"), "w") as f:
            f.write(md)
    return md


def main(argv: Optional[List[str]] = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    p = argparse.ArgumentParser(prog="python -m bench.quality",
                                description="Anytime best-so-far curves of searchers and schedulers.")
    p.add_argument("--seeds", type=int, default=5, help="seeds 0..N-1 per algorithm x problem")
    p.add_argument("--algorithms", default=",".join(SEARCHERS + SCHEDULERS))
    p.add_argument("--problems", default=",".join(list(PROBLEMS) + [PBT_TOY.name]))
    p.add_argument("--budget", type=int, default=None,
                   help="override every budget (trials or iterations), e.g. for a smoke check")
    p.add_argument("--out-dir", default=OUT_DIR)
    p.add_argument("--storage-root", default=None, help="where each run's storage_path is made")
    p.add_argument("--no-plots", action="store_true", help="JSON and Markdown only")
    args = p.parse_args(argv)
    algorithms = [a for a in args.algorithms.split(",") if a]
    problems = [x for x in args.problems.split(",") if x]
    for a in algorithms:
        if a not in SEARCHERS + SCHEDULERS:
            p.error(f"unknown algorithm {a!r}; known: {', '.join(SEARCHERS + SCHEDULERS)}")
    for x in problems:
        if x not in PROBLEMS and x != PBT_TOY.name:
            p.error(f"unknown problem {x!r}; known: {', '.join(list(PROBLEMS) + [PBT_TOY.name])}")
    if args.seeds < 1:
        p.error("--seeds must be >= 1")

    import logging

    import ray

    from bench.sweeps import machine_facts

    logging.getLogger("fasttune").setLevel(logging.ERROR)
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, configure_logging=False)
    started = _dt.datetime.now().strftime("%Y-%m-%dT%H:%M:%S")
    report: Dict[str, Any] = {
        "kind": "quality",
        "started": started,
        "command": "python -m bench.quality" + ("" if not argv else " " + " ".join(argv)),
        "machine": machine_facts(),
        "seeds": args.seeds,
        "problems": problems,
        "problem_meta": {x: _problem_meta(x) for x in problems},
        "searchers": [a for a in algorithms if a in SEARCHERS],
        "schedulers": [a for a in algorithms if a in SCHEDULERS],
        "budgets": {
            "searchers": {x: args.budget or SEARCHER_BUDGETS.get(x) for x in problems},
            "schedulers": {x: args.budget or (TOY_BUDGET if x == PBT_TOY.name else SCHEDULER_BUDGET)
                           for x in problems},
        },
        "results": {},
    }
    os.makedirs(args.out_dir, exist_ok=True)
    stamp = started.replace(":", "").replace("-", "")
    failed = False
    for a in algorithms:
        for x in problems:
            if a in SEARCHERS and x == PBT_TOY.name:
                continue  # the toy problem is a schedule, not a point to search for
            key = f"{a}/{x}"
            curves, seconds = [], []
            try:
                for seed in range(args.seeds):
                    t0 = time.perf_counter()
                    curves.append(run_one(a, x, seed, args.budget, args.storage_root))
                    seconds.append(time.perf_counter() - t0)
            except ImportError as e:
                report["results"][key] = {"skipped": f"{type(e).__name__}: {e}"}
                print(f"[quality] {key}: skipped ({e})", file=sys.stderr, flush=True)
                continue
            except Exception as e:  # keep the other algorithms' curves
                report["results"][key] = {"skipped": f"failed: {type(e).__name__}: {e}"}
                print(f"[quality] {key}: FAILED {type(e).__name__}: {e}", file=sys.stderr, flush=True)
                failed = True
                continue
            finals = [c[-1] for c in curves]
            q1, med, q3 = np.percentile(finals, [25, 50, 75])
            report["results"][key] = {
                "curves": curves,
                "final": {"median": float(med), "q1": float(q1), "q3": float(q3)},
                "fit_s": seconds,
            }
            print(f"[quality] {key}: final best median {_fmt(med)} [{_fmt(q1)} – {_fmt(q3)}] "
                  f"({sum(seconds):.0f} s for {args.seeds} seeds)", file=sys.stderr, flush=True)
            _save(report, args.out_dir, stamp)  # an interrupted run keeps what it measured
    ray.shutdown()
    report["finished"] = _dt.datetime.now().strftime("%Y-%m-%dT%H:%M:%S")
    md = _save(report, args.out_dir, stamp)
    print(md)
    if not args.no_plots:
        from bench.plots import plot_report

        for path in plot_report(report, args.out_dir):
            print(f"[quality] wrote {path}", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
