"""How deep JSON nests, found without recursion, and a ``json.loads`` that refuses
deep text before parsing it.

``json.loads`` recurses once per level of arrays and objects: text nested deeper than
the recursion limit raises RecursionError, and in a process that raised that limit
(``sys.setrecursionlimit``) it overflows the C stack and kills the interpreter.  So
the depth is counted first, by a scan that takes time linear in the text whatever
it holds (the readers of result.json, params.json, checkpoint metadata and the
TuneServer's request bodies all read text that someone else wrote).

Example:
    >>> nesting_depth('{"a": [1, {"b": "]]\\\\"[["}]}'), nesting_depth('"x"')
    (3, 0)
    >>> parse_json('{"a": [1, 2]}')
    {'a': [1, 2]}
    >>> parse_json("[" * 300 + "]" * 300)
    Traceback (most recent call last):
    ...
    ValueError: nested more than 256 levels deep
"""

from __future__ import annotations

import json
import re
from typing import Any, Union

__all__ = ["MAX_JSON_NESTING", "nesting_depth", "nests_deeper_than", "nested_deeper_than", "parse_json"]

# How deep the JSON fasttune reads may nest (dicts and lists); results nest at most
# MAX_DEPTH (100) levels deep.  Deeper text is refused as bad JSON.
MAX_JSON_NESTING = 256

# A JSON string, or an unterminated one running to the end of the text.  The pattern
# can always match once it starts at a quote (it has no part that must follow the
# loops), so the regex engine never backtracks and retries from each later quote:
# that retrying took time quadratic in the text (a quote then 500,000 escaped quotes).
_STRING = re.compile(r'"[^"\\]*(?:\\.[^"\\]*)*(?:"|\\?\Z)', re.DOTALL)
_NOT_BRACKETS = re.compile(r"[^\[\]{}]+")


def _as_text(text: Union[str, bytes, bytearray]) -> str:
    """``text`` decoded as ``json.loads`` decodes bytes (UTF-8, -16 or -32)."""
    if isinstance(text, str):
        return text
    return bytes(text).decode(json.detect_encoding(text), "surrogatepass")


def nesting_depth(text: Union[str, bytes, bytearray]) -> int:
    """How deep the arrays and objects of JSON ``text`` nest: its brackets outside
    strings, counted without parsing, in time linear in its length (~0.1 s a MiB).

    For text that is not valid JSON this is still at least as deep as ``json.loads``
    would recurse before finding the error.

    Example:
        >>> nesting_depth('[[1], {"a": 2}]'), nesting_depth('["[[[", "\\\\"[["]'), nesting_depth('[["open')
        (2, 1, 2)
    """
    brackets = _NOT_BRACKETS.sub("", _STRING.sub("", _as_text(text)))
    depth = deepest = 0
    for bracket in brackets:
        if bracket in "[{":
            depth += 1
            if depth > deepest:
                deepest = depth
        else:
            depth -= 1
    return deepest


def nests_deeper_than(text: Union[str, bytes, bytearray], limit: int) -> bool:
    """Whether JSON ``text`` nests more than ``limit`` levels deep (see
    :func:`nesting_depth`); text with no more brackets than that is not scanned.

    Example:
        >>> nests_deeper_than("[[[]]]", 3), nests_deeper_than("[[[]]]", 2)
        (False, True)
    """
    if isinstance(text, str):
        brackets = text.count("[") + text.count("{")
    else:  # in UTF-16 and -32 too, each bracket holds one byte of its value
        brackets = text.count(b"[") + text.count(b"{")
    return brackets > limit and nesting_depth(text) > limit


def parse_json(text: Union[str, bytes, bytearray], max_depth: int = MAX_JSON_NESTING) -> Any:
    """``json.loads(text)``, refusing text nested more than ``max_depth`` levels deep
    with a ValueError (as it refuses any other bad JSON) before parsing it, so that
    the parser never recurses deeper, whatever the recursion limit.

    Example:
        >>> parse_json('[[[1]]]', max_depth=2)
        Traceback (most recent call last):
        ...
        ValueError: nested more than 2 levels deep
    """
    if nests_deeper_than(text, max_depth):
        raise ValueError(f"nested more than {max_depth} levels deep")
    try:
        return json.loads(text)
    except RecursionError:  # a process whose recursion limit is below max_depth
        raise ValueError(f"nested too deep for this process's recursion limit "
                         f"({max_depth} levels are allowed)") from None


def nested_deeper_than(value: Any, limit: int) -> bool:
    """Whether dicts and lists in ``value`` (a parsed value) nest more than ``limit``
    deep, found without recursion, so any depth is safe to ask about.

    Example:
        >>> nested_deeper_than({"a": [{"b": 1}]}, 3), nested_deeper_than({"a": [{"b": 1}]}, 2)
        (False, True)
    """
    stack = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        children = item.values() if isinstance(item, dict) else item if isinstance(item, list) else None
        if children is None:
            continue
        if depth > limit:
            return True
        stack.extend((child, depth + 1) for child in children if isinstance(child, (dict, list)))
    return False
