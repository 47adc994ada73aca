"""Read an execution history: what each state did, per item of a Map, and why it failed.

``GetExecutionHistory`` lists events (``TaskStateEntered``, ``LambdaFunctionFailed``,
``MapStateFailed``, ...), each pointing at the event before it in its thread of
control (``previousEventId``). Entered and exited events name their state; the
events in between do not, so each is attributed to a state *entry* by following
that chain back: a Task's attempts lead straight back to its ``TaskStateEntered``;
a Map's or Parallel's closing event leads back through its iterations, where
inner Maps and Parallels open and close like brackets, to the matching
``MapStateEntered`` or ``ParallelStateEntered``.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Any


class Outcome(StrEnum):
    """How a state ended in one execution (for a state entered many times: overall)."""

    SUCCEEDED = "succeeded"
    FAILED = "failed"
    NOT_RUN = "not run"


@dataclass(frozen=True)
class StateInfo:
    """A state of the definition and the container (Map or Parallel) it lies in."""

    name: str
    type: str
    parent: str | None
    definition: dict[str, Any]


def state_tree(definition: Mapping[str, Any]) -> dict[str, StateInfo]:
    """Every state of a definition, nested ones included, by name.

    Examples
    --------
    >>> tree = state_tree({"StartAt": "M", "States": {"M": {"Type": "Map", "End": True,
    ...     "ItemProcessor": {"StartAt": "T", "States": {"T": {"Type": "Task", "End": True}}}}}})
    >>> tree["T"].parent
    'M'
    """
    tree: dict[str, StateInfo] = {}

    def visit(states: Mapping[str, Any], parent: str | None) -> None:
        for name, state in states.items():
            tree[name] = StateInfo(name, str(state.get("Type")), parent, dict(state))
            for branch in state.get("Branches", []):
                visit(branch.get("States", {}), name)
            processor = state.get("ItemProcessor") or state.get("Iterator")
            if processor:
                visit(processor.get("States", {}), name)

    visit(definition.get("States", {}), None)
    return tree


def containers_of(tree: Mapping[str, StateInfo], name: str) -> list[str]:
    """The Maps and Parallels around a state, innermost first.

    Examples
    --------
    >>> tree = state_tree({"StartAt": "M", "States": {"M": {"Type": "Map", "End": True,
    ...     "ItemProcessor": {"StartAt": "T", "States": {"T": {"Type": "Task", "End": True}}}}}})
    >>> containers_of(tree, "T")
    ['M']
    """
    found: list[str] = []
    parent = tree[name].parent if name in tree else None
    while parent is not None:
        found.append(parent)
        parent = tree[parent].parent
    return found


_ATTEMPT_STARTS = frozenset({"LambdaFunctionScheduled", "TaskScheduled", "ActivityScheduled"})
_ATTEMPT_SUCCESSES = frozenset({"LambdaFunctionSucceeded", "TaskSucceeded", "ActivitySucceeded"})
_ATTEMPT_FAILURES = frozenset(
    {
        "LambdaFunctionFailed",
        "LambdaFunctionTimedOut",
        "LambdaFunctionScheduleFailed",
        "LambdaFunctionStartFailed",
        "TaskFailed",
        "TaskTimedOut",
        "TaskSubmitFailed",
        "TaskStartFailed",
        "ActivityFailed",
        "ActivityTimedOut",
    }
)
_CONTAINER_KINDS = ("Map", "Parallel")


@dataclass
class StateEntry:
    """One entry into a state (a Map item's Task is entered once per item).

    Attributes
    ----------
    input : Any
        The state's input, parsed (for a Map item's Task: the handler's event).
    output : Any
        The state's output when it exited, parsed.
    attempts : int
        Task attempts made (1 + retries).
    outcome : Outcome
        Succeeded, failed, or ``NOT_RUN`` while it had not finished (or was stopped).
    error, cause : str or None
        Of the last failure of this entry.
    """

    event_id: int
    name: str
    type: str
    started: datetime
    input: Any = None
    output: Any = None
    ended: datetime | None = None
    attempts: int = 0
    outcome: Outcome = Outcome.NOT_RUN
    error: str | None = None
    cause: str | None = None
    failure_event_id: int | None = None
    #: Whether the state has been left (exited, closed, or a Fail state reached); a Task
    #: whose attempt failed has not, while a retry may still follow.
    left: bool = False
    #: The error of each failed attempt, in order.
    failed_attempts: list[str] = field(default_factory=list)

    @property
    def retried_errors(self) -> list[str]:
        """The errors of the attempts that another attempt followed (the retries' causes)."""
        return self.failed_attempts[: max(self.attempts - 1, 0)]

    @property
    def duration_s(self) -> float | None:
        """Seconds from entering to leaving the state, or to its last failed attempt."""
        return (self.ended - self.started).total_seconds() if self.ended else None

    @property
    def item(self) -> str | None:
        """The table or warehouse target a Map item's Task worked on."""
        if isinstance(self.input, Mapping):
            for key in ("table", "target"):
                if isinstance(self.input.get(key), str):
                    return str(self.input[key])
        return None


@dataclass
class ExecutionHistory:
    """The entries of every state in one execution, and how each ended."""

    tree: dict[str, StateInfo]
    entries: list[StateEntry] = field(default_factory=list)

    def of_state(self, name: str) -> list[StateEntry]:
        """Every entry of the state ``name``, in the order they began.

        Examples
        --------
        >>> [entry.item for entry in history.of_state("IngestTable")][:2]  # doctest: +SKIP
        ['address', 'counterparty']
        """
        return [entry for entry in self.entries if entry.name == name]

    def outcome(self, name: str) -> Outcome:
        """Overall outcome of a state: failed if any entry failed, not run if never entered.

        An entry that began but never ended (stopped with its execution) counts as failed:
        it did not do its work.

        Examples
        --------
        >>> history.outcome("NotifyFailure")  # doctest: +SKIP
        <Outcome.NOT_RUN: 'not run'>
        """
        entries = self.of_state(name)
        if not entries:
            return Outcome.NOT_RUN
        if all(entry.outcome is Outcome.SUCCEEDED for entry in entries):
            return Outcome.SUCCEEDED
        return Outcome.FAILED

    def outcomes(self) -> dict[str, Outcome]:
        """The outcome of every state of the definition.

        Examples
        --------
        >>> definition = {"StartAt": "P", "States": {"P": {"Type": "Pass", "End": True}}}
        >>> read_history(definition, []).outcomes()
        {'P': <Outcome.NOT_RUN: 'not run'>}
        """
        return {name: self.outcome(name) for name in self.tree}

    def retries(self) -> dict[tuple[str, str], int]:
        """Attempts retried, by state and by the error that caused the retry.

        Examples
        --------
        >>> history.retries()  # doctest: +SKIP
        {('LoadFact', 'DatabaseTransientError'): 2}
        """
        counts: Counter[tuple[str, str]] = Counter()
        for entry in self.entries:
            counts.update((entry.name, error) for error in entry.retried_errors)
        return dict(counts)

    def failed_task(self) -> StateEntry | None:
        """The entry whose failure stopped the run: the first one that failed on its own.

        Containers fail because something inside them failed, and a Fail state because
        the run was failing; those are left out unless nothing else failed.

        Examples
        --------
        >>> history.failed_task().name, history.failed_task().item  # doctest: +SKIP
        ('LoadFact', 'fact_sales_order')
        """
        failed = sorted(
            (entry for entry in self.entries if entry.outcome is Outcome.FAILED),
            key=lambda entry: entry.failure_event_id or entry.event_id,
        )
        primary = [
            entry
            for entry in failed
            if entry.type not in (*_CONTAINER_KINDS, "Fail") and entry.failure_event_id
        ]
        candidates = primary or failed
        return candidates[0] if candidates else None


def read_history(
    definition: Mapping[str, Any], events: Sequence[Mapping[str, Any]]
) -> ExecutionHistory:
    """Turn the events of ``GetExecutionHistory`` into state entries with outcomes.

    Parameters
    ----------
    definition
        The state machine definition, parsed (for state types and nesting).
    events
        ``get_execution_history(...)["events"]``, in any order.

    Examples
    --------
    >>> events = sfn.get_execution_history(executionArn=arn)["events"]  # doctest: +SKIP
    >>> read_history(definition, events).outcome("IngestTables")  # doctest: +SKIP
    <Outcome.SUCCEEDED: 'succeeded'>
    """
    follower = HistoryFollower(definition)
    follower.feed(sorted(events, key=lambda event: int(event["id"])))
    return follower.history


class HistoryFollower:
    """Builds an :class:`ExecutionHistory` from events as they arrive, each read once.

    Events must come in the order of their ids (as ``GetExecutionHistory`` pages
    them); each one is attributed when it arrives, by following its chain back
    through the events already seen.

    Examples
    --------
    >>> follower = HistoryFollower({"StartAt": "P", "States": {"P": {"Type": "Pass",
    ...     "End": True}}})
    >>> follower.feed([{"id": 1, "type": "PassStateEntered", "timestamp": "2025-01-01T00:00:00",
    ...     "stateEnteredEventDetails": {"name": "P", "input": "{}"}}])
    >>> follower.history.of_state("P")[0].left
    False
    """

    def __init__(self, definition: Mapping[str, Any]) -> None:
        self.tree = state_tree(definition)
        self.by_id: dict[int, Mapping[str, Any]] = {}
        self.history = ExecutionHistory(self.tree)
        self.entries: dict[int, StateEntry] = {}

    def feed(self, events: Sequence[Mapping[str, Any]]) -> None:
        """Attribute new events (in id order) to the state entries they belong to."""
        for event in events:
            event_id = int(event["id"])
            if event_id in self.by_id:
                continue
            self.by_id[event_id] = event
            self._read(event_id, event)

    def _read(self, event_id: int, event: Mapping[str, Any]) -> None:
        event_type = str(event["type"])
        kind = next((k for k in _CONTAINER_KINDS if event_type in _closing(k)), None)
        if event_type.endswith("StateEntered"):
            self._entered(event_id, event)
        elif kind is not None:
            self._container_closed(event_id, event, kind)
        elif event_type.endswith("StateExited"):
            self._exited(event_id, event)
        elif event_type in _ATTEMPT_STARTS | _ATTEMPT_SUCCESSES | _ATTEMPT_FAILURES:
            self._attempt(event_id, event)

    def _chain(self, event_id: int) -> Iterator[Mapping[str, Any]]:
        previous = self.by_id[event_id].get("previousEventId")
        while previous and int(previous) in self.by_id:
            event = self.by_id[int(previous)]
            yield event
            previous = event.get("previousEventId")

    def _entered(self, event_id: int, event: Mapping[str, Any]) -> None:
        details = event.get("stateEnteredEventDetails", {})
        name = str(details.get("name"))
        event_type = str(event["type"])
        entry = StateEntry(
            event_id=event_id,
            name=name,
            type=(
                self.tree[name].type
                if name in self.tree
                else event_type.removesuffix("StateEntered")
            ),
            started=_timestamp(event),
            input=_parse(details.get("input")),
        )
        self.entries[event_id] = entry
        self.history.entries.append(entry)
        if entry.type == "Fail":
            entry.outcome, entry.ended, entry.left = Outcome.FAILED, entry.started, True

    def _container_closed(self, event_id: int, event: Mapping[str, Any], kind: str) -> None:
        # Inner containers of the same kind open and close on the way back: match them.
        depth = 0
        for earlier in self._chain(event_id):
            earlier_type = str(earlier["type"])
            if earlier_type in _closing(kind):
                depth += 1
            elif earlier_type == f"{kind}StateEntered":
                if depth == 0:
                    container = self.entries[int(earlier["id"])]
                    failed = not str(event["type"]).endswith("Succeeded")
                    container.outcome = Outcome.FAILED if failed else Outcome.SUCCEEDED
                    container.ended, container.left = _timestamp(event), True
                    if failed and container.failure_event_id is None:
                        container.failure_event_id = event_id
                    return
                depth -= 1

    def _exited(self, event_id: int, event: Mapping[str, Any]) -> None:
        details = event.get("stateExitedEventDetails", {})
        name = details.get("name")
        for earlier in self._chain(event_id):
            entered = earlier.get("stateEnteredEventDetails")
            if entered is not None and entered.get("name") == name:
                entry = self.entries[int(earlier["id"])]
                entry.output, entry.ended = _parse(details.get("output")), _timestamp(event)
                entry.left = True
                if entry.outcome is Outcome.NOT_RUN and entry.type not in _CONTAINER_KINDS:
                    entry.outcome = Outcome.SUCCEEDED
                return

    def _attempt(self, event_id: int, event: Mapping[str, Any]) -> None:
        # A Task's attempts lead straight back to its entry.
        found = next(
            (
                int(earlier["id"])
                for earlier in self._chain(event_id)
                if str(earlier["type"]).endswith("StateEntered")
            ),
            None,
        )
        if found is None:
            return
        entry = self.entries[found]
        event_type = str(event["type"])
        if event_type in _ATTEMPT_STARTS:
            entry.attempts += 1
            entry.ended = None
        elif event_type in _ATTEMPT_SUCCESSES:
            entry.outcome = Outcome.SUCCEEDED
        else:
            entry.ended = _timestamp(event)
            details: Mapping[str, Any] = next(
                (value for key, value in event.items() if key.endswith("EventDetails")), {}
            )
            entry.outcome = Outcome.FAILED
            entry.error, entry.cause = details.get("error"), details.get("cause")
            entry.failure_event_id = event_id
            entry.failed_attempts.append(str(entry.error))


def _closing(kind: str) -> tuple[str, ...]:
    return (f"{kind}StateSucceeded", f"{kind}StateFailed", f"{kind}StateAborted")


def _timestamp(event: Mapping[str, Any]) -> datetime:
    value = event["timestamp"]
    return value if isinstance(value, datetime) else datetime.fromisoformat(str(value))


def _parse(text: Any) -> Any:
    if not isinstance(text, str):
        return text
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return text
