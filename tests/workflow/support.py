"""Helpers shared by the workflow tests."""

from __future__ import annotations

import json
import shutil
import textwrap
from collections.abc import Callable, Mapping
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from psycopg import sql

from totes.db import connect
from totes.tables import WAREHOUSE_TABLES
from totes_local.runtime.assembly import CloudAssembly
from totes_local.runtime.history import state_tree
from totes_local.runtime.platform import LocalPlatform
from totes_local.runtime.workflow import LocalWorkflow

REPO_ROOT = Path(__file__).resolve().parents[2]
#: Surrogate keys: numbered by insertion order, so they differ between equal warehouses.
SURROGATE_KEYS = frozenset({"sales_record_id", "purchase_record_id", "payment_record_id"})

#: ``local_workflow(source_dsn, warehouse_dsn, **options)``: a running LocalWorkflow.
WorkflowFactory = Callable[..., AbstractContextManager[LocalWorkflow]]


def warehouse_digest(dsn: str) -> dict[str, tuple[int, str]]:
    """Rows and a checksum of every warehouse table, surrogate keys left out."""
    digest: dict[str, tuple[int, str]] = {}
    with connect(dsn) as conn:
        for table in WAREHOUSE_TABLES:
            columns = [
                row[0]
                for row in conn.execute(
                    "SELECT column_name FROM information_schema.columns "
                    "WHERE table_name = %s ORDER BY ordinal_position",
                    (table,),
                ).fetchall()
                if row[0] not in SURROGATE_KEYS
            ]
            row = conn.execute(
                sql.SQL(
                    "SELECT count(*), coalesce(md5(string_agg(r, '|' ORDER BY r)), '') "
                    "FROM (SELECT ROW({columns})::text AS r FROM {table}) AS rows"
                ).format(
                    columns=sql.SQL(", ").join(map(sql.Identifier, columns)),
                    table=sql.Identifier(table),
                )
            ).fetchone()
            assert row is not None
            digest[table] = (int(row[0]), str(row[1]))
    return digest


#: Where each log file stood when the running test began (tests share the functions).
_LOG_STARTS: dict[Path, int] = {}


def mark_log_start(log_path: Path) -> None:
    """Remember the log file's size: :func:`log_records` reads only what comes after."""
    _LOG_STARTS[log_path] = log_path.stat().st_size if log_path.exists() else 0


def log_records(workflow: LocalWorkflow) -> list[dict[str, Any]]:
    """The log lines of this workflow's functions since the test began.

    The service's log file holds every pair's lines, and every earlier test's.
    """
    names = {function.name for function in workflow.platform.functions}
    records = []
    with workflow.log_path.open("rb") as log:
        log.seek(_LOG_STARTS.get(workflow.log_path, 0))
        text = log.read().decode("utf-8")
    for line in text.splitlines():
        record = json.loads(line)
        if record.get("function_name") in names:
            records.append(record)
    return records


def emf_records(workflow: LocalWorkflow) -> list[dict[str, Any]]:
    """The metric (EMF) lines the functions printed since the test began."""
    with workflow.log_path.open("rb") as log:
        log.seek(_LOG_STARTS.get(workflow.log_path, 0))
        lines = log.read().decode("utf-8").splitlines()
    return [record for record in map(json.loads, lines) if "_aws" in record]


def invocation_reports(workflow: LocalWorkflow, function_prefix: str) -> list[dict[str, Any]]:
    """The platform report of every invocation of one function (by logical id prefix)."""
    name = workflow.function_name(function_prefix)
    return [
        record
        for record in log_records(workflow)
        if record.get("type") == "platform.report" and record["function_name"] == name
    ]


@dataclass(frozen=True)
class Fault:
    """Code a test deploys in place of one Task state's handler code, for one item.

    The handler module of the state's function gets ``code`` appended: it rebinds the
    core function the handler calls (``attribute``) to one that misbehaves for ``item``.
    """

    state: str
    attribute: str
    item: str | None
    #: The body run for ``item`` instead of the core function (``request`` is in scope).
    misbehaviour: str
    #: Template properties of the function to change too (e.g. a short ``Timeout``).
    properties: Mapping[str, Any] = field(default_factory=dict)

    def source(self) -> str:
        """The code appended to the handler module."""
        body = textwrap.indent(textwrap.dedent(self.misbehaviour).strip(), " " * 8)
        return (
            textwrap.dedent(
                f"""

            # --- deployed by a test: {self.state} misbehaves for {self.item} ---
            import os as _fault_os
            import signal as _fault_signal
            import time as _fault_time

            from totes.errors import WatermarkConflictError


            class InjectedFaultError(Exception):
                pass


            _real_{self.attribute} = {self.attribute}


            def {self.attribute}(request, *args, **kwargs):
                if {self.item!r} in (
                    getattr(request, "table", None), getattr(request, "target", None)
                ):
            """
            )
            + body
            + f"\n    return _real_{self.attribute}(request, *args, **kwargs)\n"
        )


def faulty_assembly(assembly: CloudAssembly, fault: Fault, folder: Path) -> CloudAssembly:
    """A copy of ``assembly`` whose function for ``fault.state`` carries the fault.

    Unchanged assets are linked, not copied; the template is rewritten only where the
    fault changes the function's properties.
    """
    platform = LocalPlatform.from_assembly(assembly)
    tree = state_tree(platform.state_machine.definition_json)
    resource = tree[fault.state].definition.get("Resource", "")
    function = next(f for f in platform.functions if f.invoked_arn == resource)
    folder.mkdir(parents=True, exist_ok=True)
    for entry in assembly.directory.iterdir():
        if entry.name.endswith(".template.json") or entry == function.code:
            continue
        (folder / entry.name).symlink_to(entry)
    shutil.copytree(function.code, folder / function.code.name)
    handler_file = folder / function.code.name / (function.handler.rsplit(".", 1)[0] + ".py")
    handler_file.write_text(handler_file.read_text() + fault.source())
    template = json.loads(json.dumps(assembly.template))
    template["Resources"][function.logical_id]["Properties"].update(fault.properties)
    (folder / f"{assembly.stack_name}.template.json").write_text(json.dumps(template))
    return CloudAssembly.read(folder, assembly.stack_name)
