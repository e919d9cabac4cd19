"""Data as msgpack, and only what is no data as cloudpickle.

Experiment snapshots, the Tuner's saved settings and the searchers' and schedulers' saved
states all go through :func:`pack`: dicts, lists, strings, numbers, bytes, tuples, sets,
numeric numpy scalars and arrays are msgpack (tuples, sets and numpy values through
extension types, so each comes back as the type it was);
any other object (a search-space domain, a random generator, a library's study object)
is cloudpickled in place.  A :class:`Loader` records the type of each object it
unpickles, so a restore can say exactly what it loaded as code; a :class:`DataOnlyLoader`
never unpickles (each pickled object stays a :class:`PickledObject`, unloaded): readers
use it, since unpickling a file runs whatever code its author put there.

Example:
    >>> import datetime
    >>> loader = Loader()
    >>> loader.unpack(pack({"when": datetime.date(2026, 1, 2), "shape": (2, 3)}))
    {'when': datetime.date(2026, 1, 2), 'shape': (2, 3)}
    >>> loader.unpickled
    ['date']
    >>> DataOnlyLoader().unpack(pack({"when": datetime.date(2026, 1, 2)}))
    {'when': <pickled object, not loaded (... bytes; refers to datetime.date)>}
"""
from __future__ import annotations

import pickle
import pickletools
import struct
from typing import Any, Dict, List, Optional, Tuple

import msgpack

from fasttune._atomic import atomic_write

_EXT_PICKLED = 1
_EXT_TUPLE = 2
_EXT_NDARRAY = 3
_EXT_OBJECT = 4  # an index into the objects pickled beside the data (pack_state)
_EXT_SET = 5
_EXT_FROZENSET = 6
_EXT_NUMPY_SCALAR = 7
_STATE_MARK = "fasttune-state-1"
_PICKLE_PROTOCOL_MARK = 0x80  # the first byte of a pickle (protocol 2 and later)
# How deep extension entries (tuples, sets, arrays) may lie inside one another.  Each
# level is a nested msgpack call with tens of kB of C stack: a crafted file nesting a few
# hundred would crash the interpreter; what pack() writes nests a handful.
MAX_NESTING = 32


class CorruptData(ValueError):
    """Bytes that :func:`pack` cannot have written (damaged, or crafted)."""


def _pickle_module() -> Any:
    # The standalone package pickles without importing Ray (readers need no Ray).
    try:
        import cloudpickle
    except ImportError:  # pragma: no cover - ray always brings one of the two
        import ray.cloudpickle as cloudpickle
    return cloudpickle


class _Default:
    """msgpack's ``default`` hook (see the module docstring); the type names of what it
    had to cloudpickle are kept in ``pickled``.  With ``objects`` (a list), objects are
    not pickled one by one but collected there, and referred to by index."""

    def __init__(self, objects: Optional[List[Any]] = None) -> None:
        self.pickled: List[str] = []
        self.objects = objects
        self._index: Dict[int, int] = {}

    def _packb(self, value: Any) -> bytes:
        return msgpack.packb(value, use_bin_type=True, strict_types=True, default=self)

    def __call__(self, obj: Any) -> Any:
        if isinstance(obj, tuple):
            return msgpack.ExtType(_EXT_TUPLE, self._packb(list(obj)))
        if type(obj) in (set, frozenset):
            return msgpack.ExtType(_EXT_SET if type(obj) is set else _EXT_FROZENSET, self._packb(list(obj)))
        ndim = getattr(obj, "ndim", None)
        dtype = getattr(obj, "dtype", None)
        if ndim is not None and dtype is not None and hasattr(obj, "tobytes") and not dtype.hasobject:
            import numpy as np

            if isinstance(obj, np.generic):  # a numpy scalar stays one (np.float32 is no float)
                return msgpack.ExtType(_EXT_NUMPY_SCALAR, self._packb([dtype.str, obj.tobytes()]))
            array = np.asarray(obj, order="C")  # (ascontiguousarray would make a 0-d array 1-d)
            return msgpack.ExtType(_EXT_NDARRAY, self._packb([array.dtype.str, list(array.shape), array.tobytes()]))
        if self.objects is not None:
            index = self._index.get(id(obj))
            if index is None:
                index = self._index[id(obj)] = len(self.objects)
                self.objects.append(obj)
                self.pickled.append(type(obj).__name__)
            return msgpack.ExtType(_EXT_OBJECT, msgpack.packb(index))
        self.pickled.append(type(obj).__name__)
        return msgpack.ExtType(_EXT_PICKLED, _pickle_module().dumps(obj))


def pack(value: Any) -> bytes:
    """``value`` as msgpack; what msgpack cannot carry is cloudpickled in place."""
    return pack_noting_pickles(value)[0]


def pack_noting_pickles(value: Any) -> Tuple[bytes, List[str]]:
    """:func:`pack`, and the type names of the objects it had to cloudpickle."""
    default = _Default()
    return default._packb(value), default.pickled


class PickleNotingPacker:
    """:func:`pack_noting_pickles` with one msgpack packer kept for every value (making a
    packer is most of what packing a short record costs, as a snapshot's trial records
    are).  The same bytes; not for two threads at once.

    Example:
        >>> PickleNotingPacker().pack([1, "a"]) == pack_noting_pickles([1, "a"])
        True
    """

    #: Bytes past which a pack is followed by a new packer: msgpack's keeps its buffer at
    #: the largest size it packed, and one huge config would hold that memory for good.
    KEEP_BUFFER_BYTES = 1 << 20

    def __init__(self) -> None:
        self._default = _Default()
        self._packer = self._new_packer()

    def _new_packer(self) -> Any:
        return msgpack.Packer(use_bin_type=True, strict_types=True, default=self._default)

    def pack(self, value: Any) -> Tuple[bytes, List[str]]:
        """``value`` packed, and the type names of the objects that had to be cloudpickled."""
        self._default.pickled = pickled = []
        try:
            data = self._packer.pack(value)  # (a failed pack leaves the packer empty)
        except BaseException:
            self._packer = self._new_packer()  # it may have grown before it failed
            raise
        if len(data) > self.KEEP_BUFFER_BYTES:
            self._packer = self._new_packer()
        return data, pickled


def pack_state(value: Any) -> bytes:
    """Like :func:`pack`, for a policy's saved state: the objects in it are cloudpickled
    together, in one pickle, so references they share (an optimizer and the candidates it
    handed out, say) are still shared when loaded."""
    objects: List[Any] = []
    default = _Default(objects)
    data = default._packb(value)
    # msgpack.packb([_STATE_MARK, data, pickle or None], use_bin_type=True), joined instead:
    # the same bytes without packing the data and the pickle (megabytes, for a searcher
    # that keeps its points) into a packer's buffer first and copying them out again.
    parts = [_STATE_HEAD, bin_header(len(data)), data]
    if objects:
        pickled = _pickle_module().dumps(objects)
        parts += [bin_header(len(pickled)), pickled]
    else:
        parts.append(_NIL)
    return b"".join(parts)


_STATE_HEAD = b"\x93" + msgpack.packb(_STATE_MARK)  # a 3-element array, then the mark
_NIL = msgpack.packb(None)
# The headers of bin objects shorter than 256 bytes, made once.
_BIN8_HEADERS = [b"\xc4" + bytes([n]) for n in range(256)]


def bin_header(n: int) -> bytes:
    """The header of a msgpack bin object of ``n`` bytes (what ``use_bin_type=True``
    packs a ``bytes`` value behind).

    Example:
        >>> bin_header(3) + b"abc" == msgpack.packb(b"abc", use_bin_type=True)
        True
    """
    if n < 256:
        return _BIN8_HEADERS[n]
    if n < 65536:
        return b"\xc5" + struct.pack(">H", n)
    return b"\xc6" + struct.pack(">I", n)


class PickledObject:
    """What a :class:`DataOnlyLoader` leaves in place of a pickled object: its bytes,
    never unpickled.  Its repr names the globals (classes, functions) the pickle refers
    to, read from its opcodes without running any of them.

    Example:
        >>> import os
        >>> class Crafted:  # what an attacker might plant in a snapshot
        ...     def __reduce__(self):
        ...         return (os.system, ("echo pwned",))
        >>> placeholder = DataOnlyLoader().unpack(pack([Crafted()]))[0]
        >>> placeholder.refers_to()[0] in ("posix.system", "nt.system")
        True
    """

    def __init__(self, data: bytes) -> None:
        self.data = data

    def refers_to(self, limit: int = 5) -> List[str]:
        """The first ``limit`` distinct ``module.name`` globals the pickle would load."""
        found: Dict[str, None] = {}
        recent: List[Optional[str]] = []  # the strings the last opcodes pushed (None: not a string)
        memo: Dict[int, Optional[str]] = {}
        try:
            for opcode, arg, _ in pickletools.genops(self.data):
                name = opcode.name
                if name == "GLOBAL":  # protocols 0-3: "module name"
                    found[str(arg).replace(" ", ".")] = None
                elif name == "STACK_GLOBAL" and len(recent) == 2 and None not in recent:
                    found[f"{recent[0]}.{recent[1]}"] = None
                if len(found) >= limit:
                    break
                if name in ("PROTO", "FRAME"):
                    continue
                if name == "MEMOIZE":
                    memo[len(memo)] = recent[-1] if recent else None
                elif name in ("PUT", "BINPUT", "LONG_BINPUT"):
                    memo[arg] = recent[-1] if recent else None
                else:
                    if name in ("GET", "BINGET", "LONG_BINGET"):
                        pushed = memo.get(arg)
                    else:
                        pushed = arg if "UNICODE" in name and isinstance(arg, str) else None
                    recent = (recent + [pushed])[-2:]
        except Exception:  # noqa: BLE001 - damaged bytes: name what was found before them
            pass
        return list(found)

    def __repr__(self) -> str:
        names = self.refers_to()
        what = f"; refers to {', '.join(names)}" if names else ""
        return f"<pickled object, not loaded ({len(self.data)} bytes{what})>"


class Loader:
    """Unpacks what :func:`pack` wrote and remembers the objects it unpickled.

    Extension entries nested deeper than :data:`MAX_NESTING`, and extension entries
    whose contents :func:`pack` cannot have written, raise :class:`CorruptData`.
    """

    def __init__(self) -> None:
        self.unpickled: List[str] = []
        self._objects: Any = []
        self._depth = 0
        self.source: Optional[str] = None  # the file being read, for messages (its reader sets it)

    def unpickle(self, data: bytes) -> Any:
        """The object pickled in ``data``, loaded (this runs code the pickle names)."""
        obj = _pickle_module().loads(data)
        self.unpickled.append(type(obj).__name__)
        return obj

    def _ext_hook(self, code: int, data: bytes) -> Any:
        if code == _EXT_PICKLED:
            return self.unpickle(data)
        try:
            if code == _EXT_TUPLE:
                return tuple(self.unpack(data))
            if code == _EXT_SET:
                return set(self.unpack(data))
            if code == _EXT_FROZENSET:
                return frozenset(self.unpack(data))
            if code == _EXT_NDARRAY:
                import numpy as np

                dtype, shape, raw = self.unpack(data)
                return np.frombuffer(raw, dtype=np.dtype(dtype)).reshape(shape).copy()
            if code == _EXT_NUMPY_SCALAR:
                import numpy as np

                dtype, raw = self.unpack(data)
                dtype = np.dtype(dtype)
                if len(raw) != dtype.itemsize:
                    raise ValueError(f"{len(raw)} bytes for a {dtype} scalar")
                return np.frombuffer(raw, dtype=dtype)[0]
            if code == _EXT_OBJECT:
                index = msgpack.unpackb(data)
                return self._object_at(index)
        except CorruptData:
            raise
        except (TypeError, ValueError, IndexError, KeyError, msgpack.UnpackException) as exc:
            raise CorruptData(f"extension entry {code} holds what fasttune cannot have written ({exc})") from None
        return msgpack.ExtType(code, data)

    def unpack(self, data: bytes) -> Any:
        """What :func:`pack` wrote."""
        if self._depth >= MAX_NESTING:
            raise CorruptData(f"extension entries (tuples, sets, arrays) nest more than {MAX_NESTING} deep")
        self._depth += 1
        try:
            return msgpack.unpackb(data, raw=False, strict_map_key=False, ext_hook=self._ext_hook)
        finally:
            self._depth -= 1

    def _object_at(self, index: int) -> Any:
        """The object :func:`pack_state` referred to by ``index`` (pickled beside the data)."""
        return self._objects[index]

    def loads(self, data: bytes) -> Any:
        """What :func:`pack_state` wrote, or a whole pickle (what fasttune wrote before it
        used msgpack)."""
        if data[:1] == bytes([_PICKLE_PROTOCOL_MARK]):
            obj = self.unpickle(data)
            if self.unpickled:
                self.unpickled[-1] += " (a whole pickle)"
            return obj
        outer = msgpack.unpackb(data, raw=False)
        if not (isinstance(outer, list) and len(outer) == 3 and outer[0] == _STATE_MARK):
            raise ValueError("not a state written by fasttune (neither pack_state's format nor a pickle)")
        _, packed, objects = outer
        loaded = self.unpickle(objects) if objects else []
        if isinstance(loaded, list) and self.unpickled:
            # The objects share one pickle: name each, not the list holding them.
            self.unpickled[-1:] = [type(obj).__name__ for obj in loaded]
        previous, self._objects = self._objects, loaded
        try:
            return self.unpack(packed)
        finally:
            self._objects = previous


class DataOnlyLoader(Loader):
    """A :class:`Loader` that never unpickles: each pickled object is left a
    :class:`PickledObject`.  What reads an experiment without restoring it uses this
    one, so a crafted file cannot run code when it is only read.

    Example:
        >>> import random
        >>> loader = DataOnlyLoader()
        >>> out = loader.loads(pack_state({"rng": random.Random(0), "step": (1, 2)}))
        >>> out["step"], isinstance(out["rng"], PickledObject), loader.unpickled
        ((1, 2), True, [])
    """

    def unpickle(self, data: bytes) -> PickledObject:
        return PickledObject(data)

    def _object_at(self, index: int) -> Any:
        return self._objects  # the objects' one shared pickle, left unloaded


def dump_file(path: str, value: Any) -> None:
    """Write :func:`pack_state`-ed ``value`` to ``path`` atomically and durably (temporary
    file, fsync, rename, fsync of the directory): a scheduler's or searcher's state file."""
    atomic_write(path, pack_state(value), durable=True)


def load_file(path: str) -> Any:
    """What :func:`dump_file` wrote (or an older pickle of it)."""
    with open(path, "rb") as f:
        return Loader().loads(f.read())


class _PickleNames(DataOnlyLoader):
    """A :class:`DataOnlyLoader` noting what each pickle it leaves unloaded refers to."""

    def __init__(self) -> None:
        super().__init__()
        self.names: Dict[str, None] = {}

    def unpickle(self, data: bytes) -> PickledObject:
        placeholder = super().unpickle(data)
        self.names.update(dict.fromkeys(placeholder.refers_to(limit=20)))
        return placeholder


def unpickled_in(data: bytes) -> List[str]:
    """The classes and functions a :class:`Loader` would load to unpack ``data``, read from
    its pickles' opcodes without running them (the owner's restore then loads it once).

    Example:
        >>> import random
        >>> unpickled_in(pack_state({"rng": random.Random(0), "step": 3}))
        ['random.Random']
        >>> unpickled_in(pack_state({"step": 3}))
        []
    """
    loader = _PickleNames()
    try:
        loader.loads(data)
    except Exception:  # noqa: BLE001 - not ours to judge here; the owner's restore reports it
        return ["unreadable data"]
    return list(loader.names)
