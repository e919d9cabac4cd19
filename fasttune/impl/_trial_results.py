"""The Results of ``fit()``'s ResultGrid, made from the trials when they are read.

A sweep's finished trials are compact (their table row and packed record, a few hundred
bytes each); a Result made for every trial as the sweep ends would cost more than all of
them together (its metrics, config and path as Python objects: ~1.4 KB a trial, 140 MB
at 100,000 trials).  :class:`TrialResults` makes each Result from its trial when it is
asked for and keeps it as long as anything else holds it: ``grid[0] is grid[0]`` while
a caller keeps the first, and a loop over 100,000 results holds one at a time.

Example:
    >>> from fasttune.experiment import Trial
    >>> from fasttune.result import Result
    >>> trials = [Trial("train", config={"x": x}) for x in (1, 2)]
    >>> results = TrialResults(trials, lambda t: Result({}, None, None, "/e", _config=t.config))
    >>> len(results), results[1].config, [r.config["x"] for r in results]
    (2, {'x': 2}, [1, 2])
"""
from __future__ import annotations

import weakref
from typing import Any, Callable, Iterator, List, Sequence, Union, overload

from fasttune.result import Result


class TrialResults(Sequence[Result]):
    """``make(trial)`` for each of ``trials``, in order, made when read (see the module)."""

    def __init__(self, trials: List[Any], make: Callable[[Any], Result]) -> None:
        self._trials = trials
        self._make = make
        self._held: "weakref.WeakValueDictionary[int, Result]" = weakref.WeakValueDictionary()

    def __len__(self) -> int:
        return len(self._trials)

    @overload
    def __getitem__(self, index: int) -> Result: ...

    @overload
    def __getitem__(self, index: slice) -> List[Result]: ...

    def __getitem__(self, index: Union[int, slice]) -> Union[Result, List[Result]]:
        if isinstance(index, slice):
            return [self[i] for i in range(*index.indices(len(self._trials)))]
        trials = self._trials
        if index < 0:
            index += len(trials)
        if not 0 <= index < len(trials):
            raise IndexError(f"result index {index} is out of range for {len(trials)} results")
        result = self._held.get(index)
        if result is None:
            result = self._held[index] = self._make(trials[index])
        return result

    def __iter__(self) -> Iterator[Result]:
        for index in range(len(self._trials)):
            yield self[index]

    def __reduce__(self) -> Any:
        # Pickled (or deep-copied) with its grid: as the list of its Results.
        return list, (list(self),)
