"""The base of every settings model: frozen pydantic data, one description per field.

A field's default and description are the only copy of that setting: the command line reads
them (cli/options.py), the stages and the math take the model, the manifest stores it. A field
whose command-line option is not ``--field-name`` says so in ``json_schema_extra["option"]``;
``json_schema_extra["cli_help"]`` replaces the description as help text where the option is the
negation of the field (``--no-stdg`` for ``enabled``).
"""

from __future__ import annotations

import math
import typing
from typing import Any, TypeVar

from pydantic import BaseModel, ConfigDict, ValidationError

from videodirector_cli.errors import UsageError

S = TypeVar("S", bound="Settings")


class Settings(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    @classmethod
    def of(cls: type[S], **values: Any) -> S:
        """Build from command-line values: a value of the wrong kind is a UsageError naming the
        option, not a traceback."""
        try:
            return cls.model_validate(values)
        except ValidationError as exc:
            raise UsageError(_message(cls, exc)) from None

    def check(self) -> None:
        """Rules a field's type cannot say (ranges, combinations); raises UsageError."""


def in_range(
    option: str, value: float | None, low: float, high: float, hint: str | None = None
) -> None:
    """UsageError unless ``value`` (None: not given) is a finite number in ``low``..``high``."""
    if value is None:
        return
    if not math.isfinite(value) or not low <= value <= high:
        raise UsageError(f"{option} {value:g} is out of range ({low:g}..{high:g})", hint=hint)


def option_name(model: type[BaseModel], name: str) -> str:
    extra = model.model_fields[name].json_schema_extra
    if isinstance(extra, dict) and isinstance(extra.get("option"), str):
        return str(extra["option"])
    return "--" + name.replace("_", "-")


def field_default(model: type[BaseModel], name: str) -> Any:
    return model.model_fields[name].get_default(call_default_factory=True)


def field_help(model: type[BaseModel], name: str) -> str:
    info = model.model_fields[name]
    extra = info.json_schema_extra
    if isinstance(extra, dict) and isinstance(extra.get("cli_help"), str):
        return str(extra["cli_help"])
    return info.description or ""


def choices(model: type[BaseModel], name: str) -> tuple[str, ...]:
    """The values a Literal field (or an optional one) accepts, in order."""
    annotation = model.model_fields[name].annotation
    found: list[str] = []
    for arg in typing.get_args(annotation) or (annotation,):
        if typing.get_origin(arg) is typing.Literal:
            found += [str(a) for a in typing.get_args(arg)]
        elif isinstance(arg, str):
            found.append(arg)
    return tuple(found)


def _message(model: type[BaseModel], exc: ValidationError) -> str:
    error = exc.errors()[0]
    where: type[BaseModel] = model
    loc = [part for part in error.get("loc", ()) if isinstance(part, str)]
    for part in loc[:-1]:  # nested settings: walk to the model that owns the field
        annotation = where.model_fields[part].annotation if part in where.model_fields else None
        if isinstance(annotation, type) and issubclass(annotation, BaseModel):
            where = annotation
    name = loc[-1] if loc else ""
    if name not in where.model_fields:
        return f"bad setting {'.'.join(loc) or 'value'}: {error.get('msg')}"
    option = option_name(where, name)
    allowed = choices(where, name)
    if allowed and error.get("type") == "literal_error":
        return f"{option} {error.get('input')!r} is not one of: {', '.join(allowed)}"
    return f"{option} {error.get('input')!r}: {error.get('msg')}"
