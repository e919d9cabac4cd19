"""Search-space domains and the functions users build them with.

A *domain* describes where one hyperparameter may be drawn from: a float or
integer range, a set of categories, or a user function.  A domain carries one
*sampler* (uniform, log-uniform, normal, quantized, grid) that decides how a
value is drawn.  The user functions (``uniform``, ``choice``, ``grid_search``
...) have the names, arguments and bounds of Ray Tune's ``ray.tune``.

Example:
    >>> from fasttune.search.sample import loguniform, choice, randint
    >>> lr = loguniform(1e-4, 1e-1)
    >>> 1e-4 <= lr.sample(random_state=0) <= 1e-1
    True
    >>> choice(["adam", "sgd"]).sample(random_state=0) in ("adam", "sgd")
    True
    >>> randint(0, 3).sample(size=4, random_state=1)  # upper bound is exclusive
    [1, 1, 2, 2]
"""
from __future__ import annotations

import contextlib
import decimal
import inspect
import math
import numbers
from copy import copy
from typing import Any, Callable, Dict, Iterator, List, Optional, Sequence, Union

import numpy as np

from fasttune.search._grid import check_grid_values, is_grid_dict
from fasttune.search._rng import RandomState, Rng, as_rng
from fasttune.search._spec_view import spec_view

__all__ = [
    "Domain",
    "Float",
    "Integer",
    "Categorical",
    "Function",
    "Sampler",
    "BaseSampler",
    "Uniform",
    "LogUniform",
    "Normal",
    "Grid",
    "Quantized",
    "RandomState",
    "uniform",
    "quniform",
    "loguniform",
    "qloguniform",
    "randn",
    "qrandn",
    "randint",
    "qrandint",
    "lograndint",
    "qlograndint",
    "choice",
    "sample_from",
    "grid_search",
]


# ---------------------------------------------------------------------------
# Argument checks
# ---------------------------------------------------------------------------


def _is_real(value: Any) -> bool:
    if type(value) is float or type(value) is int:  # (most values: no walk of the abstract classes)
        return True
    return isinstance(value, (numbers.Real, np.floating, np.integer)) and not isinstance(value, (bool, np.bool_))


def _real(name: str, value: Any, *, allow_none: bool = False) -> Optional[float]:
    if value is None and allow_none:
        return None
    if not _is_real(value):
        raise TypeError(f"{name} must be a number, got {type(value).__name__} {value!r}.")
    value = float(value)
    if math.isnan(value):
        raise ValueError(f"{name} must be a number, got NaN.")
    return value


def _integer(name: str, value: Any) -> int:
    if not _is_real(value):
        raise TypeError(f"{name} must be an integer, got {type(value).__name__} {value!r}.")
    if not float(value).is_integer():
        raise ValueError(f"{name} must be a whole number, got {value!r}.")
    return int(value)


def _check_base(base: Any) -> float:
    base = _real("base", base)
    if base <= 0 or base == 1:
        raise ValueError(f"base must be > 0 and != 1 (it is the base of the logarithm), got {base:g}.")
    return base


@contextlib.contextmanager
def _called_as(func_name: str, **arguments: Any) -> Iterator[None]:
    """Prefix argument errors with the user-facing call that caused them."""
    try:
        yield
    except (TypeError, ValueError) as exc:
        shown = ", ".join(f"{k}={_short_repr(v)}" for k, v in arguments.items())
        raise type(exc)(f"{func_name}({shown}): {exc}") from None


def _short_repr(value: Any, limit: int = 60) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def decimal_places(q: float) -> Optional[int]:
    """How many decimals ``q`` is written with, to print quantized floats cleanly."""
    exponent = decimal.Decimal(repr(float(q))).as_tuple().exponent
    return -exponent if isinstance(exponent, int) and exponent < 0 else None


def _near_integer(x: float) -> bool:
    return abs(x - round(x)) <= 1e-9 * max(1.0, abs(x))


# ---------------------------------------------------------------------------
# Samplers
# ---------------------------------------------------------------------------


class Sampler:
    """How a domain draws values; the domain does the drawing.

    Search-algorithm adapters read a domain's sampler (``domain.get_sampler()``)
    to translate the space into their own, e.g. ``isinstance(s, LogUniform)``.
    """

    def sample(
        self,
        domain: "Domain",
        config: Optional[Union[List[Dict], Dict]] = None,
        size: int = 1,
        random_state: RandomState = None,
    ) -> Any:
        return domain._sample_with(self, config, size, as_rng(random_state))

    def __str__(self) -> str:
        return type(self).__name__

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"


class BaseSampler(Sampler):
    """The sampler of domains without a distribution of their own (``Function``)."""

    def __str__(self) -> str:
        return "Base"


class Uniform(Sampler):
    """Every value in the domain is equally likely."""


class LogUniform(Sampler):
    """The logarithm of the value is uniform; ``base`` does not change the distribution."""

    def __init__(self, base: float = 10) -> None:
        self.base = _check_base(base)

    def __repr__(self) -> str:
        return f"LogUniform(base={self.base:g})"


class Normal(Sampler):
    """Normally distributed with ``mean`` and standard deviation ``sd``."""

    def __init__(self, mean: float = 0.0, sd: float = 1.0) -> None:
        self.mean = _real("mean", mean)
        self.sd = _real("sd", sd)
        if not math.isfinite(self.mean):
            raise ValueError(f"mean must be finite, got {self.mean}.")
        if not (0 < self.sd < math.inf):
            raise ValueError(f"sd must be > 0 and finite (it is a standard deviation), got {self.sd:g}.")

    def __repr__(self) -> str:
        return f"Normal(mean={self.mean:g}, sd={self.sd:g})"


class Grid(Sampler):
    """Marks a ``Categorical`` as grid-search values: expanded, never sampled."""

    def sample(self, domain: "Domain", config: Optional[Union[List[Dict], Dict]] = None, size: int = 1,
               random_state: RandomState = None) -> Any:
        raise RuntimeError(
            "Grid-search values are expanded by the variant generator and cannot be "
            "sampled; use choice(...) to draw one value at random."
        )


class Quantized(Sampler):
    """Wraps another sampler and rounds its values to multiples of ``q``."""

    def __init__(self, sampler: Sampler, q: float) -> None:
        if not isinstance(sampler, Sampler):
            raise TypeError(f"Quantized needs a Sampler to wrap, got {type(sampler).__name__}.")
        q_value = _real("q", q)
        if not (0 < q_value < math.inf):
            raise ValueError(f"q must be > 0 (values are rounded to multiples of q), got {q!r}.")
        self.sampler = sampler
        self.q = q

    def get_sampler(self) -> Sampler:
        return self.sampler

    def __str__(self) -> str:
        return f"Quantized({self.sampler}, q={self.q})"

    def __repr__(self) -> str:
        return f"Quantized({self.sampler!r}, q={self.q!r})"


# ---------------------------------------------------------------------------
# Domains
# ---------------------------------------------------------------------------


class Domain:
    """Where one parameter's values come from, and how they are drawn.

    Example:
        >>> from fasttune.search.sample import Float
        >>> domain = Float(0.0, 1.0).uniform()
        >>> values = domain.sample(size=3, random_state=0)
        >>> len(values), all(0.0 <= v <= 1.0 for v in values)
        (3, True)
    """

    sampler: Optional[Sampler] = None
    default_sampler_cls: type = Uniform

    def cast(self, value: Any) -> Any:
        """Converts a drawn value to the domain's Python type."""
        return value

    def set_sampler(self, sampler: Sampler, allow_override: bool = False) -> None:
        if self.sampler is not None and not allow_override:
            raise ValueError(
                f"This {type(self).__name__} domain already samples with {self.sampler}; "
                f"a domain has one sampler, so {sampler} cannot be added. Build a new domain "
                "instead, e.g. Float(lower, upper).loguniform()."
            )
        self.sampler = sampler

    def get_sampler(self) -> Sampler:
        return self.sampler if self.sampler is not None else self.default_sampler_cls()

    def sample(self, config: Optional[Union[List[Dict], Dict]] = None, size: int = 1,
               random_state: RandomState = None) -> Any:
        """Draws one value, or a list of ``size`` values when ``size > 1``.

        Args:
            config: The (partially resolved) config handed to ``sample_from``
                functions (Ray Tune's name); other domains ignore it.
            size: How many values to draw.
            random_state: An int seed, a numpy ``Generator`` or ``RandomState``;
                ``None`` uses numpy's global generator.
        """
        if isinstance(size, bool) or not isinstance(size, (numbers.Integral, np.integer)) or size < 1:
            raise ValueError(f"size must be an int >= 1, got {size!r}.")
        return self.get_sampler().sample(self, config, int(size), random_state)

    def _sample_with(self, sampler: Sampler, spec: Any, size: int, rng: Rng) -> Any:
        values = self._draw(sampler, spec, size, rng)
        if size == 1:
            return self.cast(values[0])
        return [self.cast(v) for v in values]

    def _draw(self, sampler: Sampler, spec: Any, size: int, rng: Rng) -> Sequence[Any]:
        raise TypeError(f"{type(self).__name__} cannot sample with {sampler}.")

    def is_grid(self) -> bool:
        return isinstance(self.sampler, Grid)

    def is_function(self) -> bool:
        return False

    def is_valid(self, value: Any) -> bool:
        """Whether ``value`` could have been drawn from this domain."""
        raise NotImplementedError

    @property
    def domain_str(self) -> str:
        return "(unknown)"

    def __repr__(self) -> str:
        return f"{type(self).__name__}{self.domain_str} sampler={self.get_sampler()!s}"


class Float(Domain):
    """A float range; ``None`` bounds are unbounded (for ``normal``).

    Example:
        >>> from fasttune.search.sample import Float
        >>> Float(1e-4, 1e-1).loguniform().domain_str
        '(0.0001, 0.1)'
    """

    def __init__(self, lower: Optional[float], upper: Optional[float]) -> None:
        low = _real("lower", lower, allow_none=True)
        high = _real("upper", upper, allow_none=True)
        self.lower = -math.inf if low is None else low
        self.upper = math.inf if high is None else high
        if self.lower > self.upper:
            raise ValueError(
                f"lower must be <= upper, got lower={lower!r} > upper={upper!r}; swap the two bounds."
            )

    def cast(self, value: Any) -> float:
        return float(value)

    def uniform(self) -> "Float":
        if not (math.isfinite(self.lower) and math.isfinite(self.upper)):
            raise ValueError(
                f"uniform sampling needs finite bounds, got ({self.lower}, {self.upper}); "
                "use randn(mean, sd) for an unbounded parameter."
            )
        new = copy(self)
        new.set_sampler(Uniform())
        return new

    def loguniform(self, base: float = 10) -> "Float":
        if not self.lower > 0:
            raise ValueError(
                f"lower must be > 0 for log-uniform sampling (log(0) is undefined), got "
                f"{self.lower:g}; use a small positive bound such as 1e-8, and pass the value "
                "itself, not its logarithm."
            )
        if not self.upper < math.inf:
            raise ValueError("upper must be finite for log-uniform sampling.")
        new = copy(self)
        new.set_sampler(LogUniform(base))
        return new

    def normal(self, mean: float = 0.0, sd: float = 1.0) -> "Float":
        if math.isfinite(self.lower) or math.isfinite(self.upper):
            raise ValueError(
                f"normal sampling ignores bounds, so the domain must be unbounded, got "
                f"({self.lower}, {self.upper}); use Float(None, None).normal(mean, sd)."
            )
        new = copy(self)
        new.set_sampler(Normal(mean, sd))
        return new

    def quantized(self, q: float) -> "Float":
        # Quantized validates q itself; check it first so the message names q.
        sampler = Quantized(self.get_sampler(), q)
        q_value = float(q)
        for name, bound in (("lower", self.lower), ("upper", self.upper)):
            if math.isfinite(bound) and not _near_integer(bound / q_value):
                raise ValueError(
                    f"{name}={bound:g} is not a multiple of q={q!r}; choose bounds that are "
                    "multiples of q so that both ends can be drawn."
                )
        new = copy(self)
        new.set_sampler(sampler, allow_override=True)
        return new

    def _draw(self, sampler: Sampler, spec: Any, size: int, rng: Rng) -> Sequence[Any]:
        if isinstance(sampler, Quantized):
            q = float(sampler.q)
            low = round(self.lower / q) * q if math.isfinite(self.lower) else self.lower
            high = round(self.upper / q) * q if math.isfinite(self.upper) else self.upper
            raw = self._draw_continuous(sampler.get_sampler(), size, rng, low, high)
            values = np.round(raw / q) * q
            decimals = decimal_places(q)
            if decimals is not None:
                # 3 * 0.1 is 0.30000000000000004; users wrote q=0.1 and expect 0.3.
                values = np.round(values, decimals)
            # The bounds are multiples of q, so clipping to them keeps values on the grid.
            return np.clip(values, self.lower, self.upper)
        return self._draw_continuous(sampler, size, rng, self.lower, self.upper)

    @staticmethod
    def _draw_continuous(sampler: Sampler, size: int, rng: Rng, low: float, high: float) -> np.ndarray:
        if isinstance(sampler, LogUniform):
            log_base = math.log(sampler.base)
            exponents = rng.uniform(math.log(low) / log_base, math.log(high) / log_base, size)
            # base ** log_base(high) can land a hair outside the bounds.
            return np.clip(np.power(sampler.base, exponents), low, high)
        if isinstance(sampler, Normal):
            return rng.normal(sampler.mean, sampler.sd, size)
        if isinstance(sampler, Uniform):
            if not (math.isfinite(low) and math.isfinite(high)):
                raise ValueError(f"uniform sampling needs finite bounds, got ({low}, {high}).")
            return rng.uniform(low, high, size)
        raise TypeError(f"Float cannot sample with {sampler}.")

    def is_valid(self, value: Any) -> bool:
        return _is_real(value) and self.lower <= float(value) <= self.upper

    @property
    def domain_str(self) -> str:
        return f"({self.lower}, {self.upper})"


class Integer(Domain):
    """An integer range ``[lower, upper)``; quantized integer domains include ``upper``.

    Example:
        >>> from fasttune.search.sample import Integer
        >>> sorted(set(Integer(0, 3).uniform().sample(size=50, random_state=0)))
        [0, 1, 2]
    """

    def __init__(self, lower: int, upper: int) -> None:
        self.lower = _integer("lower", lower)
        self.upper = _integer("upper", upper)
        if self.lower > self.upper:
            raise ValueError(
                f"lower must be <= upper, got lower={lower!r} > upper={upper!r}; swap the two bounds."
            )

    def cast(self, value: Any) -> int:
        return int(value)

    def _require_exclusive_range(self) -> None:
        if self.lower >= self.upper:
            raise ValueError(
                f"lower must be < upper because upper is exclusive, got ({self.lower}, {self.upper}); "
                f"use upper={self.lower + 1} to always draw {self.lower}."
            )

    def uniform(self) -> "Integer":
        self._require_exclusive_range()
        new = copy(self)
        new.set_sampler(Uniform())
        return new

    def loguniform(self, base: float = 10) -> "Integer":
        if not self.lower > 0:
            raise ValueError(
                f"lower must be > 0 for log-uniform sampling (log(0) is undefined), got {self.lower}; "
                "use lower=1."
            )
        self._require_exclusive_range()
        new = copy(self)
        new.set_sampler(LogUniform(base))
        return new

    def quantized(self, q: int) -> "Integer":
        q_int = _integer("q", q)
        sampler = Quantized(self.get_sampler(), q_int)
        low, high = self._grid_bounds(q_int)
        if low > high:
            raise ValueError(
                f"no multiple of q={q_int} lies in [{self.lower}, {self.upper}]; widen the "
                "bounds or use a smaller q."
            )
        new = copy(self)
        new.set_sampler(sampler, allow_override=True)
        return new

    def _grid_bounds(self, q: int) -> tuple:
        """Indices ``k`` with ``lower <= k * q <= upper``: the lowest and highest."""
        return -((-self.lower) // q), self.upper // q

    def _draw(self, sampler: Sampler, spec: Any, size: int, rng: Rng) -> Sequence[Any]:
        if isinstance(sampler, Quantized):
            # Draw the index of a multiple of q, so every multiple in the
            # (inclusive) range is reachable and none is favoured by rounding.
            q = int(sampler.q)
            low, high = self._grid_bounds(q)
            return self._draw_range(sampler.get_sampler(), size, rng, low, high + 1) * q
        return self._draw_range(sampler, size, rng, self.lower, self.upper)

    @staticmethod
    def _draw_range(sampler: Sampler, size: int, rng: Rng, low: int, high: int) -> np.ndarray:
        """Integers in ``[low, high)``."""
        if high <= low:
            raise ValueError(f"the integer range [{low}, {high}) is empty; upper is exclusive.")
        if isinstance(sampler, LogUniform):
            log_base = math.log(sampler.base)
            exponents = rng.uniform(math.log(low) / log_base, math.log(high) / log_base, size)
            values = np.floor(np.power(sampler.base, exponents)).astype(np.int64)
            return np.clip(values, low, high - 1)
        if isinstance(sampler, Uniform):
            return np.asarray(rng.integers(low, high, size))
        raise TypeError(f"Integer cannot sample with {sampler}.")

    def is_valid(self, value: Any) -> bool:
        if not _is_real(value) or not float(value).is_integer():
            return False
        value = int(value)
        sampler = self.get_sampler()
        if isinstance(sampler, Quantized):
            q = int(sampler.q)
            return self.lower <= value <= self.upper and value % q == 0
        return self.lower <= value < self.upper

    @property
    def domain_str(self) -> str:
        return f"({self.lower}, {self.upper})"


class Categorical(Domain):
    """A finite list of values; sampled uniformly, or expanded as a grid.

    Example:
        >>> from fasttune.search.sample import Categorical
        >>> domain = Categorical(["relu", "tanh"]).uniform()
        >>> len(domain), domain[1], domain.is_valid("relu")
        (2, 'tanh', True)
    """

    def __init__(self, categories: Sequence) -> None:
        if isinstance(categories, np.ndarray):
            categories = categories.tolist()
        if isinstance(categories, (str, bytes, dict, set, frozenset)) or not isinstance(categories, Sequence):
            raise TypeError(
                "categories must be a list of values to choose from, e.g. choice([1, 2, 3]); "
                f"got {type(categories).__name__} {categories!r}."
            )
        if len(categories) == 0:
            raise ValueError("categories must not be empty; pass at least one value to choose from.")
        self.categories = list(categories)

    def uniform(self) -> "Categorical":
        new = copy(self)
        new.set_sampler(Uniform())
        return new

    def grid(self) -> "Categorical":
        new = copy(self)
        new.set_sampler(Grid())
        return new

    def __len__(self) -> int:
        return len(self.categories)

    def __getitem__(self, item: int) -> Any:
        return self.categories[item]

    def _draw(self, sampler: Sampler, spec: Any, size: int, rng: Rng) -> Sequence[Any]:
        if not isinstance(sampler, Uniform):
            raise TypeError(f"Categorical cannot sample with {sampler}.")
        # Draw indices, not values: numpy would coerce mixed categories to one dtype.
        return [self.categories[i] for i in rng.indices(len(self.categories), size)]

    def is_valid(self, value: Any) -> bool:
        for category in self.categories:
            try:
                if bool(category == value):
                    return True
            except (TypeError, ValueError):
                # Array-like categories compare element-wise; they never match a point.
                continue
        return False

    @property
    def domain_str(self) -> str:
        return f"{self.categories}"


class _Call(BaseSampler):
    """Calls a ``Function`` domain's function."""


class Function(Domain):
    """A value computed by a user function, optionally from the spec.

    ``func`` takes no argument, or one: the spec, whose values can be read as
    ``spec.config.name`` (Ray Tune style) or ``spec["config"]["name"]``.

    Example:
        >>> from fasttune.search.sample import Function
        >>> Function(lambda spec: spec.config.width * 2).sample({"config": {"width": 8}})
        16
    """

    default_sampler_cls = _Call

    def __init__(self, func: Callable) -> None:
        if not callable(func):
            raise TypeError(
                "func must be callable, e.g. sample_from(lambda spec: spec.config.lr * 2); "
                f"got {type(func).__name__} {func!r}."
            )
        self.func = func
        self.pass_config = self._takes_spec(func)

    @staticmethod
    def _takes_spec(func: Callable) -> bool:
        try:
            signature = inspect.signature(func)
        except (TypeError, ValueError):
            # Some builtins hide their signature; they are usually no-argument draws.
            return False
        named_positional = any(
            p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD) for p in signature.parameters.values()
        )
        try:
            signature.bind(None)
            # A bare *args function (np.random.rand) is a draw, not a reader of the spec.
            if named_positional:
                return True
        except TypeError:
            pass
        try:
            signature.bind()
            return False
        except TypeError:
            raise TypeError(
                f"func {getattr(func, '__name__', func)!r} must accept no arguments or exactly one "
                "(the spec); e.g. sample_from(lambda spec: spec.config.lr * 2)."
            ) from None

    def _draw(self, sampler: Sampler, spec: Any, size: int, rng: Rng) -> Sequence[Any]:
        if not self.pass_config:
            return [self.func() for _ in range(size)]
        if isinstance(spec, list):
            # One config per value drawn, as Ray Tune's sample(config=[...], size=n) takes.
            if len(spec) != size:
                raise ValueError(f"sample() got {len(spec)} configs for size={size}; give one config per value.")
            return [self.func(self._as_spec(one)) for one in spec]
        spec = self._as_spec(spec)
        return [self.func(spec) for _ in range(size)]

    @staticmethod
    def _as_spec(spec: Any) -> Any:
        if spec is None or isinstance(spec, dict):
            return spec_view({} if spec is None else spec, is_unresolved)
        return spec

    def is_function(self) -> bool:
        return True

    def is_valid(self, value: Any) -> bool:
        return True

    @property
    def domain_str(self) -> str:
        return f"{self.func}()"


def is_unresolved(value: Any) -> bool:
    """Whether ``value`` still has to be drawn: a domain, or a grid search not yet expanded.

    A ``sample_from`` function that reads such a value waits until it is drawn.

    Example:
        >>> from fasttune.search.sample import is_unresolved, uniform
        >>> is_unresolved(uniform(0, 1)), is_unresolved({"grid_search": [1, 2]}), is_unresolved(0.5)
        (True, True, False)
    """
    return isinstance(value, Domain) or is_grid_dict(value)


# ---------------------------------------------------------------------------
# User functions
# ---------------------------------------------------------------------------


def uniform(lower: float, upper: float) -> Float:
    """A float drawn uniformly from ``[lower, upper]``.

    Example:
        >>> from fasttune.search.sample import uniform
        >>> 0.0 <= uniform(0.0, 1.0).sample(random_state=0) <= 1.0
        True
    """
    with _called_as("uniform", lower=lower, upper=upper):
        return Float(lower, upper).uniform()


def quniform(lower: float, upper: float, q: float) -> Float:
    """A float drawn uniformly from ``[lower, upper]``, rounded to a multiple of ``q``.

    Rounding makes ``upper`` reachable; the bounds must be multiples of ``q``.

    Example:
        >>> from fasttune.search.sample import quniform
        >>> sorted(set(quniform(0.0, 0.3, 0.1).sample(size=200, random_state=0)))
        [0.0, 0.1, 0.2, 0.3]
    """
    with _called_as("quniform", lower=lower, upper=upper, q=q):
        return Float(lower, upper).uniform().quantized(q)


def loguniform(lower: float, upper: float, base: float = 10) -> Float:
    """A float whose logarithm is uniform in ``[log(lower), log(upper)]``.

    Example:
        >>> from fasttune.search.sample import loguniform
        >>> 1e-4 <= loguniform(1e-4, 1e-2).sample(random_state=0) <= 1e-2
        True
    """
    with _called_as("loguniform", lower=lower, upper=upper, base=base):
        return Float(lower, upper).loguniform(base)


def qloguniform(lower: float, upper: float, q: float, base: float = 10) -> Float:
    """A log-uniform float rounded to a multiple of ``q``; ``upper`` is reachable.

    Example:
        >>> from fasttune.search.sample import qloguniform
        >>> value = qloguniform(1, 1000, 1).sample(random_state=0)
        >>> value.is_integer() and 1 <= value <= 1000
        True
    """
    with _called_as("qloguniform", lower=lower, upper=upper, q=q, base=base):
        return Float(lower, upper).loguniform(base).quantized(q)


def randn(mean: float = 0.0, sd: float = 1.0) -> Float:
    """A float drawn from a normal distribution.

    Example:
        >>> from fasttune.search.sample import randn
        >>> isinstance(randn(0.0, 1.0).sample(random_state=0), float)
        True
    """
    with _called_as("randn", mean=mean, sd=sd):
        return Float(None, None).normal(mean, sd)


def qrandn(mean: float, sd: float, q: float) -> Float:
    """A normal float rounded to a multiple of ``q``.

    Example:
        >>> from fasttune.search.sample import qrandn
        >>> (qrandn(10.0, 5.0, 0.5).sample(random_state=0) / 0.5).is_integer()
        True
    """
    with _called_as("qrandn", mean=mean, sd=sd, q=q):
        return Float(None, None).normal(mean, sd).quantized(q)


def randint(lower: int, upper: int) -> Integer:
    """An integer drawn uniformly from ``[lower, upper)``: ``upper`` is exclusive.

    Example:
        >>> from fasttune.search.sample import randint
        >>> sorted(set(randint(1, 4).sample(size=100, random_state=0)))
        [1, 2, 3]
    """
    with _called_as("randint", lower=lower, upper=upper):
        return Integer(lower, upper).uniform()


def qrandint(lower: int, upper: int, q: int = 1) -> Integer:
    """A multiple of ``q`` drawn uniformly from ``[lower, upper]``: ``upper`` is inclusive.

    Example:
        >>> from fasttune.search.sample import qrandint
        >>> sorted(set(qrandint(0, 10, 5).sample(size=100, random_state=0)))
        [0, 5, 10]
    """
    with _called_as("qrandint", lower=lower, upper=upper, q=q):
        domain = Integer(lower, upper)
        domain.set_sampler(Uniform())
        return domain.quantized(q)


def lograndint(lower: int, upper: int, base: float = 10) -> Integer:
    """An integer drawn log-uniformly from ``[lower, upper)``: ``upper`` is exclusive.

    Example:
        >>> from fasttune.search.sample import lograndint
        >>> 1 <= lograndint(1, 100).sample(random_state=0) < 100
        True
    """
    with _called_as("lograndint", lower=lower, upper=upper, base=base):
        return Integer(lower, upper).loguniform(base)


def qlograndint(lower: int, upper: int, q: int, base: float = 10) -> Integer:
    """A multiple of ``q`` drawn log-uniformly from ``[lower, upper]``: ``upper`` is inclusive.

    Example:
        >>> from fasttune.search.sample import qlograndint
        >>> value = qlograndint(2, 64, 2).sample(random_state=0)
        >>> value % 2 == 0 and 2 <= value <= 64
        True
    """
    with _called_as("qlograndint", lower=lower, upper=upper, q=q, base=base):
        if _is_real(lower) and lower <= 0:
            raise ValueError(f"lower must be > 0 for log-uniform sampling (log(0) is undefined), got {lower}.")
        domain = Integer(lower, upper)
        domain.set_sampler(LogUniform(base))
        return domain.quantized(q)


def choice(categories: Sequence) -> Categorical:
    """One of ``categories``, each equally likely.

    Example:
        >>> from fasttune.search.sample import choice
        >>> choice([16, 32, 64]).sample(random_state=0) in (16, 32, 64)
        True
    """
    with _called_as("choice", categories=categories):
        return Categorical(categories).uniform()


def sample_from(func: Callable) -> Function:
    """A value computed by ``func``, which may read other values of the spec.

    Example:
        >>> from fasttune.search.sample import sample_from
        >>> from fasttune.search.variant_generator import generate_variants
        >>> space = {"config": {"x": 3, "y": sample_from(lambda spec: spec.config.x * 2)}}
        >>> next(generate_variants(space))[1]["config"]
        {'x': 3, 'y': 6}
    """
    with _called_as("sample_from", func=func):
        return Function(func)


def grid_search(values: Sequence) -> Dict[str, List[Any]]:
    """Every one of ``values`` is tried: one trial per value (and per combination).

    Example:
        >>> from fasttune.search.sample import grid_search
        >>> grid_search([0.1, 0.01])
        {'grid_search': [0.1, 0.01]}
    """
    with _called_as("grid_search", values=values):
        check_grid_values(values)
    return {"grid_search": values if isinstance(values, list) else list(values)}
