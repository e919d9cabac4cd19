"""Experiment-snapshot cost (issue 6): fasttune's ``TrialRunner.checkpoint`` and
``resume`` against Ray Tune's experiment-state save and restore, in one invocation.

    python -m bench.bench_state                      # N = 1k, 10k, 100k; Ray Tune at 1k, 10k
    python -m bench.bench_state --sizes 1000 --ray-sizes 1000 --repeats 2   # smoke check
    python -m bench.bench_state --profile 100000     # cProfile of fasttune at 100k (tmpfs)

Neither engine runs a trainable: each child process builds an experiment of N trials
in the state a long sweep leaves them in (most TERMINATED, a few hundred RUNNING and
PENDING, 1% ERROR; 1-20 iterations, the user's 3 metrics plus every automatic result
field, one or two checkpoints, 4-parameter configs) through the engine's own driver
objects, then times only the snapshot and the restore:

fasttune  a real ``TrialRunner`` (a stub executor: no Ray) fed by a real
          ``BasicVariantGenerator``; results and checkpoints are recorded as the runner
          records them (``TrialTable.record_result``, ``_on_checkpoint``).
          cold    = the first ``runner.checkpoint(force=True)``: it packs the live trials'
                    records (a finished trial's is packed as it finishes, in the build,
                    as the runner's ``SnapshotWriter.trial_finished`` does)
          warm    = later ones (finished trials' records cached; the running trials get
                    a new result before each, untimed)
          restore = ``TrialRunner(...)`` + ``setup_experiments`` + ``resume()``
Ray Tune  a real ``TuneController`` (``ray.init`` untimed; no actor is started) with
          real ``Trial`` objects, results through ``Trial.update_last_result`` (every
          iteration, so ``metric_analysis`` is what a sweep leaves) and checkpoints
          through ``Trial.on_checkpoint``.
          cold    = the first ``controller.checkpoint(force=True, wait=True)``: every
                    trial's ``get_json_state``, the JSON dump to the driver staging
                    directory, the searcher's and callbacks' ``save_to_dir``, and the
                    sync to ``storage_path`` (Ray Tune does not fsync)
          warm    = later ones (Ray caches the JSON of trials not marked changed)
          restore = ``TuneController(storage=..., resume_config=ResumeConfig())``

Each (engine, N, storage root) runs in a fresh subprocess; every repeat builds a fresh
experiment (untimed, ``build_s``).  Roots: ``/dev/shm`` (tmpfs) and the system temp dir
(this machine's disk).  For Ray Tune on tmpfs, ``ray.init(_temp_dir=...)`` puts the
driver staging directory on tmpfs too.  Output: Markdown on stdout and
``bench/out/state-<timestamp>.{json,md}`` plus ``bench/out/state-latest.{json,md}``.

The Ray Tune side needs ``ray[tune]``'s extras (``pyarrow``, ``fsspec``); without them it
is recorded as skipped with the reason.
"""
from __future__ import annotations

import argparse
import datetime as _dt
import gc
import json
import os
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from typing import Any, Dict, List, Optional

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
OUT_DIR = os.path.join(REPO_ROOT, "bench", "out")
MARKER = "@@STATE_JSON@@ "

METRICS = ("loss", "accuracy", "epoch_time")
HOSTNAME = "bench-host"
NODE_IP = "10.0.0.7"


def bench_trainable(config):  # never called: the trials only need a named trainable
    raise RuntimeError("bench_state does not run trials")


# --------------------------------------------------------------------------
# The sweep both engines are given
# --------------------------------------------------------------------------

def _counts(n: int) -> Dict[str, int]:
    running = min(200, n // 20)
    pending = min(200, n // 20)
    error = n // 100
    return {"RUNNING": running, "PENDING": pending, "ERROR": error,
            "TERMINATED": n - running - pending - error}


def _plan(n: int, seed: int = 0) -> List[Dict[str, Any]]:
    """Per trial: status, iterations, checkpoint iterations and metric values."""
    rng = random.Random(seed)
    counts = _counts(n)
    statuses = (["RUNNING"] * counts["RUNNING"] + ["PENDING"] * counts["PENDING"]
                + ["ERROR"] * counts["ERROR"] + ["TERMINATED"] * counts["TERMINATED"])
    rng.shuffle(statuses)
    t0 = 1_760_000_000.0
    plan = []
    for i, status in enumerate(statuses):
        iters = 0 if status == "PENDING" else rng.randint(1, 20)
        if status == "TERMINATED":
            ckpts = sorted({max(1, iters // 2), iters})
        elif status in ("RUNNING", "ERROR") and iters >= 2:
            ckpts = [iters // 2]
        else:
            ckpts = []
        per_iter = rng.uniform(0.5, 3.0)
        plan.append({"status": status, "iters": iters, "ckpts": ckpts, "per_iter": per_iter,
                     "start": t0 + i * 0.37, "pid": 10_000 + i % 4000,
                     "loss0": rng.uniform(0.5, 3.0), "acc0": rng.uniform(0.1, 0.6)})
    return plan


def _user_metrics(p: Dict[str, Any], it: int) -> Dict[str, Any]:
    return {"loss": p["loss0"] / (1.0 + 0.3 * it), "accuracy": min(0.99, p["acc0"] + 0.02 * it),
            "epoch_time": p["per_iter"] * (1.0 + 0.01 * it)}


def _date(ts: float) -> str:
    return time.strftime("%Y-%m-%d_%H-%M-%S", time.localtime(ts))


def _result(p: Dict[str, Any], it: int, trial_id: str, ckpt_name: Optional[str], done: bool) -> Dict[str, Any]:
    """A result as fasttune's core completes it: user metrics, then the automatic fields."""
    ts = p["start"] + it * p["per_iter"]
    r = _user_metrics(p, it)
    r.update({
        "timestamp": int(ts), "checkpoint_dir_name": ckpt_name, "done": done,
        "training_iteration": it, "trial_id": trial_id, "date": _date(ts),
        "time_this_iter_s": p["per_iter"], "time_total_s": it * p["per_iter"], "pid": p["pid"],
        "hostname": HOSTNAME, "node_ip": NODE_IP, "time_since_restore": it * p["per_iter"],
        "iterations_since_restore": it,
    })
    return r


def _param_space(tune):
    return {
        "lr": tune.loguniform(1e-5, 1e-1),
        "batch_size": tune.choice([16, 32, 64, 128, 256]),
        "optimizer": tune.choice(["adam", "sgd", "adamw"]),
        "dropout": tune.uniform(0.0, 0.5),
    }


def _ckpt_name(it: int) -> str:
    return f"checkpoint_{it:06d}"


ERROR_MSG = ("Traceback (most recent call last):\n  File \"train.py\", line 42, in train\n"
             "    loss = step(batch)\nRuntimeError: CUDA out of memory. Tried to allocate 2.00 GiB\n")


# --------------------------------------------------------------------------
# fasttune
# --------------------------------------------------------------------------

class StubExecutor:
    """The few executor methods a TrialRunner calls outside ``step()``."""

    def check_feasible(self, trial):
        return None

    def has_resources_for_trial(self, trial, asks_ahead=0):
        return False

    def cleanup(self):
        return None


def _fasttune_runner(experiment):
    from fasttune.execution.trial_runner import TrialRunner
    from fasttune.search.basic_variant import BasicVariantGenerator

    searcher = BasicVariantGenerator()
    runner = TrialRunner(search_alg=searcher, trial_executor=StubExecutor(),
                         experiment_path=experiment.path, metric="loss", mode="min")
    return runner, searcher


def _fasttune_build(n: int, storage_path: str, name: str):
    import fasttune
    from fasttune import _corelib as core

    experiment = fasttune.Experiment(name, bench_trainable, config=_param_space(fasttune),
                                     num_samples=n, storage_path=storage_path)
    runner, searcher = _fasttune_runner(experiment)
    searcher.add_configurations([experiment])
    runner.setup_experiments([experiment], n)
    table = runner.table
    for p in _plan(n):
        trial = searcher.next_trial()
        runner.add_trial(trial)
        if p["status"] == "PENDING":
            continue
        row, tid, it = trial._row, trial.trial_id, p["iters"]
        trial.set_status(trial.RUNNING)
        trial.start_time = p["start"]
        done = p["status"] == "TERMINATED"
        last = _result(p, it, tid, _ckpt_name(it) if it in p["ckpts"] else None, done)
        for c in p["ckpts"]:
            r = last if c == it else _result(p, c, tid, _ckpt_name(c), False)
            runner._checkpoints.record(trial, runner._states[tid], _ckpt_name(c), r, c)
        trial.last_result = last
        trial.results_seen = it
        table.record_result(row, it, last["time_total_s"], last["loss"])
        if p["status"] == "TERMINATED":
            trial.set_status(trial.TERMINATED)
            trial.end_time = p["start"] + it * p["per_iter"]
            searcher.on_trial_complete(tid, result=last)
        elif p["status"] == "ERROR":
            trial.set_status(trial.ERROR)
            trial.error_msg = ERROR_MSG
            trial.end_time = p["start"] + it * p["per_iter"]
            searcher.on_trial_complete(tid, error=True)
        if trial.is_finished():
            # As the runner does when it closes a finished trial: its record is packed now.
            runner._snapshots.trial_finished(trial, runner._states, runner._checkpoints.rows, table)
    assert len(runner.get_trials()) == n and table.counts()[core.PENDING] == _counts(n)["PENDING"]
    return experiment, runner


def _fasttune_advance(runner, step: int) -> None:
    """A new result for every RUNNING trial (between two warm snapshots)."""
    for trial in runner.get_trials():
        if trial.status == trial.RUNNING:
            last = dict(trial.last_result)
            last["training_iteration"] += 1
            last["iterations_since_restore"] += 1
            last["timestamp"] += step
            trial.last_result = last
            trial.results_seen += 1
            runner.table.record_result(trial._row, last["training_iteration"], last["time_total_s"], last["loss"])


def _fasttune_repeat(n: int, root: str, warm_count: int) -> Dict[str, Any]:
    import fasttune
    from fasttune import _corelib as core

    storage = tempfile.mkdtemp(prefix="bench-state-", dir=root)
    try:
        t = time.perf_counter()
        experiment, runner = _fasttune_build(n, storage, "state")
        build_s = time.perf_counter() - t
        gc.collect()
        t = time.perf_counter()
        path = runner.checkpoint(force=True)
        cold = time.perf_counter() - t
        size = os.path.getsize(path)
        warm = []
        for i in range(warm_count):
            _fasttune_advance(runner, i + 1)
            gc.collect()
            t = time.perf_counter()
            runner.checkpoint(force=True)
            warm.append(time.perf_counter() - t)
        expected = runner.table.counts()
        del runner
        gc.collect()
        t = time.perf_counter()
        experiment2 = fasttune.Experiment("state", bench_trainable, config=_param_space(fasttune),
                                          num_samples=n, storage_path=storage)
        runner2, searcher2 = _fasttune_runner(experiment2)
        searcher2.add_configurations([experiment2])
        runner2.setup_experiments([experiment2], n)
        runner2.resume()
        restore = time.perf_counter() - t
        got = runner2.table.counts()
        # RUNNING trials come back PENDING (to continue from their checkpoints).
        ok = (len(runner2.get_trials()) == n and got[core.TERMINATED] == expected[core.TERMINATED]
              and got[core.ERROR] == expected[core.ERROR]
              and got[core.PENDING] == expected[core.PENDING] + expected[core.RUNNING])
        return {"cold_s": cold, "warm_s": warm, "restore_s": restore, "build_s": build_s,
                "bytes": size, "restore_ok": ok}
    finally:
        shutil.rmtree(storage, ignore_errors=True)


# --------------------------------------------------------------------------
# Ray Tune
# --------------------------------------------------------------------------

def _ray_controller(storage_path: str, name: str, resume: bool = False):
    from ray.train._internal.storage import StorageContext
    from ray.tune import ResumeConfig
    from ray.tune.execution.tune_controller import TuneController
    from ray.tune.search import BasicVariantGenerator

    storage = StorageContext(storage_path=storage_path, experiment_dir_name=name)
    searcher = BasicVariantGenerator()
    controller = TuneController(search_alg=searcher, storage=storage, metric="loss",
                                resume_config=ResumeConfig() if resume else None)
    return controller, searcher, storage


def _ray_build(n: int, storage_path: str, name: str):
    import ray.tune as tune
    from ray.train import Checkpoint
    from ray.train._internal.session import _TrainingResult
    from ray.tune.experiment import Experiment, Trial

    controller, searcher, storage = _ray_controller(storage_path, name)
    experiment = Experiment(name, "bench_state_trainable", config=_param_space(tune),
                            num_samples=n, storage_path=storage_path)
    searcher.add_configurations([experiment])
    for p in _plan(n):
        trial = searcher.next_trial()
        controller.add_trial(trial)
        if p["status"] == "PENDING":
            continue
        tid, it = trial.trial_id, p["iters"]
        trial.init_local_path()  # a started trial has its directory
        controller._set_trial_status(trial, Trial.RUNNING)
        trial.run_metadata.start_time = p["start"]
        for i in range(1, it + 1):
            r = _result(p, i, tid, None, i == it and p["status"] == "TERMINATED")
            del r["checkpoint_dir_name"]  # Ray adds no such field; it adds the config
            r["config"] = trial.config
            trial.update_last_result(r)
            if i in p["ckpts"]:
                ckpt = Checkpoint(os.path.join(trial.storage.trial_fs_path, _ckpt_name(i)))
                trial.on_checkpoint(_TrainingResult(ckpt, dict(r)))
        if p["status"] == "TERMINATED":
            controller._set_trial_status(trial, Trial.TERMINATED)
            searcher.on_trial_complete(tid, result=trial.last_result)
        elif p["status"] == "ERROR":
            controller._set_trial_status(trial, Trial.ERROR)
            trial.run_metadata.error_filename = "error.txt"
            searcher.on_trial_complete(tid, error=True)
        controller._mark_trial_to_checkpoint(trial)
    assert len(controller.get_trials()) == n
    return controller, storage


def _ray_advance(controller, step: int) -> None:
    for trial in controller.get_trials():
        if trial.status == "RUNNING":
            r = dict(trial.last_result)
            r["training_iteration"] += 1
            r["iterations_since_restore"] += 1
            r["timestamp"] += step
            trial.update_last_result(r)
            controller._mark_trial_to_checkpoint(trial)  # what _process_trial_result does


def _ray_repeat(n: int, root: str, warm_count: int) -> Dict[str, Any]:
    storage_path = tempfile.mkdtemp(prefix="bench-state-ray-", dir=root)
    name = "state"
    try:
        t = time.perf_counter()
        controller, storage = _ray_build(n, storage_path, name)
        build_s = time.perf_counter() - t
        gc.collect()
        t = time.perf_counter()
        controller.checkpoint(force=True, wait=True)
        cold = time.perf_counter() - t
        state_files = [f for f in os.listdir(storage.experiment_fs_path) if f.startswith("experiment_state")]
        size = os.path.getsize(os.path.join(storage.experiment_fs_path, state_files[0])) if state_files else None
        warm = []
        for i in range(warm_count):
            _ray_advance(controller, i + 1)
            gc.collect()
            time.sleep(1.05)  # Ray names the state file by the second; keep one file per save
            t = time.perf_counter()
            controller.checkpoint(force=True, wait=True)
            warm.append(time.perf_counter() - t)
        expected = {s: sum(1 for tr in controller.get_trials() if tr.status == s)
                    for s in ("TERMINATED", "ERROR", "RUNNING", "PENDING")}
        del controller
        gc.collect()
        t = time.perf_counter()
        controller2, _, _ = _ray_controller(storage_path, name, resume=True)
        restore = time.perf_counter() - t
        got = {s: sum(1 for tr in controller2.get_trials() if tr.status == s)
               for s in ("TERMINATED", "ERROR", "PENDING")}
        ok = (len(controller2.get_trials()) == n and got["TERMINATED"] == expected["TERMINATED"]
              and got["ERROR"] == expected["ERROR"]
              and got["PENDING"] == expected["PENDING"] + expected["RUNNING"])
        # The fixed part of the restore: a TuneController built without resuming.
        t = time.perf_counter()
        _ray_controller(storage_path, "empty")
        construct = time.perf_counter() - t
        return {"cold_s": cold, "warm_s": warm, "restore_s": restore, "build_s": build_s,
                "bytes": size, "restore_ok": ok, "construct_s": construct}
    finally:
        shutil.rmtree(storage_path, ignore_errors=True)


def _ray_init(root: str):
    import ray
    from ray import tune

    temp_dir = None
    if root.startswith("/dev/shm"):
        temp_dir = tempfile.mkdtemp(prefix="bench-state-raytmp-", dir=root)
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False,
             configure_logging=False, _temp_dir=temp_dir)
    tune.register_trainable("bench_state_trainable", bench_trainable)
    return temp_dir


# --------------------------------------------------------------------------
# Child / parent
# --------------------------------------------------------------------------

def _child(engine: str, n: int, root: str, repeats: int, warm_count: int) -> Dict[str, Any]:
    import logging

    logging.getLogger("ray").setLevel(logging.ERROR)
    logging.getLogger("fasttune").setLevel(logging.ERROR)
    out: Dict[str, Any] = {"engine": engine, "n": n, "root": root, "repeats": []}
    if engine == "raytune":
        try:
            import ray  # noqa: F401
            import ray.tune  # noqa: F401
            from ray.tune.execution.tune_controller import TuneController  # noqa: F401
        except Exception as exc:
            out["skipped"] = f"{type(exc).__name__}: {exc}"
            return out
        import ray
        out["version"] = ray.__version__
        temp_dir = _ray_init(root)
        try:
            for _ in range(repeats):
                out["repeats"].append(_ray_repeat(n, root, warm_count))
        finally:
            ray.shutdown()
            if temp_dir:
                shutil.rmtree(temp_dir, ignore_errors=True)
    else:
        import fasttune
        out["version"] = getattr(fasttune, "__version__", None)
        for _ in range(repeats):
            out["repeats"].append(_fasttune_repeat(n, root, warm_count))
    return out


def _run_child(engine: str, n: int, root: str, repeats: int, warm_count: int, timeout: float) -> Dict[str, Any]:
    cmd = [sys.executable, "-m", "bench.bench_state", "--child", engine, str(n), root,
           str(repeats), str(warm_count)]
    t = time.perf_counter()
    try:
        proc = subprocess.run(cmd, cwd=REPO_ROOT, capture_output=True, text=True, timeout=timeout,
                              start_new_session=True)
    except subprocess.TimeoutExpired:
        return {"engine": engine, "n": n, "root": root, "error": f"timed out after {timeout} s"}
    for line in proc.stdout.splitlines():
        if line.startswith(MARKER):
            rec = json.loads(line[len(MARKER):])
            rec["child_s"] = time.perf_counter() - t
            return rec
    return {"engine": engine, "n": n, "root": root,
            "error": f"exit {proc.returncode}: {(proc.stderr or proc.stdout)[-2000:]}"}


def _summary(values: List[float]) -> Dict[str, float]:
    return {"median": statistics.median(values), "min": min(values), "max": max(values), "n": len(values)}


def _summarize(rec: Dict[str, Any]) -> None:
    reps = rec.get("repeats") or []
    if not reps:
        return
    rec["summary"] = {
        "cold_s": _summary([r["cold_s"] for r in reps]),
        "warm_s": _summary([w for r in reps for w in r["warm_s"]]),
        "restore_s": _summary([r["restore_s"] for r in reps]),
        "build_s": _summary([r["build_s"] for r in reps]),
        "bytes": reps[0]["bytes"],
        "construct_s": _summary([r["construct_s"] for r in reps]) if "construct_s" in reps[0] else None,
        "restore_ok": all(r["restore_ok"] for r in reps),
    }


def _ms(s: Dict[str, float]) -> str:
    return f"{s['median'] * 1e3:,.1f} ({s['min'] * 1e3:,.1f}–{s['max'] * 1e3:,.1f})"


def render_markdown(report: Dict[str, Any]) -> str:
    """The report as Markdown: per (engine, N, storage) medians (min–max) and the ratios."""
    m = report["machine"]
    lines = [
        f"- command: `{report['command']}`",
        f"- machine: {m['cpu_count']} CPUs (affinity {m['cpu_affinity']}), {m['platform']}; python "
        f"{m['python']}, ray {m['ray']}, fasttune {m['fasttune']}, git {m['git_rev']}",
        f"- repeats {report['repeats']} (fresh experiment each), warm snapshots per repeat "
        f"{report['warm']}; loadavg start {m['loadavg_start']} end {report['loadavg_end']}",
        "",
        "| engine | N | storage | cold snapshot ms | warm snapshot ms | restore ms | state file | restore ok |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for rec in report["runs"]:
        root = "tmpfs" if rec["root"].startswith("/dev/shm") else "disk"
        if "summary" not in rec:
            why = rec.get("skipped") or rec.get("error", "?")
            lines.append(f"| {rec['engine']} | {rec['n']:,} | {root} | – | – | – | – | {why[:120]} |")
            continue
        s = rec["summary"]
        size = f"{s['bytes'] / 1e6:,.1f} MB" if s["bytes"] else "?"
        lines.append(f"| {rec['engine']} | {rec['n']:,} | {root} | {_ms(s['cold_s'])} | {_ms(s['warm_s'])} | "
                     f"{_ms(s['restore_s'])} | {size} | {'yes' if s['restore_ok'] else 'NO'} |")
    fixed = [f"{r['n']:,} {'tmpfs' if r['root'].startswith('/dev/shm') else 'disk'}: "
             f"{r['summary']['construct_s']['median'] * 1e3:,.0f} ms"
             for r in report["runs"] if (r.get("summary") or {}).get("construct_s")]
    if fixed:
        lines += ["", "Ray Tune's restore includes building a TuneController (without resuming: "
                  + "; ".join(fixed) + ")."]
    ratios = report.get("ratios") or []
    if ratios:
        lines += ["", "| N | storage | cold: Ray Tune ÷ fasttune | warm | restore |", "|---|---|---|---|---|"]
        for r in ratios:
            lines.append(f"| {r['n']:,} | {r['root']} | {r['cold']:,.1f}× | {r['warm']:,.1f}× | {r['restore']:,.1f}× |")
    return "\n".join(lines) + "\n"


def _ratios(runs: List[Dict[str, Any]]) -> List[Dict[str, Any]]:
    by = {(r["engine"], r["n"], r["root"]): r for r in runs if "summary" in r}
    out = []
    for (engine, n, root), ray_rec in by.items():
        ft = by.get(("fasttune", n, root))
        if engine != "raytune" or ft is None:
            continue
        a, b = ray_rec["summary"], ft["summary"]
        out.append({"n": n, "root": "tmpfs" if root.startswith("/dev/shm") else "disk",
                    "cold": a["cold_s"]["median"] / b["cold_s"]["median"],
                    "warm": a["warm_s"]["median"] / b["warm_s"]["median"],
                    "restore": a["restore_s"]["median"] / b["restore_s"]["median"]})
    return sorted(out, key=lambda r: (r["root"], r["n"]))


def _profile(n: int, root: str) -> None:
    import cProfile
    import pstats

    storage = tempfile.mkdtemp(prefix="bench-state-prof-", dir=root)
    try:
        import fasttune
        _, runner = _fasttune_build(n, storage, "state")
        for label, fn in (("cold snapshot", lambda: runner.checkpoint(force=True)),
                          ("warm snapshot", lambda: runner.checkpoint(force=True))):
            prof = cProfile.Profile()
            prof.runcall(fn)
            print(f"==== {label}, N={n:,}")
            pstats.Stats(prof).sort_stats("tottime").print_stats(14)
        del runner
        gc.collect()
        experiment = fasttune.Experiment("state", bench_trainable, config=_param_space(fasttune),
                                         num_samples=n, storage_path=storage)
        runner2, searcher2 = _fasttune_runner(experiment)
        searcher2.add_configurations([experiment])
        runner2.setup_experiments([experiment], n)
        prof = cProfile.Profile()
        prof.runcall(runner2.resume)
        print(f"==== restore, N={n:,}")
        pstats.Stats(prof).sort_stats("tottime").print_stats(20)
    finally:
        shutil.rmtree(storage, ignore_errors=True)


def main(argv: Optional[List[str]] = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv and argv[0] == "--child":
        engine, n, root, repeats, warm = argv[1], int(argv[2]), argv[3], int(argv[4]), int(argv[5])
        rec = _child(engine, n, root, repeats, warm)
        print(MARKER + json.dumps(rec), flush=True)
        return 0
    ap = argparse.ArgumentParser(prog="python -m bench.bench_state", description=__doc__.split("\n\n")[0])
    ap.add_argument("--sizes", default="1000,10000,100000", help="trial counts for fasttune")
    ap.add_argument("--ray-sizes", default="1000,10000", help="trial counts for Ray Tune ('' = none)")
    ap.add_argument("--roots", default=f"/dev/shm,{tempfile.gettempdir()}",
                    help="storage roots (tmpfs, disk)")
    ap.add_argument("--repeats", type=int, default=3, help="fresh experiments per (engine, N, root)")
    ap.add_argument("--warm", type=int, default=3, help="warm snapshots per repeat")
    ap.add_argument("--timeout", type=float, default=1800.0)
    ap.add_argument("--out-dir", default=OUT_DIR)
    ap.add_argument("--profile", type=int, metavar="N", help="cProfile fasttune at N trials on tmpfs, then exit")
    args = ap.parse_args(argv)
    if args.profile:
        _profile(args.profile, "/dev/shm")
        return 0
    report = measure(
        sizes=[int(s) for s in args.sizes.split(",") if s],
        ray_sizes=[int(s) for s in args.ray_sizes.split(",") if s],
        roots=[r for r in args.roots.split(",") if r],
        repeats=args.repeats, warm=args.warm, timeout=args.timeout,
        command="python -m bench.bench_state" + ("" if not argv else " " + " ".join(argv)))
    md = render_markdown(report)
    print(md)
    os.makedirs(args.out_dir, exist_ok=True)
    stamp = _dt.datetime.now().strftime("%Y%m%d-%H%M%S")
    for base in (f"state-{stamp}", "state-latest"):
        with open(os.path.join(args.out_dir, base + ".json"), "w") as f:
            json.dump(report, f, indent=1)
        with open(os.path.join(args.out_dir, base + ".md"), "w") as f:
            f.write(md)
    return 1 if report["failed"] else 0


def measure(sizes: List[int], ray_sizes: List[int], roots: List[str], repeats: int = 3,
            warm: int = 3, timeout: float = 1800.0, command: str = "") -> Dict[str, Any]:
    """Snapshot and restore cost at each trial count (fasttune at ``sizes``, Ray Tune at
    ``ray_sizes``) and storage root, one fresh child process per (engine, N, root), the
    engine that goes first alternating; the report's ``failed`` is True if a child failed
    or a restore lost trials.  ``python -m bench.sweeps`` folds it into its report.

    Example:
        >>> report = measure([1000], [], ["/dev/shm"], repeats=1)   # doctest: +SKIP
        >>> report["runs"][0]["summary"]["restore_ok"]              # doctest: +SKIP
        True
    """
    from bench.sweeps import _loadavg, machine_facts

    sizes, ray_sizes = list(sizes), set(ray_sizes)
    report: Dict[str, Any] = {
        "command": command, "machine": machine_facts(), "repeats": repeats, "warm": warm, "runs": [],
    }
    order = 0
    for n in sorted(set(sizes) | ray_sizes):
        for root in roots:
            engines = [e for e in ("fasttune", "raytune")
                       if (e == "fasttune" and n in sizes) or (e == "raytune" and n in ray_sizes)]
            if order % 2:
                engines.reverse()  # alternate which engine goes first
            order += 1
            for engine in engines:
                print(f"[bench_state] {engine} N={n:,} root={root} ...", file=sys.stderr, flush=True)
                rec = _run_child(engine, n, root, repeats, warm, timeout)
                _summarize(rec)
                if "summary" in rec:
                    s = rec["summary"]
                    print(f"[bench_state]   cold {_ms(s['cold_s'])}  warm {_ms(s['warm_s'])}  restore "
                          f"{_ms(s['restore_s'])} ms  ({rec['child_s']:.0f} s)", file=sys.stderr, flush=True)
                else:
                    print(f"[bench_state]   {rec.get('skipped') or rec.get('error')}", file=sys.stderr, flush=True)
                report["runs"].append(rec)
    report["loadavg_end"] = _loadavg()
    report["ratios"] = _ratios(report["runs"])
    report["failed"] = any("error" in r or ("summary" in r and not r["summary"]["restore_ok"])
                           for r in report["runs"])
    return report


if __name__ == "__main__":
    sys.exit(main())
