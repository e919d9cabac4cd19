"""HyperBandForBOHB with TuneBOHB across the restores that make HyperBand judge a trial
again: a sweep interrupted right after any decision (the pause or stop on its way is
carried out on restore), an errored trial restarted
(``restart_errored``) or resumed from its checkpoint (``resume_errored``).  The restored
sweep ends as the one never interrupted does, and TuneBOHB was told the same
observations, each (config, budget) once, and of each trial's end once."""
import shutil

import pytest

import fasttune as tune
from fasttune.schedulers import HyperBandForBOHB
from fasttune.search import uniform
from fasttune.simulation import Simulation
from fasttune_testing import fit
from interrupt_testing import LogAndInterrupt

from fasttune.search.bohb import TuneBOHB  # the test extra installs hpbandster: a missing one fails
from test_restart_errored import QUALITY, InterruptAfterAnError, Linear, simulated_finals


class RecordingBOHB(TuneBOHB):
    """TuneBOHB that keeps, in its own (saved) state, each observation it passed to
    hpbandster as (q, budget, loss) and each trial end it heard of as q; the instance
    used last is ``RecordingBOHB.used`` (a restored sweep unpickles its own)."""

    used = None

    def to_wrapper(self, trial_id, result):
        RecordingBOHB.used = self
        job = super().to_wrapper(trial_id, result)  # what hpbandster's model is given
        observation = (job.kwargs["config"]["q"], job.kwargs["budget"], job.result["loss"])
        self.__dict__.setdefault("told", []).append(observation)
        return job

    def on_trial_complete(self, trial_id, result=None, error=False):
        RecordingBOHB.used = self
        if trial_id in self.trial_to_params and not error:  # an errored trial may run again
            self.__dict__.setdefault("ended", []).append(self.trial_to_params[trial_id]["q"])
        super().on_trial_complete(trial_id, result=result, error=error)


def observations():
    """What the last used searcher was told, sorted, and what its model holds."""
    searcher = RecordingBOHB.used
    told = sorted(searcher.__dict__.get("told", []))
    ended = sorted(searcher.__dict__.get("ended", []))
    model = {budget: sorted(losses) for budget, losses in searcher.bohber.losses.items()}
    return told, ended, model


def run(tmp_path, name, failing_q=None, fails_at_start=1, callbacks=()):
    searcher = RecordingBOHB({"q": uniform(0, 17)}, points_to_evaluate=[{"q": float(q)} for q in QUALITY], seed=0)
    RecordingBOHB.used = searcher
    simulation = Simulation(Linear(QUALITY, failing_q, fails_at_start), num_workers=3, write_results=True)
    return fit(simulation, str(tmp_path), name=name, callbacks=list(callbacks),
               tune_config=tune.TuneConfig(metric="score", mode="max", num_samples=len(QUALITY), search_alg=searcher,
                                           scheduler=HyperBandForBOHB(time_attr="epoch", max_t=9,
                                                                      reduction_factor=3)))


def restored(tmp_path, name, **flags):
    simulation = Simulation(Linear(QUALITY), num_workers=3, write_results=True)
    grid = tune.Tuner.restore(str(tmp_path / name), trainable=simulation, **flags).fit()
    assert grid.num_errors == 0
    return grid


@pytest.fixture
def whole(tmp_path):
    finals = simulated_finals(run(tmp_path, "whole"))
    told, ended, model = observations()
    assert len(told) == len(set((q, budget) for q, budget, _ in told))
    assert ended == sorted(float(q) for q in QUALITY)
    return finals, (told, ended, model)


class AtResult:
    """Picks the sweep's ``at``-th judged result (for ``LogAndInterrupt``)."""

    def __init__(self, at):
        self.at, self.seen = at, 0

    def __call__(self, result):
        self.seen += 1
        return self.seen == self.at


def test_a_sweep_interrupted_right_after_any_decision_tells_tune_bohb_each_observation_once(tmp_path, whole):
    """Every result in turn: a trial paused at its milestone, or stopped (its repeated result
    stopped on again), ends as in the sweep never interrupted, and TuneBOHB's model has the
    same observations, none twice."""
    total = sum(whole[0].values())
    for at in range(1, total):
        interrupt = LogAndInterrupt(str(tmp_path / "log"), AtResult(at))
        with pytest.raises(tune.TuneError, match="interrupted right after a decision"):
            run(tmp_path, f"cut{at}", callbacks=[interrupt])
        assert simulated_finals(restored(tmp_path, f"cut{at}")) == whole[0], f"interrupted at result {at}"
        assert observations() == whole[1], f"interrupted at result {at}"
        shutil.rmtree(tmp_path / f"cut{at}")


def test_a_restarted_trial_tells_tune_bohb_as_the_sweep_never_failed(tmp_path, whole):
    # q=0, the worst of bracket s=2, fails as it starts; restarted, back in its bracket.
    with pytest.raises(tune.TuneError, match="interrupted after an error"):
        run(tmp_path, "cut", failing_q=0, callbacks=[InterruptAfterAnError()])
    finals = simulated_finals(restored(tmp_path, "cut", restart_errored=True))
    assert finals == whole[0]
    assert observations() == whole[1]


def test_a_trial_resumed_from_its_checkpoint_tells_tune_bohb_as_the_sweep_never_failed(tmp_path, whole):
    # q=14, kept at milestone 1 of bracket s=2, fails as it resumes; resumed from its
    # checkpoint before that bracket halves again, it is back in it, reporting budget 3.
    with pytest.raises(tune.TuneError, match="interrupted after an error"):
        run(tmp_path, "cut", failing_q=14, fails_at_start=2, callbacks=[InterruptAfterAnError()])
    finals = simulated_finals(restored(tmp_path, "cut", resume_errored=True))
    assert finals == whole[0]
    assert observations() == whole[1]
