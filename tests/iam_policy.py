"""How IAM decides whether a role may make a call, for the statements a template writes.

The rules followed (IAM User Guide, "Policy evaluation logic" and the ``Action`` /
``Resource`` element references): a call is allowed when a statement with
``"Effect": "Allow"`` matches it and none with ``"Effect": "Deny"`` does; an explicit
deny beats any allow, and without a matching allow the call is implicitly denied. A
statement matches when the action matches one of ``Action`` (or none of ``NotAction``)
and the resource one of ``Resource`` (or none of ``NotResource``). ``*`` matches any
run of characters (``/`` and ``:`` included) and ``?`` exactly one; actions compare
case-insensitively, resources case-sensitively. Conditions are not evaluated: a
statement with one is refused here, so a template that starts using them fails the
tests until this module learns them.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from enum import StrEnum
from functools import cache
from typing import Any


class Decision(StrEnum):
    """The outcome of an evaluation."""

    ALLOWED = "allowed"
    EXPLICITLY_DENIED = "explicitly denied"
    IMPLICITLY_DENIED = "implicitly denied"


@cache
def _pattern(wildcard: str, ignore_case: bool) -> re.Pattern[str]:
    parts = (".*" if c == "*" else "." if c == "?" else re.escape(c) for c in wildcard)
    return re.compile("".join(parts), re.IGNORECASE | re.DOTALL if ignore_case else re.DOTALL)


def matches(wildcard: str, value: str, *, ignore_case: bool = False) -> bool:
    """Whether an IAM element value (with ``*`` and ``?``) matches ``value``."""
    return _pattern(wildcard, ignore_case).fullmatch(value) is not None


def _listed(element: Any) -> list[str]:
    return [element] if isinstance(element, str) else list(element)


def _any(patterns: Iterable[str], value: str, *, ignore_case: bool) -> bool:
    return any(matches(pattern, value, ignore_case=ignore_case) for pattern in patterns)


def statement_matches(statement: Mapping[str, Any], action: str, resource: str) -> bool:
    """Whether ``statement`` speaks of ``action`` on ``resource`` (its effect aside)."""
    if statement.get("Condition"):
        raise ValueError(f"conditions are not evaluated here: {statement['Condition']}")
    if "Action" in statement:
        action_ok = _any(_listed(statement["Action"]), action, ignore_case=True)
    else:
        action_ok = not _any(_listed(statement["NotAction"]), action, ignore_case=True)
    if "Resource" in statement:
        resource_ok = _any(_listed(statement["Resource"]), resource, ignore_case=False)
    else:
        resource_ok = not _any(_listed(statement["NotResource"]), resource, ignore_case=False)
    return action_ok and resource_ok


def decide(statements: Iterable[Mapping[str, Any]], action: str, resource: str) -> Decision:
    """What IAM decides for ``action`` on ``resource`` under an identity's ``statements``."""
    applying = [s for s in statements if statement_matches(s, action, resource)]
    if any(s["Effect"] == "Deny" for s in applying):
        return Decision.EXPLICITLY_DENIED
    if any(s["Effect"] == "Allow" for s in applying):
        return Decision.ALLOWED
    return Decision.IMPLICITLY_DENIED


def grants(statements: Iterable[Mapping[str, Any]]) -> list[tuple[str, str]]:
    """Every ``(action, resource)`` pair the Allow statements name, one per pair."""
    pairs: dict[tuple[str, str], None] = {}
    for statement in statements:
        if statement["Effect"] != "Allow":
            continue
        for action in _listed(statement.get("Action", [])):
            for resource in _listed(statement.get("Resource", [])):
                pairs[(action, resource)] = None
    return list(pairs)
