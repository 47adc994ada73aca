"""Parsing the pipeline's contracts: Lambda events and the functions' settings.

Every event, result and setting is a pydantic model (Powertools Parser, which the
Powertools layer ships with pydantic). This module turns what pydantic reports
into the pipeline's named errors, one line that says which field and why:

- an event that does not fit its model raises :class:`~totes.errors.InvalidEventError`;
- a setting (an environment variable of the function) that is missing or does not
  fit raises :class:`~totes.errors.InvalidSettingError`.

Settings models name each field's environment variable as its alias, taken from
:class:`totes.names.EnvironmentVariable`, which the CDK side uses too.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from datetime import timedelta
from typing import Annotated, Any, TypeVar

from aws_lambda_powertools.utilities.parser import parse
from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    Field,
    StrictInt,
    StringConstraints,
    ValidationError,
)

from totes.errors import InvalidEventError, InvalidSettingError
from totes.tables import WAREHOUSE

Model = TypeVar("Model", bound=BaseModel)
#: Text with at least one character (names, run ids, keys).
NonEmptyText = Annotated[str, StringConstraints(min_length=1)]
#: A whole number above zero as JSON gives it: no text, no ``true``.
StrictPositiveInt = Annotated[StrictInt, Field(gt=0)]


def _gold_table(name: str) -> str:
    if name not in WAREHOUSE:
        raise ValueError("not a warehouse table")
    if not WAREHOUSE[name].has_gold_files:
        raise ValueError("derived by load from the facts' dates: it has no gold files")
    return name


def _seconds(value: Any) -> Any:
    # An environment variable holds whole seconds; code may pass a timedelta itself.
    return timedelta(seconds=int(value)) if isinstance(value, str | int) else value


#: A duration set in whole seconds (``"900"``), or given as a ``timedelta``.
Seconds = Annotated[timedelta, BeforeValidator(_seconds)]

#: A star-schema table with gold files (``dim_*`` or ``fact_*``, not ``dim_date``).
GoldTable = Annotated[str, AfterValidator(_gold_table)]


def _problems(exc: ValidationError, *, name_of: Mapping[str, str] | None = None) -> str:
    problems = []
    for error in exc.errors():
        location = ".".join(str(part) for part in error["loc"]) or "(the whole value)"
        location = (name_of or {}).get(location, location)
        if error["type"] == "missing":
            problems.append(f"{location} is not set")
        else:
            problems.append(f"{location}: {error['msg']} (got {error.get('input')!r})")
    return "; ".join(problems)


def parse_event(model: type[Model], event: Any, *, what: str) -> Model:
    """The event as ``model``, or :class:`InvalidEventError` naming each bad field.

    Examples
    --------
    >>> from pydantic import BaseModel
    >>> class Event(BaseModel):
    ...     table: str
    >>> parse_event(Event, {"table": "staff"}, what="ingest event").table
    'staff'
    >>> parse_event(Event, {}, what="ingest event")
    Traceback (most recent call last):
    ...
    totes.errors.InvalidEventError: ingest event: table is not set
    """
    try:
        return parse(event=event, model=model)
    except ValidationError as exc:
        raise InvalidEventError(f"{what}: {_problems(exc)}") from exc


def settings_from_environment(
    model: type[Model], environment: Mapping[str, str] | None = None
) -> Model:
    """The function's settings, read from its environment variables (each field's alias).

    Raises
    ------
    InvalidSettingError
        A required variable is not set, or a value does not fit (which one, and why).

    Examples
    --------
    >>> from pydantic import BaseModel, Field
    >>> class Settings(BaseModel):
    ...     rows: int = Field(10, alias="MAX_ROWS", gt=0)
    >>> settings_from_environment(Settings, {"MAX_ROWS": "3"}).rows
    3
    >>> settings_from_environment(Settings, {"MAX_ROWS": "0"})  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    totes.errors.InvalidSettingError: environment variable MAX_ROWS: Input should be ... (got '0')
    """
    source = os.environ if environment is None else environment
    aliases = {name: field.alias or name for name, field in model.model_fields.items()}
    values = {alias: source[alias] for alias in aliases.values() if alias in source}
    try:
        return model.model_validate(values)
    except ValidationError as exc:
        names = {alias: f"environment variable {alias}" for alias in aliases.values()}
        raise InvalidSettingError(_problems(exc, name_of=names)) from exc
