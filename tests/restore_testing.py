"""A sweep that interrupts its own driver, for the restore tests.

``drive()`` runs in a separate driver process connected to the tests' Ray session.  The
trainable counts every report in a shared file and, at the ``interrupt_after``-th one,
sends ``signal`` to the driver (SIGKILL to its whole process group, or SIGINT), then
waits for its worker to be ended: the interruption lands wherever the driver happens to
be.  ``SIGINT2`` (Ctrl-C pressed twice) is pressed by the driver itself, from a callback
once ``interrupt_after`` results have come: both presses land inside the sweep's loop.  Every start of a trainable is logged with the phase (``first`` or ``restore``, read
from a marker file) and the iteration it resumed from.
"""
import json
import os
import signal
import sys
import threading

import fasttune as tune
from fasttune.search import BasicVariantGenerator
from fasttune_testing import report_with_step_checkpoint, restored_step

ITERATIONS = 24
CHECKPOINT_EVERY = 4
NUM_SAMPLES = 10


def counting_trainable(config):
    start = restored_step()
    with open(config["marker"]) as f:
        phase = f.read().strip()
    trial_id = tune.get_context().get_trial_id()
    import ray

    with open(config["starts"], "a") as f:
        f.write(f"{phase} {trial_id} {start} {ray.get_runtime_context().get_job_id()}\n")
    for iteration in range(start + 1, ITERATIONS + 1):
        metrics = {"loss": config["x"] / iteration}
        if iteration % CHECKPOINT_EVERY == 0:
            report_with_step_checkpoint(metrics, iteration)
        else:
            tune.report(metrics)
        if phase == "first":
            _count_and_maybe_interrupt(config)


def _count_and_maybe_interrupt(config):
    fd = os.open(config["counter"], os.O_WRONLY | os.O_APPEND | os.O_CREAT)
    try:
        os.write(fd, b".")  # an append is atomic, and leaves this fd at its own end:
        reports = os.lseek(fd, 0, os.SEEK_CUR)  # each report gets its own count
    finally:
        os.close(fd)
    if reports == config["interrupt_after"] and config["signal"] in ("SIGKILL", "SIGKILL_AFTER_RESULTS", "SIGINT"):
        if config["signal"] == "SIGKILL_AFTER_RESULTS":
            _wait_for_a_snapshot_with_results(config["experiment"])
        if config["signal"].startswith("SIGKILL"):
            os.killpg(config["driver_pgid"], signal.SIGKILL)
            threading.Event().wait()  # nothing more from this run; Ray ends the worker
        else:
            os.kill(config["driver_pgid"], signal.SIGINT)


def _wait_for_a_snapshot_with_results(experiment, timeout_s=60.0):
    """Until the driver's latest snapshot counts a result (workers run ahead of the
    driver: at a count of reports it may have written none yet); a condition, polled."""
    import time

    from fasttune.execution import _experiment_state as state

    deadline = time.monotonic() + timeout_s
    last_error = None
    while True:
        try:
            if any(trial.results_seen for trial in state.read_trials(experiment)):
                return
        except Exception as exc:  # noqa: BLE001 - no snapshot yet, or one being replaced; told at the deadline
            last_error = exc
        assert time.monotonic() < deadline, f"no snapshot of {experiment} counted a result (last: {last_error!r})"
        time.sleep(0.05)


def set_phase(tmp, phase):
    """Write the phase marker whole: a straggling worker of a killed driver may read it
    while it changes."""
    path = os.path.join(tmp, "phase")
    with open(path + ".new", "w") as f:
        f.write(phase)
    os.replace(path + ".new", path)


def logged_starts(tmp, phase, job_id):
    """``(trial id, iteration it resumed from)`` of each start logged in ``phase`` by a
    worker of the Ray job ``job_id``."""
    with open(os.path.join(tmp, "starts.log")) as f:
        rows = [line.split() for line in f]
    return [(trial_id, int(start)) for p, trial_id, start, job in rows if p == phase and job == job_id]


def param_space(tmp, interrupt_after, sig="SIGKILL", driver_pgid=0, experiment=""):
    return {
        "x": tune.uniform(0.0, 1.0),
        "marker": os.path.join(tmp, "phase"),
        "starts": os.path.join(tmp, "starts.log"),
        "counter": os.path.join(tmp, "reports"),
        "interrupt_after": interrupt_after,
        "signal": sig,
        "driver_pgid": driver_pgid,
        "experiment": experiment,  # SIGKILL_AFTER_RESULTS: whose snapshot to wait for
    }


class PressCtrlCTwice(tune.Callback):
    """Ctrl-C twice in a row at the end of the driver's first loop step by which ``after``
    results have come.  A signal a process sends itself runs its Python handler before
    ``os.kill`` returns, so the first press has been handled when the second comes.  Only
    in the driver that made it: a restore brings the callback back, in the test's process."""

    def __init__(self, after):
        self.after = after
        self.pressed = False
        self.driver_pid = os.getpid()

    def on_step_end(self, iteration, trials, **info):
        if self.pressed or os.getpid() != self.driver_pid or sum(t.results_seen for t in trials) < self.after:
            return
        self.pressed = True
        os.kill(os.getpid(), signal.SIGINT)
        print("FIRST PRESS HANDLED", file=sys.stderr, flush=True)
        os.kill(os.getpid(), signal.SIGINT)
        print("SECOND PRESS DID NOT INTERRUPT", file=sys.stderr, flush=True)


def make_tuner(tmp, storage, seed, interrupt_after, sig, driver_pgid=0, results_store="per_trial"):
    callbacks = [PressCtrlCTwice(interrupt_after)] if sig == "SIGINT2" else []
    return tune.Tuner(
        counting_trainable,
        param_space=param_space(tmp, interrupt_after, sig, driver_pgid, os.path.join(storage, "interrupted")),
        tune_config=tune.TuneConfig(metric="loss", mode="min", num_samples=NUM_SAMPLES,
                                    search_alg=BasicVariantGenerator(random_state=seed)),
        run_config=tune.RunConfig(name="interrupted", storage_path=storage, verbose=0, callbacks=callbacks,
                                  results_store=results_store),
    )


def drive(address, tmp, storage, seed, interrupt_after, sig, results_store="per_trial"):
    """The driver process: run the sweep until it is interrupted; print the statuses."""
    import ray

    ray.init(address=address, log_to_driver=False, configure_logging=False)
    grid = make_tuner(tmp, storage, seed, interrupt_after, sig, os.getpgid(0), results_store).fit()
    print("STATUSES " + json.dumps(sorted(r.metrics["trial_id"] for r in grid if r.metrics)))


def wait_until_other_jobs_have_no_live_actors(ray_session, timeout_s=60.0):
    """Ray ends a dead driver's workers shortly after it notices; until then they may
    still run trials handed to them ahead, so the restore waits for that (a condition
    on Ray's state and the processes', polled).  GCS marks an actor DEAD before its
    process has exited, so both are waited for."""
    import time

    from ray._private import state as ray_state

    job = ray_session.get_runtime_context().get_job_id()
    deadline = time.monotonic() + timeout_s
    while True:
        others = [a for a in ray_state.actors().values() if a.get("JobID") != job]
        alive = [a for a in others if a.get("State") != "DEAD"]
        running = [a for a in others if a.get("State") == "DEAD" and _worker_process_runs(a)]
        if not alive and not running:
            return
        assert time.monotonic() < deadline, (
            f"the interrupted driver's workers are still alive: {alive}, or their processes run: {running}")
        time.sleep(0.05)


def _worker_process_runs(actor):
    """Whether the process that ran ``actor`` (same machine) still runs: its pid exists, is
    not a zombie, and started before the actor ended (pids are reused)."""
    import time

    pid = actor.get("Pid") or 0
    try:
        with open(f"/proc/{pid}/stat") as stat_file:
            fields = stat_file.read().rsplit(")", 1)[1].split()
        with open("/proc/uptime") as uptime_file:
            uptime_s = float(uptime_file.read().split()[0])
    except (OSError, IndexError, ValueError):
        return False
    state, start_ticks = fields[0], int(fields[19])
    # Its start in wall-clock seconds, to the clock tick (/proc/stat's btime is whole seconds).
    started_s = time.time() - (uptime_s - start_ticks / os.sysconf("SC_CLK_TCK"))
    ended_s = (actor.get("EndTime") or 0) / 1000.0
    return state not in ("Z", "X") and (ended_s == 0 or started_s < ended_s)


if __name__ == "__main__":
    drive(*json.loads(sys.argv[1]))
