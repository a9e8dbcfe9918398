"""Reading a record back: JSON data to its dataclass, with defaults for what an older version
did not write and one line for what this version needs and the record lacks."""

from __future__ import annotations

import dataclasses
import types
import typing
from typing import Any

from mnist_edge.errors import MnistEdgeError


class RecordError(MnistEdgeError):
    """A JSON record that does not have the fields this version needs."""


def from_dict(cls: type, data: Any, where: str = "") -> Any:
    """Build dataclass `cls` from JSON data, recursing into nested dataclasses and lists.

    Missing fields with a default take it; missing required fields are all named at once
    (`where` is the dotted path of this object inside the record).
    """
    if not isinstance(data, dict):
        raise RecordError(f"expected an object at {where or 'the top'} ({cls.__name__})")
    fields = dataclasses.fields(cls)
    missing = [
        f"{where}{f.name}"
        for f in fields
        if f.name not in data
        and f.default is dataclasses.MISSING
        and f.default_factory is dataclasses.MISSING
    ]
    if missing:
        raise RecordError("lacks " + ", ".join(repr(name) for name in missing))
    hints = typing.get_type_hints(cls)
    values = {
        f.name: _convert(hints[f.name], data[f.name], f"{where}{f.name}")
        for f in fields
        if f.name in data
    }
    return cls(**values)


def _convert(hint: Any, value: Any, where: str) -> Any:
    origin = typing.get_origin(hint)
    if origin in (typing.Union, types.UnionType):
        if value is None:
            return None
        options = [a for a in typing.get_args(hint) if a is not type(None)]
        return _convert(options[0], value, where) if len(options) == 1 else value
    if dataclasses.is_dataclass(hint):
        return from_dict(hint, value, f"{where}.")
    if origin is list and isinstance(value, list):
        (item,) = typing.get_args(hint) or (Any,)
        return [_convert(item, v, f"{where}[{i}]") for i, v in enumerate(value)]
    if origin is tuple and isinstance(value, list):
        args = typing.get_args(hint)
        if len(args) == 2 and args[1] is Ellipsis:  # tuple[X, ...]: every item an X
            return tuple(_convert(args[0], v, f"{where}[{i}]") for i, v in enumerate(value))
        return tuple(value)
    return value
