"""JSON round-trip for the project's frozen dataclasses.

Plans, Traces and workloads are plain dataclasses so they can be written, diffed and reloaded by
other tools; this module is the single place that knows how to turn them into JSON and back.
"""
from __future__ import annotations

import dataclasses
import json
import math
import types
import typing
from functools import lru_cache
from typing import Any, TypeVar

T = TypeVar("T")


def to_dict(obj: Any) -> Any:
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return {f.name: to_dict(getattr(obj, f.name)) for f in dataclasses.fields(obj)}
    if isinstance(obj, (list, tuple)):
        return [to_dict(v) for v in obj]
    if isinstance(obj, dict):
        return {k: to_dict(v) for k, v in obj.items()}
    return obj


@lru_cache(maxsize=None)
def _hints(cls: type) -> dict[str, Any]:
    return typing.get_type_hints(cls)


def from_dict(cls: type[T], data: Any) -> T:
    return _build(cls, data)


def _build(tp: Any, data: Any) -> Any:
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if origin in (typing.Union, types.UnionType):
        if data is None:
            return None
        non_none = [a for a in args if a is not type(None)]
        return _build(non_none[0], data)
    if dataclasses.is_dataclass(tp):
        hints = _hints(tp)
        kwargs = {f.name: _build(hints[f.name], data[f.name])
                  for f in dataclasses.fields(tp) if f.name in data}
        return tp(**kwargs)
    if origin is tuple:
        if len(args) == 2 and args[1] is Ellipsis:
            return tuple(_build(args[0], v) for v in data)
        return tuple(_build(a, v) for a, v in zip(args, data))
    if origin is list:
        return [_build(args[0], v) for v in data]
    if origin is dict:
        return {k: _build(args[1], v) for k, v in data.items()}
    if tp is float and isinstance(data, (int, str)):
        return float(data)
    return data


def strict_json(obj: Any) -> Any:
    """`obj` (JSON-shaped) with every non-finite float as the string "inf", "-inf" or "nan": JSON
    has no such numbers, and Python's bare `Infinity` is rejected by most other readers (jq,
    JavaScript, pandas' strict mode). A float field reads them back (from_dict)."""
    if isinstance(obj, float) and not math.isfinite(obj):
        return "nan" if math.isnan(obj) else "inf" if obj > 0 else "-inf"
    if isinstance(obj, dict):
        return {k: strict_json(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [strict_json(v) for v in obj]
    return obj


def loads_data(text: str | bytes) -> Any:
    """json.loads for the data files a user names (question sets, traces): a key given twice in one
    object is refused (Python's json keeps the last one silently), and so is nesting too deep to
    read (Python's parser recurses). ValueError, in one line, naming what is wrong."""
    try:
        return json.loads(text, object_pairs_hook=_unique_keys)
    except RecursionError:
        raise ValueError("nested too deeply to read (no question or trace file is)") from None


def _unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out = dict(pairs)
    if len(out) != len(pairs):
        seen: set[str] = set()
        twice = next(k for k, _ in pairs if k in seen or seen.add(k))
        raise ValueError(f"key '{twice}' appears twice in one object (which one holds?)")
    return out


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a number JSON allows (runs write none: the file was edited or damaged)")


def loads_strict(text: str) -> Any:
    """json.loads that refuses NaN and Infinity, which Python's json reads silently but no file
    this package writes holds (it writes with allow_nan=False)."""
    return json.loads(text, parse_constant=_no_constant)


def to_json(obj: Any, **kwargs: Any) -> str:
    return json.dumps(to_dict(obj), **kwargs)


def from_json(cls: type[T], text: str) -> T:
    return from_dict(cls, json.loads(text))
