"""The state machine as a Mermaid flowchart, each state coloured by how it ended.

The console of Step Functions draws an execution as a graph whose states turn
green or red; this is the same picture for a local run, as Markdown that GitHub,
IDEs and most Markdown viewers render.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any

from totes_local.runtime.history import ExecutionHistory, Outcome, StateInfo

_STYLES: dict[Outcome, str] = {
    Outcome.SUCCEEDED: "fill:#d3f4d1,stroke:#2e7d32,color:#1b5e20",
    Outcome.FAILED: "fill:#fbd5d5,stroke:#c62828,color:#7f1d1d,stroke-width:2px",
    Outcome.NOT_RUN: "fill:#eeeeee,stroke:#9e9e9e,color:#616161,stroke-dasharray:4 3",
}
_CLASS_NAMES: dict[Outcome, str] = {
    Outcome.SUCCEEDED: "succeeded",
    Outcome.FAILED: "failed",
    Outcome.NOT_RUN: "notrun",
}
#: A state at work while its execution runs (only a live view draws it).
_RUNNING_STYLE = "fill:#d6e4ff,stroke:#0b3d91,color:#0b3d91,stroke-width:2px"
_RUNNING_CLASS = "running"
_START = "start_node"
_END = "end_node"


def node_ids(tree: Mapping[str, StateInfo]) -> dict[str, str]:
    """The flowchart's node id of each state (state names may hold what Mermaid would not).

    Examples
    --------
    >>> from totes_local.runtime.history import state_tree
    >>> node_ids(state_tree({"StartAt": "P", "States": {"P": {"Type": "Pass", "End": True}}}))
    {'P': 's0'}
    """
    return {name: f"s{index}" for index, name in enumerate(tree)}


def _label(text: str) -> str:
    return text.replace('"', "#quot;")


class _Renderer:
    def __init__(
        self,
        definition: Mapping[str, Any],
        history: ExecutionHistory,
        running: frozenset[str] = frozenset(),
    ) -> None:
        self.definition = definition
        self.history = history
        self.running = running
        self.ids = node_ids(history.tree)
        self.lines: list[str] = []
        self.edges: list[str] = []

    def render(self) -> list[str]:
        self.lines.append("flowchart TD")
        for outcome, class_name in _CLASS_NAMES.items():
            self.lines.append(f"    classDef {class_name} {_STYLES[outcome]}")
        if self.running:
            self.lines.append(f"    classDef {_RUNNING_CLASS} {_RUNNING_STYLE}")
        self.lines.append(f'    {_START}(("start"))')
        self.lines.append(f'    {_END}(("end"))')
        self.edges.append(f"    {_START} --> {self.ids[self.definition['StartAt']]}")
        self._states(self.definition.get("States", {}), indent=1)
        self.lines.extend(self.edges)
        for name, outcome in self.history.outcomes().items():
            at_work = name in self.running
            if self.history.tree[name].type in ("Map", "Parallel"):
                style = _RUNNING_STYLE if at_work else _STYLES[outcome]
                self.lines.append(f"    style {self.ids[name]} {style}")
            else:
                class_name = _RUNNING_CLASS if at_work else _CLASS_NAMES[outcome]
                self.lines.append(f"    class {self.ids[name]} {class_name}")
        return self.lines

    def _states(self, states: Mapping[str, Any], *, indent: int) -> None:
        pad = "    " * indent
        for name, state in states.items():
            node = self.ids[name]
            info = self.history.tree[name]
            if info.type == "Parallel":
                self.lines.append(f'{pad}subgraph {node}["{_label(self._caption(info))}"]')
                self.lines.append(f"{pad}    direction TB")
                for branch in state.get("Branches", []):
                    self._states(branch.get("States", {}), indent=indent + 1)
                self.lines.append(f"{pad}end")
            elif info.type == "Map":
                processor = state.get("ItemProcessor") or state.get("Iterator") or {}
                self.lines.append(f'{pad}subgraph {node}["{_label(self._caption(info))}"]')
                self._states(processor.get("States", {}), indent=indent + 1)
                self.lines.append(f"{pad}end")
            else:
                opening, closing = {"Fail": ("[[", "]]"), "Succeed": ("([", "])")}.get(
                    info.type, ('["', '"]')
                )
                text = _label(self._caption(info))
                if opening != '["':
                    text = f'"{text}"'
                self.lines.append(f"{pad}{node}{opening}{text}{closing}")
            self._transitions(name, state, top_level=info.parent is None)

    def _transitions(self, name: str, state: Mapping[str, Any], *, top_level: bool) -> None:
        node = self.ids[name]
        if "Next" in state:
            self.edges.append(f"    {node} --> {self.ids[state['Next']]}")
        for choice in state.get("Choices", []):
            self.edges.append(
                f'    {node} -- "{_label(_condition(choice))}" --> {self.ids[choice["Next"]]}'
            )
        if "Default" in state:
            self.edges.append(f'    {node} -- "default" --> {self.ids[state["Default"]]}')
        for catch in state.get("Catch", []):
            errors = ", ".join(catch.get("ErrorEquals", []))
            self.edges.append(
                f'    {node} -. "catch {_label(errors)}" .-> {self.ids[catch["Next"]]}'
            )
        ends = state.get("End") or state.get("Type") in ("Succeed", "Fail")
        if top_level and ends:
            self.edges.append(f"    {node} --> {_END}")

    def _caption(self, info: StateInfo) -> str:
        entries = self.history.of_state(info.name)
        parts = [f"<b>{info.name}</b>", _kind(info)]
        if info.parent is not None and self.history.tree[info.parent].type == "Map" and entries:
            succeeded = sum(entry.outcome is Outcome.SUCCEEDED for entry in entries)
            parts.append(f"{succeeded}/{len(entries)} items succeeded")
        retries = sum(max(0, entry.attempts - 1) for entry in entries)
        if retries:
            parts.append(f"{retries} {'retry' if retries == 1 else 'retries'}")
        durations = [entry.duration_s for entry in entries if entry.duration_s is not None]
        if durations and info.type in ("Map", "Parallel", "Task"):
            parts.append(f"{max(durations) if info.parent else sum(durations):.2f} s")
        failed = next((entry for entry in entries if entry.outcome is Outcome.FAILED), None)
        if failed is not None and failed.error and info.type not in ("Map", "Parallel"):
            where = f" ({failed.item})" if failed.item else ""
            parts.append(f"✖ {failed.error}{where}")
        return "<br/>".join(parts)


def _condition(choice: Mapping[str, Any]) -> str:
    """A Choice rule as people read it: ``$.next_pass is true``; else just "when"."""
    variable = choice.get("Variable")
    if variable and "BooleanEquals" in choice:
        return f"{variable} is {str(choice['BooleanEquals']).lower()}"
    return "when"


def _kind(info: StateInfo) -> str:
    resource = str(info.definition.get("Resource", ""))
    if info.type == "Task" and ":lambda:" in resource:
        return "Task: Lambda " + resource.rsplit(":", 1)[-1]
    if info.type == "Task" and resource.startswith("arn:aws:states:::"):
        return "Task: " + resource.removeprefix("arn:aws:states:::")
    if info.type == "Map":
        concurrency = info.definition.get("MaxConcurrency")
        return f"Map, {concurrency} at a time" if concurrency else "Map"
    return info.type


def mermaid_flowchart(
    definition: Mapping[str, Any],
    history: ExecutionHistory,
    *,
    running: frozenset[str] = frozenset(),
) -> str:
    """The definition as a Mermaid flowchart, states coloured by outcome in ``history``.

    Parameters
    ----------
    definition
        The state machine definition, parsed.
    history
        The execution to colour the states by (see
        :func:`totes_local.runtime.history.read_history`).
    running
        States at work in an execution still running, drawn as such instead of by
        their outcome so far.

    Examples
    --------
    >>> definition = {"StartAt": "P", "States": {"P": {"Type": "Pass", "End": True}}}
    >>> print(mermaid_flowchart(definition, read_history(definition, [])))  # doctest: +SKIP
    flowchart TD
    ...
    """
    return "\n".join(_Renderer(definition, history, running).render())


def markdown_report(
    definition: Mapping[str, Any],
    history: ExecutionHistory,
    *,
    title: str,
    status: str,
    started: datetime | None = None,
    error: str | None = None,
    cause: str | None = None,
) -> str:
    """A Markdown page: the coloured flowchart, a legend, and a table of the states.

    Examples
    --------
    >>> page = markdown_report(definition, history, title="run-1", status="SUCCEEDED")
    ... # doctest: +SKIP
    >>> page.splitlines()[0]  # doctest: +SKIP
    '# Execution run-1: SUCCEEDED'
    """
    lines = [f"# Execution {title}: {status}", ""]
    if started is not None:
        lines.append(f"Started {started.isoformat(timespec='seconds')}.")
    if error:
        lines.append(f"Error `{error}`" + (f": {cause}" if cause else "") + ".")
    lines += [
        "",
        "Green: succeeded. Red: failed. Grey, dashed: not run.",
        "",
        "```mermaid",
        mermaid_flowchart(definition, history),
        "```",
        "",
        "| state | type | outcome | entries | seconds |",
        "|---|---|---|---:|---:|",
    ]
    for name, info in history.tree.items():
        entries = history.of_state(name)
        durations = [entry.duration_s for entry in entries if entry.duration_s is not None]
        seconds = f"{max(durations):.2f}" if durations else ""
        lines.append(
            f"| {name} | {info.type} | {history.outcome(name).value} | {len(entries)} | {seconds} |"
        )
    return "\n".join(lines) + "\n"
