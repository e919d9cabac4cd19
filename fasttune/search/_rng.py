"""The random source behind every draw of a search space.

``random_state`` arguments (``Domain.sample``, ``generate_variants``,
``BasicVariantGenerator``) take ``None``, an int seed, a numpy ``Generator`` or
a ``RandomState``; :func:`as_rng` turns any of them into one :class:`Rng`.

Example:
    >>> from fasttune.search._rng import as_rng
    >>> rng = as_rng(0)
    >>> as_rng(rng) is rng
    True
    >>> as_rng(None).is_global  # numpy's global generator, as in Ray Tune
    True
"""
from __future__ import annotations

import math
import numbers
from copy import copy
from typing import Any, Union

import numpy as np

RandomState = Union[None, int, np.random.Generator, np.random.RandomState]

__all__ = ["RandomState", "Rng", "as_rng"]


_PLAIN_REALS = (float, int)


class Rng:
    """One random source over numpy's two generator APIs.

    ``None`` means numpy's global generator, so that ``np.random.seed(...)``
    makes a sweep reproducible as it does in Ray Tune.
    """

    __slots__ = ("_gen", "_own")

    def __init__(self, source: Any = None) -> None:
        self._own = False
        if isinstance(source, Rng):
            self._gen = source._gen  # (two of them draw from it now: neither is its only one)
        elif source is None or isinstance(source, (np.random.Generator, np.random.RandomState)):
            self._gen = source
        elif isinstance(source, (numbers.Integral, np.integer)) and not isinstance(source, bool):
            self._gen = np.random.default_rng(int(source))
            self._own = True
        else:
            raise TypeError(
                "random_state must be None, an int seed, a numpy.random.Generator or a "
                f"numpy.random.RandomState; got {type(source).__name__} {source!r}."
            )

    @property
    def is_global(self) -> bool:
        return self._gen is None

    @property
    def is_own(self) -> bool:
        """Whether only this Rng draws from its generator (made from a seed): a generator
        the user passed, or numpy's global one, may be drawn from elsewhere too."""
        return getattr(self, "_own", False)  # (an Rng pickled before this slot: not known, so no)

    @property
    def _engine(self) -> Any:
        return np.random.mtrand._rand if self._gen is None else self._gen

    # A draw of one value goes through numpy's scalar path: its array path lets go of the
    # GIL for the draw, and getting it back from a busy writer thread can cost the event
    # loop more than the whole search step.  Both paths draw the same numbers.

    def uniform(self, low: float, high: float, size: int) -> np.ndarray:
        if size == 1:
            return np.array([self._engine.uniform(low, high)])
        return self._engine.uniform(low, high, size=size)

    def normal(self, mean: float, sd: float, size: int) -> np.ndarray:
        if size == 1:
            return np.array([self._engine.normal(mean, sd)])
        return self._engine.normal(mean, sd, size=size)

    def integers(self, low: int, high: int, size: int) -> np.ndarray:
        """Integers in ``[low, high)``."""
        draw = self._gen.integers if isinstance(self._gen, np.random.Generator) else self._engine.randint
        if size == 1:
            return np.array([draw(low, high)], dtype=np.int64)
        return draw(low, high, size=size)

    # One value as a Python number, without the array: what ``uniform(low, high, 1)[0]``
    # (and ``normal``, ``integers``) cast to float or int gives, for a sampling plan's draws.

    def uniform_value(self, low: float, high: float) -> float:
        """``float(self.uniform(low, high, 1)[0])``, drawn the same way."""
        if type(low) in _PLAIN_REALS and type(high) in _PLAIN_REALS:
            low, high = float(low), float(high)
            scale = high - low
            # (-0.0 >= 0.0, yet Generator.uniform refuses a range whose sign bit is set.)
            plain = (scale > 0.0 or (scale == 0.0 and math.copysign(1.0, scale) > 0.0)) and scale != math.inf
        else:
            plain = False  # numpy's own conversions and errors (a string bound is a TypeError)
        if plain:
            # numpy's uniform is ``low + (high - low) * next_double``: the same double from
            # its plain [0, 1) draw, without the argument handling that, cold in the
            # middle of a sweep's event loop, costs ten times the draw.
            if isinstance(self._gen, np.random.Generator):
                return low + scale * self._gen.random()
            return low + scale * self._engine.random_sample()
        return float(self._engine.uniform(low, high))  # (its errors, and RandomState's high < low)

    def normal_value(self, mean: float, sd: float) -> float:
        """``float(self.normal(mean, sd, 1)[0])``, drawn the same way."""
        return float(self._engine.normal(mean, sd))

    def integer_value(self, low: int, high: int) -> int:
        """``int(self.integers(low, high, 1)[0])``, drawn the same way."""
        gen = self._gen
        if isinstance(gen, np.random.Generator):
            return int(gen.integers(low, high))
        return int(self._engine.randint(low, high))

    def indices(self, n: int, size: int) -> np.ndarray:
        # The draws choice(n, size) makes (it calls these), without its argument handling.
        return self.integers(0, n, size)

    def get_state(self) -> Any:
        if isinstance(self._gen, np.random.Generator):
            return copy(self._gen.bit_generator.state)
        return self._engine.get_state()

    def set_state(self, state: Any) -> None:
        if isinstance(self._gen, np.random.Generator):
            self._gen.bit_generator.state = state
        else:
            self._engine.set_state(state)


def as_rng(random_state: Any) -> Rng:
    return random_state if isinstance(random_state, Rng) else Rng(random_state)
