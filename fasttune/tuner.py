"""``Tuner``: the entry point of a sweep (``ray.tune.Tuner``)."""
from __future__ import annotations

import os
from typing import Any, Dict, Optional

from fasttune.config import RunConfig
from fasttune.impl.tuner_internal import TunerInternal
from fasttune.result_grid import ResultGrid
from fasttune.tune_config import ResumeConfig, TuneConfig


class Tuner:
    """Tune a trainable over a param space.

    ``fit()`` uses the Ray the process is connected to (``ray.init(address=...)`` for a
    cluster) or starts a local Ray on this machine.

    Example:
        >>> import fasttune as tune
        >>> def train(config):
        ...     for i in range(5):
        ...         tune.report({"loss": (config["x"] - 0.3) ** 2 / (i + 1)})
        >>> tuner = tune.Tuner(
        ...     train,
        ...     param_space={"x": tune.uniform(0, 1)},
        ...     tune_config=tune.TuneConfig(metric="loss", mode="min", num_samples=8),
        ... )
        >>> results = tuner.fit()  # doctest: +SKIP
        >>> results.get_best_result().config  # doctest: +SKIP
    """

    def __init__(
        self,
        trainable: Any = None,
        *,
        param_space: Optional[Dict[str, Any]] = None,
        tune_config: Optional[TuneConfig] = None,
        run_config: Optional[RunConfig] = None,
        _tuner_internal: Optional[TunerInternal] = None,
    ) -> None:
        self._local_tuner = _tuner_internal or TunerInternal(
            trainable=trainable,
            param_space=param_space,
            tune_config=tune_config,
            run_config=run_config,
        )

    def fit(self) -> ResultGrid:
        """Run the sweep to completion; trial failures are in the ResultGrid, not raised
        (unless ``FailureConfig(fail_fast="raise")``)."""
        return self._local_tuner.fit()

    def get_results(self) -> ResultGrid:
        """The results of the sweep: those :meth:`fit` returned, or, for a Tuner from
        :meth:`restore` that has not run yet, those of the experiment as it was left
        (read from its files).

        Raises:
            RuntimeError: the Tuner was neither fitted nor restored.
        """
        return self._local_tuner.get_results()

    @classmethod
    def restore(
        cls,
        path: str,
        trainable: Any,
        resume_unfinished: bool = True,
        resume_errored: bool = False,
        restart_errored: bool = False,
        param_space: Optional[Dict[str, Any]] = None,
        storage_filesystem: Any = None,
        _resume_config: Optional[ResumeConfig] = None,
    ) -> "Tuner":
        """A Tuner that continues the experiment in ``path`` (``<storage_path>/<name>``)
        from its latest snapshot, with the settings it was started with.

        Finished trials are kept and not rerun.  Unfinished trials continue from their
        latest checkpoint (``resume_unfinished=False``: they are marked TERMINATED);
        errored trials stay failed unless ``resume_errored`` (continue from their
        checkpoint) or ``restart_errored`` (start over).  ``trainable`` is the same
        trainable the experiment ran; ``param_space`` may be given again for values that
        do not pickle.  The directory may have moved since.  Restoring loads the
        searcher and scheduler with cloudpickle: restore only directories you trust.

        ``path`` may be in storage (``s3://bucket/prefix/exp``, or a path on
        ``storage_filesystem``): nothing local is needed, and the restored run keeps
        the experiment there.

        Example:
            >>> import tempfile
            >>> import fasttune as tune
            >>> def train(config):
            ...     tune.report({"loss": config["x"] ** 2})
            >>> tune.Tuner.can_restore(tempfile.mkdtemp())  # an empty directory: nothing to continue
            False
            >>> path = "~/fasttune_results/my_sweep"
            >>> if tune.Tuner.can_restore(path):  # doctest: +SKIP
            ...     results = tune.Tuner.restore(path, trainable=train).fit()
        """
        resume_config = _resume_config or ResumeConfig.from_flags(resume_unfinished, resume_errored, restart_errored)
        return cls(_tuner_internal=TunerInternal(
            restore_path=path, resume_config=resume_config, trainable=trainable, param_space=param_space,
            storage_filesystem=storage_filesystem))

    @classmethod
    def can_restore(cls, path: "str | os.PathLike[str]", storage_filesystem: Any = None) -> bool:
        """Whether ``path`` holds an experiment that :meth:`restore` can continue (its
        settings and at least one snapshot); reads only the directory listing.

        ``path`` may be in storage: a URI that ``pyarrow.fs`` understands
        (``s3://bucket/prefix/exp``), or a path on ``storage_filesystem``.
        """
        from fasttune import _storage as storage

        location = storage.resolve(path, storage_filesystem)
        if location is not None:
            import fnmatch

            from fasttune.execution._experiment_state import SNAPSHOT_GLOB, TUNER_FILE

            names = storage.list_names(location)
            return TUNER_FILE in names and bool(fnmatch.filter(names, SNAPSHOT_GLOB))
        from fasttune.impl._tuner_spec import can_restore

        return can_restore(os.path.abspath(os.path.expanduser(os.fspath(path))))
