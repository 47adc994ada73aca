"""What a run found that a person should know: nothing bad passes silently.

Every stage reports, next to its counts, the *findings* of its invocation: rows it
rejected (and where they are kept), codes it could not name, source columns that
appeared or disappeared, fact rows waiting for a dimension row, quarantined rows
that reached the warehouse after all. Findings travel in the stage results (keys
and counts, a few examples, never rows), ``CheckProgress`` merges them into the
execution's output, and ``totes run`` shows them in a "needs attention" block.

Each finding has a kind (what happened), the table and stage it concerns, a detail
(the same text for every row of the same cause, so counts add up across
invocations), a count of rows (or columns), a few example values and where the
rows are kept.
"""

from __future__ import annotations

from collections.abc import Iterable
from enum import StrEnum
from typing import Annotated, Final

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, NonNegativeInt

#: Example values and object keys one finding keeps: enough to act on, never the rows.
MAX_EXAMPLES: Final = 3
#: An example longer than this is cut (a source value can be any length).
MAX_EXAMPLE_LENGTH: Final = 80
#: Findings one stage result or one execution output carries at most (the payload limit).
MAX_FINDINGS: Final = 40


def _first_few(values: list[str]) -> list[str]:
    return list(dict.fromkeys(values))[:MAX_EXAMPLES]


#: At most :data:`MAX_EXAMPLES` distinct strings, in the order given.
FirstFew = Annotated[list[str], AfterValidator(_first_few)]


class Stage(StrEnum):
    """The stage that made a finding."""

    INGEST = "ingest"
    TRANSFORM = "transform"
    LOAD = "load"


class FindingKind(StrEnum):
    """What was found.

    ``rows_rejected`` and ``missing_columns`` are problems; ``rows_replayed`` is good
    news about an earlier problem; the others are warnings: the run went on, but a
    person should know.
    """

    ROWS_REJECTED = "rows_rejected"
    UNKNOWN_CODE = "unknown_code"
    UNEXPECTED_COLUMNS = "unexpected_columns"
    MISSING_COLUMNS = "missing_columns"
    WAITING_FOR_DIMENSION = "waiting_for_dimension"
    UNKNOWN_REFERENCE = "unknown_reference"
    #: Rows still held in the quarantine (reported by every load of the table).
    QUARANTINED = "quarantined"
    ROWS_REPLAYED = "rows_replayed"
    #: Connections to a database whose certificate was not verified (a secret's ``sslmode``).
    UNVERIFIED_TLS = "unverified_tls"

    @property
    def needs_attention(self) -> bool:
        """Whether a person should look (everything but replayed rows).

        Examples
        --------
        >>> FindingKind.ROWS_REJECTED.needs_attention, FindingKind.ROWS_REPLAYED.needs_attention
        (True, False)
        """
        return self is not FindingKind.ROWS_REPLAYED

    @property
    def is_standing(self) -> bool:
        """Whether it describes how things stand (reported again by every visit), not an event.

        Rows rejected or replayed happened once and add up; a new column or a row still
        waiting is reported each time the table is visited, so the latest visit's word
        replaces the earlier ones.

        Examples
        --------
        >>> FindingKind.WAITING_FOR_DIMENSION.is_standing, FindingKind.ROWS_REJECTED.is_standing
        (True, False)
        """
        return self in (
            FindingKind.WAITING_FOR_DIMENSION,
            FindingKind.QUARANTINED,
            FindingKind.UNEXPECTED_COLUMNS,
            FindingKind.MISSING_COLUMNS,
        )


class Finding(BaseModel):
    """One cause, in one table and stage, with how many rows it concerned.

    Examples
    --------
    >>> finding = Finding(kind="rows_rejected", table="fact_sales_order", stage="transform",
    ...     detail="agreed_delivery_date is not a YYYY-MM-DD date", count=2,
    ...     examples=["'soon'"], where=["rejects/fact_sales_order/run=r/a.parquet"])
    >>> finding.describe()
    "2 rows rejected: agreed_delivery_date is not a YYYY-MM-DD date (e.g. 'soon')"
    """

    model_config = ConfigDict(frozen=True, extra="ignore")

    kind: FindingKind
    table: str
    stage: Stage
    detail: str
    count: NonNegativeInt = 1
    examples: FirstFew = Field(default_factory=list)
    #: Object keys (in the processed bucket) where the rows concerned are kept.
    where: FirstFew = Field(default_factory=list)

    @property
    def cause(self) -> tuple[str, str, str, str]:
        """What identifies a finding across invocations: kind, table, stage and detail."""
        return (self.kind.value, self.table, self.stage.value, self.detail)

    def describe(self) -> str:
        """One line for people: the count, what happened, and a few examples."""
        rows = f"{self.count:,} {'row' if self.count == 1 else 'rows'}"
        lead = {
            FindingKind.ROWS_REJECTED: f"{rows} rejected: ",
            FindingKind.ROWS_REPLAYED: f"{rows} replayed into the warehouse: ",
            FindingKind.WAITING_FOR_DIMENSION: f"{rows} waiting: ",
            FindingKind.QUARANTINED: f"{rows} held back: ",
            FindingKind.UNKNOWN_CODE: f"{rows}: ",
            FindingKind.UNKNOWN_REFERENCE: f"{rows}: ",
            FindingKind.UNVERIFIED_TLS: f"{self.count:,} "
            f"{'connection' if self.count == 1 else 'connections'} not verified, ",
        }.get(self.kind, "")
        examples = f" (e.g. {', '.join(self.examples)})" if self.examples else ""
        return f"{lead}{self.detail}{examples}"


def merge(findings: Iterable[Finding], *, limit: int = MAX_FINDINGS) -> list[Finding]:
    """Add up findings of the same cause; keep the first examples and keys of each.

    The order is the order in which causes were first seen; beyond ``limit`` causes,
    the rest are dropped (the counts in the totals still include them).

    Examples
    --------
    >>> one = Finding(kind="unknown_code", table="dim_currency", stage="transform",
    ...     detail="currency code 'XYZ' is not in ISO 4217", examples=["XYZ"])
    >>> [(f.count, f.examples) for f in merge([one, one])]
    [(2, ['XYZ'])]
    """
    merged: dict[tuple[str, str, str, str], Finding] = {}
    for finding in findings:
        known = merged.get(finding.cause)
        if known is None:
            if len(merged) < limit:
                merged[finding.cause] = finding
            continue
        merged[finding.cause] = known.model_copy(
            update={
                "count": known.count + finding.count,
                "examples": _first_few([*known.examples, *finding.examples]),
                "where": _first_few([*known.where, *finding.where]),
            }
        )
    return list(merged.values())


def after_visit(
    earlier: Iterable[Finding], table: str, stage: Stage, found: Iterable[Finding]
) -> list[Finding]:
    """The findings once a stage has visited a table again and found ``found``.

    Events (rows rejected, replayed) add up; what describes how things stand (a new
    column, rows still waiting) is what this visit says, for this table and stage.

    Examples
    --------
    >>> waiting = Finding(kind="waiting_for_dimension", table="fact_payment", stage="load",
    ...     detail="payment_type_id not in dim_payment_type", count=4)
    >>> after_visit([waiting], "fact_payment", Stage.LOAD, [])
    []
    >>> [f.count for f in after_visit([waiting], "fact_sales_order", Stage.LOAD, [])]
    [4]
    """
    kept = [
        finding
        for finding in earlier
        if not (finding.kind.is_standing and (finding.table, finding.stage) == (table, stage))
    ]
    return merge([*kept, *found])


def unverified_tls_findings(why: str | None, database: str, stage: Stage) -> list[Finding]:
    """The finding of a connection that did not verify ``database``, ``why`` being the reason
    (:func:`totes.db.unverified_tls`); none when it did.

    Examples
    --------
    >>> [f.describe() for f in unverified_tls_findings("sslmode=require", "warehouse", Stage.LOAD)]
    ['1 connection not verified, sslmode=require']
    >>> unverified_tls_findings(None, "warehouse", Stage.LOAD)
    []
    """
    if why is None:
        return []
    return [Finding(kind=FindingKind.UNVERIFIED_TLS, table=database, stage=stage, detail=why)]


def examples_of(values: Iterable[object]) -> list[str]:
    """The first few distinct values, quoted as people read them (``NULL`` for None).

    Examples
    --------
    >>> examples_of(["soon", "soon", None, "2024-13-45", "later"])
    ["'soon'", 'NULL', "'2024-13-45'"]
    """
    shown: list[str] = []
    for value in values:
        text = "NULL" if value is None else repr(value) if isinstance(value, str) else str(value)
        if len(text) > MAX_EXAMPLE_LENGTH:
            text = f"{text[: MAX_EXAMPLE_LENGTH - 1]}…"
        if text not in shown:
            shown.append(text)
        if len(shown) == MAX_EXAMPLES:
            break
    return shown
