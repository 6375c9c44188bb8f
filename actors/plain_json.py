"""Frozen dataclasses to plain JSON values and back, driven by their type hints: data only, never code.

Fields go by name; enums by value; datetimes as ISO 8601 (with their offset); tuples as lists. Decoding
builds exactly the hinted types: a field missing from the JSON takes its default (a field added since
the value was written), an unknown field or a value of the wrong type is a `ValueError`.
"""

from __future__ import annotations

import dataclasses
import functools
import types
import typing
from datetime import datetime
from enum import Enum
from typing import Any


def to_plain(value: Any) -> Any:
    """`value` as JSON-ready values (dataclasses, enums, datetimes, tuples, dicts, scalars)."""
    if value is None or isinstance(value, bool | int | float | str):
        return value
    if isinstance(value, Enum):
        return value.value
    if isinstance(value, datetime):
        return value.isoformat()
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: to_plain(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, tuple | list):
        return [to_plain(v) for v in value]
    if isinstance(value, dict):
        return {str(k): to_plain(v) for k, v in value.items()}
    raise TypeError(f"{type(value).__name__} has no JSON form")


def from_plain(hint: Any, data: Any) -> Any:
    """A value of type `hint` from what `to_plain` made; ValueError when `data` does not fit it."""
    if hint is Any:
        return data
    origin = typing.get_origin(hint)
    if origin is typing.Union or origin is types.UnionType:
        return _union(typing.get_args(hint), data)
    if origin in (tuple, list):
        if not isinstance(data, list):
            raise ValueError(f"expected a list for {hint}, got {type(data).__name__}")
        args = typing.get_args(hint)
        if origin is tuple and not (len(args) == 2 and args[1] is Ellipsis):
            if len(args) != len(data):
                raise ValueError(f"expected {len(args)} items for {hint}")
            return tuple(from_plain(a, d) for a, d in zip(args, data, strict=True))
        items = [from_plain(args[0] if args else Any, d) for d in data]
        return tuple(items) if origin is tuple else items
    if origin is dict:
        if not isinstance(data, dict):
            raise ValueError(f"expected an object for {hint}, got {type(data).__name__}")
        value_hint = typing.get_args(hint)[1] if typing.get_args(hint) else Any
        return {str(k): from_plain(value_hint, v) for k, v in data.items()}
    if isinstance(hint, type):
        return _of_class(hint, data)
    raise ValueError(f"cannot decode {hint!r}")


def _union(options: tuple[Any, ...], data: Any) -> Any:
    if data is None and type(None) in options:
        return None
    errors = []
    for option in options:
        if option is type(None):
            continue
        try:
            return from_plain(option, data)
        except ValueError as err:
            errors.append(str(err))
    raise ValueError("; ".join(errors) or "no type fits")


def _of_class(cls: type, data: Any) -> Any:
    if dataclasses.is_dataclass(cls):
        if not isinstance(data, dict):
            raise ValueError(f"expected an object for {cls.__name__}, got {type(data).__name__}")
        hints = _hints(cls)
        unknown = data.keys() - hints.keys()
        if unknown:
            raise ValueError(f"{cls.__name__} has no field {sorted(unknown)[0]!r}")
        try:
            return cls(**{name: from_plain(hints[name], v) for name, v in data.items()})
        except TypeError as err:  # a field without a default missing
            raise ValueError(f"{cls.__name__}: {err}") from err
    if issubclass(cls, Enum):
        return cls(data)  # ValueError for a value it does not have
    if cls is datetime:
        if not isinstance(data, str):
            raise ValueError("expected an ISO 8601 string")
        return datetime.fromisoformat(data)
    if cls is float and isinstance(data, int | float) and not isinstance(data, bool):
        return float(data)
    if cls in (bool, int, str) and type(data) is cls:
        return data
    raise ValueError(f"expected {cls.__name__}, got {type(data).__name__}")


@functools.cache
def _hints(cls: type) -> dict[str, Any]:
    hints = typing.get_type_hints(cls)
    return {f.name: hints[f.name] for f in dataclasses.fields(cls)}
