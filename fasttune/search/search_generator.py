"""``SearchGenerator``: runs a ``Searcher``'s suggestions as trials.

The runner talks to a ``SearchAlgorithm``; a ``Searcher`` only proposes one
config per ``suggest(trial_id)``.  ``SearchGenerator`` sits in between: it
makes a trial id, asks the searcher for a config, merges that config into the
experiment's param space (constants stay, suggested values replace domains)
and builds the trial.  ``None`` from ``suggest`` means "nothing now",
``Searcher.FINISHED`` ends the search, and ``num_samples`` caps the number of
trials (``-1``: until the searcher says ``FINISHED``).

Example:
    >>> from fasttune.search.searcher import Searcher
    >>> from fasttune.search.search_generator import SearchGenerator
    >>> class Walk(Searcher):
    ...     def __init__(self):
    ...         super().__init__(metric="loss", mode="min")
    ...         self.x = 0
    ...     def suggest(self, trial_id):
    ...         self.x += 1
    ...         return {"x": self.x}
    ...     def on_trial_complete(self, trial_id, result=None, error=False):
    ...         pass
    >>> class Experiment:  # the parts of fasttune.Experiment the generator uses
    ...     name = "demo"
    ...     spec = {"config": {"x": None, "batch": 32}, "num_samples": 2}
    ...     def trial_factory(self, config, experiment_tag, evaluated_params, trial_id):
    ...         return type("Trial", (), {"trial_id": trial_id, "config": config})()
    >>> search = SearchGenerator(Walk())
    >>> search.add_configurations(Experiment())
    >>> [search.next_trial().config for _ in range(2)], search.is_finished()
    ([{'x': 1, 'batch': 32}, {'x': 2, 'batch': 32}], True)
"""
from __future__ import annotations

import glob
import logging
import os
import sys
import threading
from collections.abc import Mapping
from typing import Any, Dict, List, Optional, Tuple, Union

from fasttune._atomic import atomic_write
from fasttune._flatten import flatten_dict
from fasttune._serialization import Loader, pack_state
from fasttune.error import TuneError
from fasttune.search._background import BackgroundCall
from fasttune.search.search_algorithm import SearchAlgorithm
from fasttune.search.searcher import Searcher
from fasttune.search._paths import path_str
from fasttune.search.variant_generator import copy_value, format_vars, parse_spec_vars, resolve_nested_dict

logger = logging.getLogger(__name__)

__all__ = ["SearchGenerator"]

# pending_suggestion for an answer already collected from its thread (e.g. by a save).
_ALREADY_SET = threading.Event()
_ALREADY_SET.set()


def _merge(base: Dict, update: Mapping) -> Dict:
    """Deep-merges ``update`` into ``base`` (in place): nested dicts merge, other values replace."""
    for key, value in update.items():
        if isinstance(value, Mapping) and isinstance(base.get(key), Mapping):
            base[key] = _merge(dict(base[key]), value)
        else:
            base[key] = copy_value(value)
    return base


def _unresolved(config: Mapping) -> List[str]:
    """Dotted paths of the search-space domains and grid searches left in ``config``."""
    _, domains, grids = parse_spec_vars(config)
    return [path_str(path) for path, _ in domains + grids]


class SearchGenerator(SearchAlgorithm):
    """Turns a :class:`~fasttune.search.searcher.Searcher` into the trials the runner starts.

    ``TuneConfig(search_alg=searcher)`` wraps a ``Searcher`` in this class for
    you.  Only one experiment can be added.

    Args:
        searcher: The searcher whose ``suggest`` makes the configs.  Wrappers
            (``ConcurrencyLimiter``, ``Repeater``) are searchers too.
    """

    CKPT_FILE_TMPL = "search-generator-state-{}.pkl"
    # A searcher learns from results: ask it only when a trial can start, so each
    # suggestion sees every result reported so far (as with Ray Tune).
    asks_ahead = False

    def __init__(self, searcher: Searcher) -> None:
        if not isinstance(searcher, Searcher):
            raise TypeError(
                f"SearchGenerator wraps a fasttune Searcher, got {type(searcher).__name__}; "
                "pass a SearchAlgorithm (e.g. BasicVariantGenerator) to TuneConfig(search_alg=...) directly."
            )
        self.searcher = searcher
        self._experiment: Any = None
        self._counter = 0
        self._total_samples = 0
        self._finished = False
        # The suggest running in the background (at most one), the trial id it was asked
        # for, and the notifications that arrived while it ran (delivered after it, in
        # order, so the searcher is never called from two threads at once).
        self._inflight: Optional[BackgroundCall] = None
        self._inflight_id: Optional[str] = None
        self._backlog: List[Tuple[str, tuple]] = []
        self._ready: Optional[Tuple[str, Any]] = None  # a finished suggest's answer, not yet a trial
        self._abandoned = False
        # An id a "not now" answer left unused: the next suggest is asked with it, so such
        # answers use up no ids and a restored sweep gives its new trials the ids they had.
        self._unused_trial_id: Optional[str] = None
        self._heard_since_asked = False  # notifications reached the searcher after its last answer

    def _new_trial_id(self) -> str:
        if self._unused_trial_id is not None:
            trial_id, self._unused_trial_id = self._unused_trial_id, None
            return trial_id
        new_id = getattr(self._experiment, "new_trial_id", None)
        if new_id is not None:
            return new_id()
        from fasttune.experiment.trial import Trial  # imports no Ray; kept local to keep layers apart

        return Trial.generate_id()

    # -- properties -------------------------------------------------------------------
    @property
    def metric(self) -> Any:
        return self.searcher.metric

    @property
    def mode(self) -> Any:
        return self.searcher.mode

    @property
    def total_samples(self) -> int:
        """The trial cap from ``num_samples`` (0 when unlimited, i.e. ``num_samples=-1``)."""
        return 0 if self._total_samples == sys.maxsize else self._total_samples

    def set_search_properties(self, metric: Optional[str], mode: Optional[str], config: Dict, **spec: Any) -> bool:
        """Hands metric, mode and the param space to the searcher.

        A searcher may decline them (it already has its own space and metric);
        that is only an error when the param space still holds search-space
        domains, which nothing would then sample (``ValueError``, as in Ray Tune).

        Returns:
            ``True``: a declining searcher keeps its own metric and mode.
        """
        if self.searcher.set_search_properties(metric, mode, config, **spec):
            return True
        unresolved = _unresolved(config or {})
        if unresolved:
            raise ValueError(
                f"The param_space holds search-space domains ({', '.join(unresolved)}), but the "
                f"searcher {type(self.searcher).__name__} did not take the param_space (it already "
                "has a search space, or does not accept one). Define the search space in one place: "
                "in the searcher, or in param_space with a searcher that accepts it."
            )
        return True

    # -- trials ----------------------------------------------------------------------
    def add_configurations(self, experiments: Union[Any, List[Any]]) -> None:
        """Registers the one experiment whose trials the searcher will suggest."""
        batch = list(experiments) if isinstance(experiments, (list, tuple)) else [experiments]
        if self._experiment is not None or len(batch) != 1:
            raise TuneError(
                "A Searcher (through SearchGenerator) runs exactly one experiment; "
                f"got {len(batch) + (self._experiment is not None)}."
            )
        experiment = batch[0]
        spec = getattr(experiment, "spec", None)
        if not isinstance(spec, Mapping) or not callable(getattr(experiment, "trial_factory", None)):
            raise TypeError(
                "add_configurations takes an Experiment (with .spec and .trial_factory), "
                f"got {type(experiment).__name__}."
            )
        num_samples = spec.get("num_samples", 1)
        if isinstance(num_samples, bool) or not isinstance(num_samples, int) or (num_samples < 0 and num_samples != -1):
            raise ValueError(f"num_samples must be an int >= 0, or -1 for unlimited, got {num_samples!r}.")
        self._experiment = experiment
        self._total_samples = sys.maxsize if num_samples == -1 else num_samples
        _warn_repeat_mismatch(self.searcher, self._total_samples)

    def next_trial(self) -> Optional[Any]:
        """A trial with the searcher's next config, or ``None`` (nothing now, or finished).

        Synchronous: ``suggest`` runs on the calling thread (a suggestion already being
        made in the background is waited for and collected instead).  The trial runner
        uses :meth:`poll_trial`, which never waits.
        """
        self._check_added()
        if self._inflight is not None:
            self._inflight.join()
            self._settle()
        if self._ready is not None:
            return self._collect()
        if self.is_finished():
            return None
        trial_id = self._new_trial_id()
        return self._trial_from(trial_id, self.searcher.suggest(trial_id))

    def poll_trial(self, ask: bool = True) -> Optional[Any]:
        """The trial of a finished background ``suggest``, else ``None`` (never waits).

        With ``ask`` and nothing in flight, starts the next ``suggest`` on a background
        thread; :attr:`pending_suggestion` is set when it is ready.  One call either
        collects a suggestion or starts one, never both: after a ``None`` ("not now")
        the searcher is asked again only at the runner's next step, which comes after
        the next worker event, as with a synchronous ``next_trial``.  A ``suggest`` that
        raised raises its own exception here.
        """
        self._check_added()
        if self._inflight is not None:
            if not self._inflight.done.is_set():
                return None
            self._settle()
        if self._ready is not None:
            trial = self._collect()
            # A "not now" given before the searcher heard of trials that ended meanwhile
            # is stale: it is asked again at once (else a sweep with nothing running and a
            # searcher that would now say yes would look stalled).
            if trial is not None or not (self._heard_since_asked and ask):
                return trial
        if not ask or self._abandoned or self.is_finished():
            return None
        self._heard_since_asked = False
        trial_id = self._new_trial_id()
        self._inflight = BackgroundCall(self.searcher.suggest, trial_id, name=f"fasttune-suggest-{trial_id}")
        self._inflight_id = trial_id
        return None

    @property
    def pending_suggestion(self) -> Optional[threading.Event]:
        if self._inflight is not None:
            return self._inflight.done
        return _ALREADY_SET if self._ready is not None else None

    def _check_added(self) -> None:
        if self._experiment is None:
            raise TuneError("SearchGenerator.next_trial() was called before add_configurations().")

    def _settle(self) -> None:
        """The finished ``suggest`` is collected: its answer is kept for ``_collect``,
        then the notifications that arrived while it ran reach the searcher, in order.

        They came after the ``suggest`` was started, so the searcher hears them after
        it answered, exactly the order a synchronous ``next_trial`` gives it.
        """
        call, trial_id = self._inflight, self._inflight_id
        self._inflight = self._inflight_id = None
        backlog, self._backlog = self._backlog, []
        suggestion = call.result()  # a suggest that raised fails here, the notifications unsent
        self._ready = (trial_id, suggestion)
        self._heard_since_asked = bool(backlog)
        for method, args in backlog:
            getattr(self.searcher, method)(*args)

    def _collect(self) -> Optional[Any]:
        trial_id, suggestion = self._ready
        self._ready = None
        return self._trial_from(trial_id, suggestion)

    def _trial_from(self, trial_id: str, suggestion: Any) -> Optional[Any]:
        """The trial for the searcher's answer to ``suggest(trial_id)`` (None: no trial)."""
        if suggestion is None:
            self._unused_trial_id = trial_id
            return None
        if isinstance(suggestion, str) and suggestion == Searcher.FINISHED:
            logger.debug("%s finished after %d trials.", type(self.searcher).__name__, self._counter)
            self.set_finished()
            return None
        if not isinstance(suggestion, Mapping):
            raise TypeError(
                f"{type(self.searcher).__name__}.suggest() must return a config dict, None or "
                f"Searcher.FINISHED, got {type(suggestion).__name__} {suggestion!r}."
            )
        config = _merge(dict(copy_value(dict(self._experiment.spec.get("config") or {}))), suggestion)
        unresolved = _unresolved(config)
        if unresolved:
            raise TuneError(
                f"{type(self.searcher).__name__} suggested {dict(suggestion)!r}, which leaves the "
                f"param_space entries {', '.join(unresolved)} unsampled; the searcher must suggest a "
                "value for every search-space domain."
            )
        self._counter += 1
        tag = f"{self._counter}_{format_vars(resolve_nested_dict(config))}"
        return self._experiment.trial_factory(config, tag, flatten_dict(dict(suggestion)), trial_id)

    def close(self, timeout: Optional[float] = None) -> None:
        """Waits (at most ``timeout`` seconds) for a ``suggest`` still running, so no thread
        outlives the experiment; its answer is dropped (no trial is made from it).

        One still running after ``timeout`` is abandoned with a warning: a Python thread
        cannot be stopped, so it ends when ``suggest`` returns, and nothing calls the
        searcher from then on.  Notifications held for the searcher are delivered when
        the ``suggest`` finished (errors are logged: the experiment is already over).
        """
        call, trial_id = self._inflight, self._inflight_id
        if call is None:
            return
        if not call.join(timeout):
            self._abandoned = True
            self._inflight = self._inflight_id = None
            self._backlog = []
            logger.warning(
                "%s.suggest(%r) was still running %.1fs after the experiment stopped; it is "
                "abandoned (its answer is dropped, and the searcher is called no more).",
                type(self.searcher).__name__, trial_id, timeout or 0.0,
            )
            return
        try:
            self._settle()
        except Exception:  # noqa: BLE001 - the experiment already ended (or failed)
            logger.exception("%s failed after the experiment stopped.", type(self.searcher).__name__)
        self._ready = None

    def on_trial_result(self, trial_id: str, result: Dict) -> None:
        if self._inflight is not None:  # suggest is running: the searcher hears it after
            self._backlog.append(("on_trial_result", (trial_id, result)))
        else:
            self.searcher.on_trial_result(trial_id, result)

    def on_trial_complete(self, trial_id: str, result: Optional[Dict] = None, error: bool = False) -> None:
        if self._inflight is not None:
            self._backlog.append(("on_trial_complete", (trial_id, result, error)))
        else:
            self.searcher.on_trial_complete(trial_id, result=result, error=error)

    def is_finished(self) -> bool:
        if self._inflight is not None or self._ready is not None:
            return False  # the suggestion on its way may still become a trial
        return self._finished or self._counter >= self._total_samples

    # -- checkpointing ---------------------------------------------------------------
    def get_state(self) -> Dict[str, Any]:
        """The generator's own counters, and a suggestion made but not yet a trial (the
        searcher saves itself).  A ``suggest`` still running is waited for first: the
        searcher's state must not change while it is saved."""
        if self._inflight is not None:
            self._inflight.join()
            self._settle()
        return {"counter": self._counter, "total_samples": self._total_samples, "finished": self._finished,
                "ready": self._ready}

    def set_state(self, state: Dict[str, Any]) -> None:
        self._counter = state["counter"]
        self._total_samples = state["total_samples"]
        self._finished = state["finished"]
        self._ready = state.get("ready")

    def _chain(self) -> List[Searcher]:
        """The wrappers from the outside in, then the base searcher last."""
        chain = [self.searcher]
        while isinstance(getattr(chain[-1], "searcher", None), Searcher):
            chain.append(chain[-1].searcher)
        return chain

    def save_to_dir(self, dirpath: str, session_str: str = "default") -> bool:
        """Saves the wrappers' and the generator's state, and the base searcher's via its own ``save_to_dir``."""
        generator = self.get_state()  # first: it waits for a suggest still running
        *wrappers, base = self._chain()
        state = {"generator": generator, "wrappers": [(type(w).__name__, w.get_state()) for w in wrappers]}
        base.save_to_dir(dirpath, session_str)
        atomic_write(os.path.join(dirpath, self.CKPT_FILE_TMPL.format(session_str)), pack_state(state), durable=True)
        return True

    def has_checkpoint(self, dirpath: str) -> bool:
        return bool(glob.glob(os.path.join(dirpath, self.CKPT_FILE_TMPL.format("*"))))

    def restore_from_dir(self, dirpath: str) -> None:
        """Restores what ``save_to_dir`` wrote: same wrappers, same base searcher state."""
        paths = glob.glob(os.path.join(dirpath, self.CKPT_FILE_TMPL.format("*")))
        if not paths:
            raise RuntimeError(f"No SearchGenerator checkpoint ({self.CKPT_FILE_TMPL.format('*')}) in {dirpath}.")
        with open(max(paths, key=os.path.getmtime), "rb") as f:
            state = Loader().loads(f.read())
        *wrappers, base = self._chain()
        saved = state["wrappers"]
        names = [type(w).__name__ for w in wrappers]
        if [name for name, _ in saved] != names:
            raise TuneError(
                f"The saved searcher was wrapped in {[name for name, _ in saved]}, this one in {names}; "
                "restore into the same wrappers."
            )
        for wrapper, (_, wrapper_state) in zip(wrappers, saved):
            wrapper.set_state(wrapper_state)
        base.restore_from_dir(dirpath)
        self.set_state(state["generator"])


def _warn_repeat_mismatch(searcher: Searcher, total_samples: int) -> None:
    from fasttune.search.repeater import Repeater

    while isinstance(searcher, Searcher):
        if isinstance(searcher, Repeater) and total_samples != sys.maxsize and total_samples % searcher.repeat:
            logger.warning(
                "num_samples (%d) is the total number of trials, repeats included, and is not a multiple "
                "of Repeater(repeat=%d): the last group is cut short and its average never reaches the "
                "searcher. For 3 configs repeated 5 times, set num_samples=15.",
                total_samples, searcher.repeat,
            )
            return
        searcher = getattr(searcher, "searcher", None)
