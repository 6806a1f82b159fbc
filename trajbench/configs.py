"""Stage configs to and from JSON: how a run, a model directory or a checkpoint stores its config.

Every stage has one dataclass config (``CollectConfig``, ``ContextConfig``, ``ModelConfig``,
``TrainConfig``, ``EvalConfig``, ``RunConfig``); presets and analyses compose them and derive
variants with :func:`dataclasses.replace`. What is written to disk is :func:`to_dict` of a config,
and :func:`from_dict` reads it back as the dataclass, type-checked field by field (pydantic), so a
stale or hand-edited file is one clear error rather than a silently wrong run.

Example:
    >>> from trajbench.contexts import ContextConfig
    >>> data = to_dict(ContextConfig(mode="shuffled", k=2))
    >>> data["context_demonstrators"]
    ['expert']
    >>> from_dict(ContextConfig, data) == ContextConfig(mode="shuffled", k=2)
    True
"""

from __future__ import annotations

import dataclasses
import json
import typing
from functools import cache
from typing import Any, TypeVar

from pydantic import TypeAdapter, ValidationError

from .errors import TrajbenchError

T = TypeVar("T")


def to_dict(config: Any) -> dict[str, Any]:
    """A dataclass config as plain JSON values (tuples become lists, nested configs dicts)."""
    return json.loads(json.dumps(dataclasses.asdict(config)))


@cache
def _field_types(cls: type) -> dict[str, Any]:
    return typing.get_type_hints(cls)


@cache
def _adapter(tp: Any) -> TypeAdapter:
    return TypeAdapter(tp)


def from_dict(cls: type[T], data: Any, where: str = "config") -> T:
    """Rebuild a dataclass config from :func:`to_dict` output, checking every field's type.

    Args:
        cls: The dataclass to build.
        data: A dict as written by :func:`to_dict`.
        where: What is being read, for the error message (e.g. a file name).

    Raises:
        TrajbenchError: ``data`` is not a dict, has an unknown field, lacks a required field, or
            holds a value of the wrong type.
    """
    if not isinstance(data, dict):
        raise TrajbenchError(
            f"{where}: expected a {cls.__name__} object, got {type(data).__name__}"
        )
    types = _field_types(cls)
    names = {f.name for f in dataclasses.fields(cls) if f.init}
    unknown = sorted(set(data) - names)
    if unknown:
        raise TrajbenchError(f"{where}: unknown {cls.__name__} field(s) {unknown}")
    values = {}
    for name, value in data.items():
        tp = types[name]
        if dataclasses.is_dataclass(tp):
            values[name] = from_dict(tp, value, f"{where}.{name}")
            continue
        try:
            values[name] = _adapter(tp).validate_python(value)
        except ValidationError as err:
            problem = err.errors()[0]["msg"]
            raise TrajbenchError(f"{where}: {cls.__name__}.{name} = {value!r}: {problem}") from None
    try:
        return cls(**values)
    except TypeError as err:  # a required field is missing
        raise TrajbenchError(f"{where}: {err}") from None
