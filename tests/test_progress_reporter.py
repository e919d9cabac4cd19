"""Progress reporters: the views' content for a given trial table, plain text outside a
terminal, each verbose level on a real sweep, custom and notebook reporters, bad input."""
import io
import pickle
import re
import sys
import types

import pytest
import rich.console as rich_console  # the test extra installs rich: a missing one fails, never skips

import fasttune as tune
from fasttune import _corelib as core
from fasttune._progress import ProgressDriver, RunnerColumns, default_reporter
from fasttune._progress_live import LiveReporter
from fasttune.experiment.trial import Trial
from fasttune.progress_reporter import CLIReporter, JupyterNotebookReporter, ProgressReporter
from fasttune.schedulers import FIFOScheduler

_CODES = {name: i for i, name in enumerate(core.STATUS_NAMES)}


class _Runner:
    """The part of TrialRunner a reporter reads: the TrialTable and the trials in row order."""

    def __init__(self, mode="min"):
        self.table = core.TrialTable(mode)
        self.trials = []
        self.metric = "loss"
        self.results_processed = 0
        self.scheduler_alg = FIFOScheduler()

    def get_trials(self):
        return self.trials

    def add(self, status, loss=None, x=0.0, iteration=0):
        trial = Trial("train", {"x": x}, trial_id=f"t_{len(self.trials):05d}", evaluated_params={"x": x})
        trial._attach(self.table, self.table.add())
        if status != "PENDING":
            self.table.set_status(trial._row, _CODES["RUNNING"])
        if loss is not None:
            self.table.record_result(trial._row, iteration, 1.0, loss)
            trial.last_result = {"loss": loss, "training_iteration": iteration}
            self.results_processed += iteration
        if status == "ERROR":
            self.table.increment_failures(trial._row)
        self.table.set_status(trial._row, _CODES[status])
        self.trials.append(trial)
        return trial


def _sweep_state(mode="min"):
    """30 trials: 3 running, 2 pending, 24 terminated, 1 errored; losses 0.05 .. 1.45."""
    runner = _Runner(mode)
    for i in range(30):
        status = "RUNNING" if i < 3 else "PENDING" if i < 5 else "ERROR" if i == 5 else "TERMINATED"
        loss = None if status == "PENDING" else 0.05 * ((i * 7) % 30 + 1)
        runner.add(status, loss=loss, x=float(i), iteration=0 if loss is None else 10)
    return runner


def _losses(runner):
    return {str(t): t.last_result["loss"] for t in runner.trials if t.last_result}


def _live_text(runner, verbose=2, total=40, mode="min", **kwargs):
    console = rich_console.Console(record=True, file=io.StringIO(), force_terminal=True, width=200)
    reporter = LiveReporter(console=console, **kwargs)
    reporter.setup(start_time=None, total_samples=total, metric="loss", mode=mode)
    reporter._attach(RunnerColumns(runner), verbose)
    console.print(reporter.render(runner.get_trials(), False, "Using FIFO scheduling algorithm."))
    return console.export_text()


# ---- the views, for a given table state ----------------------------------------------------
def test_live_view_shows_counts_rate_best_trial_top_table_and_progress_bar():
    runner = _sweep_state()
    text = _live_text(runner, max_progress_rows=5)
    assert "Trials: 1 ERROR  2 PENDING  3 RUNNING  24 TERMINATED" in text
    assert re.search(r"\b280 results \(\d[\d,]*/s\)", text)
    losses = _losses(runner)
    best = min(losses, key=losses.get)
    assert f"Best trial: {best}  best loss={losses[best]:.6g}" in text
    assert "config={'x': " in text
    # The top table: the five lowest losses, best first, then the rest counted.
    top = sorted(losses, key=losses.get)[:5]
    positions = [text.index(name + " ") for name in top]
    assert positions == sorted(positions)
    errored = "train_t_00005"  # named again in the errors line
    assert all(name + " " not in text for name in sorted(losses, key=losses.get)[5:] if name != errored)
    assert "25 more trials not shown" in text
    # Progress bar over the known total: 25 of 40 trials finished (terminated or errored).
    assert "25/40 trials finished" in text
    assert "Using FIFO scheduling algorithm." in text


def test_live_view_ranks_by_max_and_omits_bar_and_table_when_not_asked():
    runner = _sweep_state(mode="max")
    text = _live_text(runner, verbose=2, mode="max", max_progress_rows=3)
    losses = _losses(runner)
    top = sorted(losses, key=losses.get, reverse=True)[:3]
    positions = [text.index(name + " ") for name in top]
    assert positions == sorted(positions)
    assert f"best loss={max(losses.values()):.6g}" in text
    unbounded = _live_text(runner, verbose=1, total=sys.maxsize)
    assert "trials finished" not in unbounded  # no known total: no bar
    assert "Trial name" not in unbounded  # verbose 1: status only, no table


def test_live_view_fills_the_table_with_running_trials_before_any_metric():
    runner = _Runner()
    names = [str(runner.add("RUNNING")) for _ in range(3)] + [str(runner.add("PENDING"))]
    text = _live_text(runner, total=4)
    assert all(name in text for name in names)
    assert "Best trial" not in text
    assert "0/4 trials finished" in text


class _CountingTrial(Trial):
    """A trial that counts reads of its last result."""

    reads = 0

    def __getattribute__(self, name):
        if name == "last_result":
            type(self).reads += 1
        return super().__getattribute__(name)


def test_a_report_reads_only_the_trials_it_shows():
    runner = _Runner()
    for i in range(2000):
        trial = _CountingTrial("train", {"x": i}, trial_id=f"c_{i:05d}", evaluated_params={"x": i})
        trial._attach(runner.table, runner.table.add())
        runner.table.set_status(trial._row, _CODES["RUNNING"])
        runner.table.record_result(trial._row, 1, 1.0, float((i * 37) % 2000))
        trial.last_result = {"loss": float((i * 37) % 2000)}
        runner.trials.append(trial)
    _CountingTrial.reads = 0
    text = _live_text(runner, total=2000, max_progress_rows=10)
    assert "best loss=0" in text
    assert _CountingTrial.reads < 200  # the 10 rows shown (columns, cells), never all 2,000


def test_cli_report_shares_rows_fairly_and_sorts_terminated_by_metric():
    runner = _sweep_state()
    reporter = CLIReporter(max_progress_rows=8, sort_by_metric=True, print_intermediate_tables=True)
    reporter.setup(total_samples=30, metric="loss", mode="min")
    reporter._attach(RunnerColumns(runner), 1)
    text = reporter._progress_str(runner.get_trials(), False)
    assert "Number of trials: 30/30 (1 ERROR, 2 PENDING, 3 RUNNING, 24 TERMINATED)" in text
    rows = [line for line in text.splitlines() if line.startswith("| train_")]
    statuses = [row.split("|")[2].strip() for row in rows[:8]]
    assert statuses == ["RUNNING"] * 3 + ["PENDING"] * 2 + ["TERMINATED"] * 2 + ["ERROR"]
    finished = {str(t): t.last_result["loss"] for t in runner.trials if t.status == "TERMINATED"}
    assert [row.split("|")[1].strip() for row in rows[5:7]] == sorted(finished, key=finished.get)[:2]
    assert "... 22 more trials not shown (22 TERMINATED)" in text
    assert "Number of errored trials: 1" in text
    # At the end every trial is listed.
    done = reporter._progress_str(runner.get_trials(), True)
    assert len([line for line in done.splitlines() if line.startswith("| train_")]) == 30 + 1  # + error table


def test_best_trial_line_and_metric_columns_follow_ray_tune():
    runner = _sweep_state()
    reporter = CLIReporter(metric_columns={"loss": "Loss"}, parameter_columns={"x": "X"},
                           print_intermediate_tables=True)
    reporter.setup(metric="loss", mode="min")
    reporter._attach(RunnerColumns(runner), 1)
    text = reporter._progress_str(runner.get_trials(), False)
    losses = _losses(runner)
    best = min(losses, key=losses.get)
    trial = runner.trials[[str(t) for t in runner.trials].index(best)]
    assert f"Current best trial: {trial.trial_id} with loss={losses[best]:.6g} and parameters={{'x': {trial.config['x']}}}" in text
    header = next(line for line in text.splitlines() if line.startswith("| Trial name"))
    assert [h.strip() for h in header.strip("|").split("|")] == ["Trial name", "status", "X", "Loss"]


def test_plain_lines_when_not_a_tty_and_live_view_in_a_terminal(monkeypatch):
    assert type(default_reporter(verbose=1, stdout_isatty=False)) is CLIReporter
    assert type(default_reporter(verbose=1, stdout_isatty=True)) is LiveReporter
    monkeypatch.setitem(sys.modules, "rich", None)  # rich not installed: plain text in a terminal too
    assert type(default_reporter(verbose=1, stdout_isatty=True)) is CLIReporter


def test_should_report_is_time_based_and_always_true_when_done():
    reporter = CLIReporter(max_report_frequency=3600)
    assert reporter.should_report([], done=False)  # the first call reports at once
    assert not reporter.should_report([], done=False)
    assert reporter.should_report([], done=True)


# ---- a real sweep at each verbose level ----------------------------------------------------
def _train(config):
    for i in range(3):
        tune.report({"loss": config["x"] * (3 - i), "score": i})
    if config["x"] == 3:
        raise ValueError("x=3 fails on purpose")


def _run(storage, name, **kwargs):
    return tune.run(_train, name=name, storage_path=storage, config={"x": tune.grid_search([1, 2, 3, 4])},
                    metric="loss", mode="min", raise_on_failed_trial=False, **kwargs)


@pytest.mark.usefixtures("ray_session")
@pytest.mark.parametrize("verbose", [0, 1, 2, 3, None])
def test_each_verbose_level_on_a_real_sweep(storage, capsys, verbose):
    analysis = _run(storage, f"v{verbose}", verbose=verbose)
    out = capsys.readouterr().out
    names = {str(t): t for t in analysis.trials}
    completed = [n for n, t in names.items() if t.status == "TERMINATED"]
    (errored,) = [n for n, t in names.items() if t.status == "ERROR"]
    if verbose == 0:
        assert out == ""
        return
    # Status updates at every level: the last one counts all trials and names the best.
    assert "== Status ==" in out
    assert "Number of trials: 4/4 (1 ERROR, 3 TERMINATED)" in out
    assert re.search(r"Current best trial: \w+ with loss=1 and parameters=\{'x': 1\}", out)
    assert "Number of errored trials: 1" in out
    brief = [f"Trial {n} reported loss={names[n].last_result['loss']:.6g} with parameters={names[n].config}. "
             "This trial completed." for n in completed]
    detailed = [f"Result for {n}:" for n in completed]
    tables = len(re.findall(r"\| Trial name +\| status", out))
    # From verbose 1 the failed trial's traceback, once (Ray Tune logs it when the trial fails).
    assert out.count("Traceback (most recent call last)") == 1
    assert out.count("ValueError: x=3 fails on purpose") == 1
    assert f"The trial {errored} errored with parameters={{'x': 3}}. Error file: " in out
    if verbose == 1:
        assert "This trial completed" not in out and "Result for" not in out
        assert tables == 0  # status only: no trial table, not even at the end
    elif verbose == 2:
        assert all(line in out for line in brief)
        assert f"The trial {errored} errored with parameters={{'x': 3}}. Error file: " in out
        assert "Result for" not in out
        assert tables == 1  # the final table only
    else:  # 3, and None: Ray Tune's default
        assert all(block in out for block in detailed)
        assert all(f"Trial {n} completed." in out for n in completed)
        assert "\n  loss: " in out and "\n  score: 2" in out
        assert f"The trial {errored} errored" in out
        assert tables >= 2  # intermediate tables, and the final one


class _Recorder(ProgressReporter):
    def __init__(self):
        self.setups, self.asked, self.reports = [], [], []

    def setup(self, start_time=None, total_samples=None, metric=None, mode=None, **kwargs):
        self.setups.append((start_time, total_samples, metric, mode))

    def should_report(self, trials, done=False):
        self.asked.append(done)
        return done or len(self.asked) == 1

    def report(self, trials, done, *sys_info):
        self.reports.append((len(trials), done, sys_info, sorted(t.status for t in trials)))


@pytest.mark.usefixtures("ray_session")
def test_a_custom_reporter_gets_setup_should_report_and_report(storage, capsys):
    recorder = _Recorder()
    tune.Tuner(_train, param_space={"x": tune.grid_search([1, 2, 4])},
               tune_config=tune.TuneConfig(metric="loss", mode="max"),
               run_config=tune.RunConfig(name="custom", storage_path=storage, verbose=1,
                                         progress_reporter=recorder)).fit()
    ((start, total, metric, mode),) = recorder.setups
    assert start > 0 and (total, metric, mode) == (3, "loss", "max")
    assert len(recorder.asked) > 1 and recorder.asked[-1] is True and not any(recorder.asked[:-1])
    assert recorder.reports[-1] == (3, True, ("Using FIFO scheduling algorithm.",), ["TERMINATED"] * 3)
    assert capsys.readouterr().out == ""  # the custom reporter replaces the default one

    silent = _Recorder()
    _run(storage, "custom_silent", verbose=0, progress_reporter=silent)
    assert silent.setups == [] and silent.reports == []  # verbose=0: no reporting at all


@pytest.mark.usefixtures("ray_session")
def test_the_live_view_runs_a_sweep_and_ends_showing_every_trial_finished(storage):
    console = rich_console.Console(record=True, file=io.StringIO(), force_terminal=True, width=160)
    reporter = LiveReporter(console=console)
    _run(storage, "live", verbose=2, progress_reporter=reporter)
    text = console.export_text()
    assert "4/4 trials finished" in text
    assert "Trials: 1 ERROR  3 TERMINATED" in text
    assert "This trial completed." in text  # per-trial lines printed above the live view
    assert reporter._live is None  # stopped at the end
    pickle.loads(pickle.dumps(reporter))  # reusable in a RunConfig that is saved


@pytest.mark.usefixtures("ray_session")
def test_a_reporter_can_be_reused_for_a_second_sweep(storage, capsys):
    reporter = CLIReporter()
    _run(storage, "reuse1", verbose=1, progress_reporter=reporter)
    _run(storage, "reuse2", verbose=1, progress_reporter=reporter)  # metric set once per run, no conflict
    out = capsys.readouterr().out
    assert "reuse1\n" in out and "reuse2\nNumber of trials: 4/4 (1 ERROR, 3 TERMINATED)" in out


# ---- Jupyter -------------------------------------------------------------------------------
class _FakeDisplay:
    def __init__(self):
        self.shown, self.updates, self.cleared = [], [], 0

    def module(self):
        fake = types.ModuleType("IPython.display")
        recorder = self

        class HTML:
            def __init__(self, data):
                self.data = data

        class Handle:
            def update(self, obj):
                recorder.updates.append(obj.data)

        def display(obj, display_id=False):
            recorder.shown.append((obj.data, display_id))
            return Handle()

        def clear_output(wait=False):
            recorder.cleared += 1

        fake.HTML, fake.display, fake.clear_output = HTML, display, clear_output
        return fake


def test_the_notebook_reporter_renders_html_and_updates_it_in_place(monkeypatch):
    fake = _FakeDisplay()
    monkeypatch.setitem(sys.modules, "IPython.display", fake.module())
    runner = _sweep_state()
    reporter = JupyterNotebookReporter(overwrite=True, max_progress_rows=5)
    reporter.setup(total_samples=40, metric="loss", mode="min")
    reporter._attach(RunnerColumns(runner), 1)
    reporter.report(runner.get_trials(), False, "Using <FIFO> scheduling")
    reporter.report(runner.get_trials(), True)
    assert fake.cleared == 1 and len(fake.shown) == 1 and fake.shown[0][1] is True
    (first, _), (last,) = fake.shown[0], fake.updates
    losses = _losses(runner)
    best = min(losses, key=losses.get)
    assert "<table>" in first and "<th>Trial name</th>" in first
    assert f"with loss={losses[best]:.6g}" in first
    assert '<progress value="25" max="40"></progress>' in first
    assert "Using &lt;FIFO&gt; scheduling" in first  # escaped
    assert "25 more trials not shown" in first
    assert sum(f"<td>{t}</td>" in last for t in runner.trials) == 30  # done: every trial


def test_the_notebook_reporter_is_the_default_in_a_kernel_and_needs_ipython(monkeypatch):
    class ZMQInteractiveShell:
        pass

    fake_ipython = types.ModuleType("IPython")
    fake_ipython.get_ipython = lambda: ZMQInteractiveShell()
    monkeypatch.setitem(sys.modules, "IPython", fake_ipython)
    reporter = default_reporter(verbose=1, stdout_isatty=True)
    assert type(reporter) is JupyterNotebookReporter and reporter._overwrite is True
    assert default_reporter(verbose=2)._overwrite is False  # as Ray Tune: keep the per-trial lines
    monkeypatch.setitem(sys.modules, "IPython.display", None)
    with pytest.raises(ImportError, match=r"pip install ipython"):
        reporter.display("<p>x</p>")


# ---- bad input -----------------------------------------------------------------------------
def test_a_non_reporter_is_a_clear_error():
    with pytest.raises(TypeError, match=r"RunConfig.progress_reporter must be a tune.ProgressReporter.*got str"):
        tune.RunConfig(progress_reporter="cli")
    with pytest.raises(TypeError, match=r"progress_reporter must be a tune.ProgressReporter.*got object"):
        tune.run(_train, progress_reporter=object(), verbose=0)


@pytest.mark.parametrize("kwargs, error, message", [
    ({"metric_columns": "loss"}, TypeError, r"metric_columns must be a list of keys or a dict"),
    ({"metric_columns": ["loss", 3]}, TypeError, r"metric_columns must list result keys as str, got 3"),
    ({"metric_columns": ["loss", "loss"]}, ValueError, r"names a column twice"),
    ({"parameter_columns": {"lr": 1}}, TypeError, r"parameter_columns as a dict maps"),
    ({"max_progress_rows": 0}, ValueError, r"max_progress_rows must be an int >= 1, got 0"),
    ({"max_report_frequency": -1}, ValueError, r"max_report_frequency must be a number of seconds >= 0"),
    ({"mode": "best"}, ValueError, r"mode must be 'min', 'max' or None, got 'best'"),
    ({"print_intermediate_tables": "yes"}, TypeError, r"print_intermediate_tables must be None, True or False"),
])
def test_bad_reporter_arguments_are_clear_errors(kwargs, error, message):
    with pytest.raises(error, match=message):
        CLIReporter(**kwargs)


def test_column_additions_follow_ray_tune():
    reporter = CLIReporter(metric_columns=["loss"], parameter_columns={"lr": "LR"})
    reporter.add_metric_column("acc")
    reporter.add_parameter_column("momentum", "Mom")
    assert reporter._metric_columns == ["loss", "acc"]
    assert reporter._parameter_columns == {"lr": "LR", "momentum": "Mom"}
    with pytest.raises(ValueError, match="Column loss already exists."):
        reporter.add_metric_column("loss")
    with pytest.raises(ValueError, match=r"columns are a list.*dict of key -> heading"):
        reporter.add_metric_column("f1", "F1")


def test_a_metric_given_to_both_reporter_and_experiment_is_a_clear_error():
    reporter = CLIReporter(metric="loss", mode="min")
    with pytest.raises(ValueError, match=r"remove them from the reporter or from TuneConfig"):
        reporter.setup(metric="acc", mode="max")
    with pytest.raises(ValueError, match=r"refresh_per_second must be a number > 0"):
        LiveReporter(refresh_per_second=0)


def test_a_driver_at_verbose_zero_builds_no_reporter():
    runner = _sweep_state()
    driver = ProgressDriver(runner, reporter=None, verbose=0, metric="loss", mode="min", total_samples=30)
    driver.step()
    driver.finish()
    assert driver.reporter is None


def test_the_notebook_reporter_takes_every_argument_cli_reporter_takes_by_name():
    import inspect

    cli = inspect.signature(CLIReporter.__init__).parameters
    notebook = dict(inspect.signature(JupyterNotebookReporter.__init__).parameters)
    assert notebook.pop("overwrite").default is True
    assert list(notebook) == list(cli) and all(notebook[n].default == cli[n].default for n in cli)
    reporter = JupyterNotebookReporter(metric="loss", mode="min", max_progress_rows=7, sort_by_metric=True,
                                       parameter_columns=["lr"], total_samples=12)
    assert (reporter._metric, reporter._mode, reporter._max_progress_rows) == ("loss", "min", 7)
    assert reporter._sort_by_metric and reporter._parameter_columns == ["lr"] and reporter._total_samples == 12
    with pytest.raises(ValueError, match="max_report_frequency"):
        JupyterNotebookReporter(max_report_frequency=-1)


@pytest.mark.parametrize("kernel", [True, False])
def test_is_notebook_says_whether_the_module_was_imported_in_a_kernel(kernel):
    import subprocess
    import textwrap

    script = textwrap.dedent(f"""
        import sys, types
        class ZMQInteractiveShell:
            pass
        if {kernel}:
            fake = types.ModuleType("IPython")
            fake.get_ipython = lambda: ZMQInteractiveShell()
            sys.modules["IPython"] = fake
        from fasttune.progress_reporter import IS_NOTEBOOK
        print(IS_NOTEBOOK)
    """)
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == str(kernel)
