"""A callback that logs each result the runner judged and raises once, right after the
runner decided on the result it picks: how the restore tests interrupt a sweep while a
decision is on its way to the worker."""
import fasttune as tune


class LogAndInterrupt(tune.Callback):
    """Logs each judged result as ``q iteration``, in order, and raises once: at the first
    result that ``interrupts(result)`` picks (the runner has decided on it already)."""

    def __init__(self, log, interrupts=None):
        self.log, self.interrupts, self.raised = log, interrupts, False

    def on_trial_result(self, iteration, trials, trial, result, **info):
        with open(self.log, "a") as f:
            f.write(f"{trial.config['q']} {result['training_iteration']}\n")
        if self.interrupts is not None and not self.raised and self.interrupts(result):
            self.raised = True
            raise RuntimeError("interrupted right after a decision")

    def get_state(self):
        return {"raised": self.raised}  # the restored sweep is not interrupted again

    def set_state(self, saved):
        self.raised = saved["raised"]


def read_log(path):
    with open(path) as f:
        return [(float(q), int(it)) for q, it in (line.split() for line in f)]
