"""The message a person receives when an execution fails: what failed, why, and where to look.

When a task of the workflow fails for good (its retries spent), the state machine
records which state failed and for which table, and fails with the task's own error
and, as the cause, a small JSON document (:class:`FailedState`) that carries the
Lambda error payload. ``DescribeFailure`` turns that into an email:

- a subject that names the state, the table and the error, within the 100
  characters SNS allows (and only the printable ASCII it allows);
- a body with the execution's name, the error's name, its message (decoded from the
  Lambda payload, without the stack trace), the run id, the execution's console URL,
  and what to do about the errors the platform names.

A failure outside a task (a state of the workflow itself) has no such document; its
cause is shown as it is.
"""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any, Final

from pydantic import AwareDatetime, BaseModel, ConfigDict, ValidationError

from totes.contracts import NonEmptyText, parse_event
from totes.names import (
    LAKE_MAINTENANCE_ERROR,
    TRANSFORM_STATE_CONFLICT_ERROR,
    TRANSIENT_ERRORS,
    TRANSIENT_RETRY_ATTEMPTS,
    TRANSIENT_RETRY_BACKOFF_RATE,
    TRANSIENT_RETRY_FIRST_INTERVAL_SECONDS,
    TRANSIENT_RETRY_MAX_DELAY_SECONDS,
    WATERMARK_CONFLICT_ERROR,
)

#: The longest the state machine waits between a transient fault's retries, all told.
TRANSIENT_RETRY_SECONDS: Final = sum(
    min(
        TRANSIENT_RETRY_FIRST_INTERVAL_SECONDS * TRANSIENT_RETRY_BACKOFF_RATE**attempt,
        TRANSIENT_RETRY_MAX_DELAY_SECONDS,
    )
    for attempt in range(TRANSIENT_RETRY_ATTEMPTS)
)
_OUTLASTED = (
    f"retried {TRANSIENT_RETRY_ATTEMPTS} times over up to {TRANSIENT_RETRY_SECONDS} s, and "
    "it outlasted every retry"
)

#: SNS wants a subject shorter than 100 characters.
SUBJECT_LIMIT: Final = 99
#: Characters of an error's message a failure email carries at most.
MESSAGE_LIMIT: Final = 1000
_SUBJECT_PREFIX = "totes"

#: What to do, for the errors a person can act on (by the error's name, as Lambda reports it).
ADVICE: Final[dict[str, str]] = {
    "SourceSchemaDriftError": (
        "A source column the pipeline needs is gone or changed type. Nothing was extracted "
        "and the watermark did not move: restore the column in totesys (or change the "
        "pipeline's column contract and deploy), and the next run continues from there."
    ),
    "DatabaseUnreachableError": (
        f"A database did not answer ({_OUTLASTED}): a failover or a restart that took "
        "longer, or a wrong host or port in its credentials secret. Nothing is lost: the "
        "next run continues where this one stopped."
    ),
    "DatabaseTransientError": (
        f"A database dropped or refused the pipeline's sessions ({_OUTLASTED}): a failover, "
        "a restart or too many connections. Nothing is lost: the next run continues where "
        "this one stopped. If it keeps happening, check the database's health and its "
        "connection limit."
    ),
    "AwsTransientError": (
        f"AWS throttled or failed a call on every attempt ({_OUTLASTED}). Nothing is lost: "
        "the next run continues where this one stopped. If it keeps happening, check the "
        "AWS Health Dashboard and the service quotas of the account."
    ),
    "DatabaseTlsError": (
        "A database's TLS could not be verified (the message says how): give its secret the "
        "certificate authority that signed the server's certificate (sslrootcert_pem) and "
        "the host name the certificate is for. The pipeline never falls back to plain text."
    ),
    "AuthenticationFailedError": (
        "A database refused the credentials: update the user name or password in its "
        "Secrets Manager secret. The next run retries."
    ),
    "DatabaseNotFoundError": "Check the database name in the credentials secret.",
    "SecretNotFoundError": (
        "Create the credentials secret under the configured name (source_secret_name, "
        "warehouse_secret_name)."
    ),
    "SecretFormatError": (
        "The credentials secret must be JSON with host, port, user, password and database."
    ),
    "WarehouseSchemaMissingError": "Create the star schema: `totes warehouse init --dsn ...`.",
    "NullLastUpdatedError": (
        "Give the rows named in the message a last_updated in totesys; the watermark stays "
        "until then."
    ),
    "TimestampOutOfRangeError": (
        "Give the rows named in the message a timestamp between the years 1 and 9999 in "
        "totesys (PostgreSQL also stores infinity and years BC, which nothing downstream "
        "reads); the watermark stays until then."
    ),
    "StagedFileMissingError": (
        "A committed star-zone file expired before it was published: delete the target's "
        "transform state (_state/transform/<target>.json in the processed bucket) and its "
        "row of the warehouse's load_listing, so that its sources are transformed again "
        "and load lists the files then numbered afresh."
    ),
    "GoldFileSchemaError": (
        "A star-zone file does not fit its warehouse table: it and the files after it stay "
        "pending. Remove or replace the file named in the message."
    ),
    "GoldFileUnreadableError": (
        "A star-zone file is not Parquet: it and the files after it stay pending. Remove or "
        "replace the file named in the message."
    ),
    "RawPartCorruptError": (
        "A raw part does not match its manifest's checksum: restore it from a previous "
        "version of the object (the raw bucket is versioned)."
    ),
    "LakeCommitError": (
        "The warehouse is loaded, but a lake table's Iceberg commit kept failing (S3 or "
        "Glue faults, or other writers committing first; retried): the lake is behind for "
        "that table, and the next run writes what it lacks, once. If it persists, check the "
        "load function's access to the processed bucket's lake/ prefix and to Glue."
    ),
    LAKE_MAINTENANCE_ERROR: (
        "The warehouse and the lake are up to date, but the lake tables named could not be "
        "compacted or cleaned: see the lake maintenance function's log. The next run tries "
        "again; queries still answer meanwhile."
    ),
    WATERMARK_CONFLICT_ERROR: (
        "Two executions overlapped and one gave way; nothing is lost, the next run continues."
    ),
    TRANSFORM_STATE_CONFLICT_ERROR: (
        "Two executions overlapped and one gave way; nothing is lost, the next run continues."
    ),
    "Sandbox.Timedout": (
        "The function ran out of time: lower the stage limits (ingest_max_rows, "
        "transform_max_rows, load_max_files) or raise its timeout. The next run continues "
        "where this one stopped."
    ),
    "Runtime.ExitError": (
        "The function's process died (out of memory?): see its log for the last lines, "
        "and lower the stage limits or raise its memory."
    ),
}
_DEFAULT_ADVICE = (
    "See the function's log group for the stack trace. The next scheduled run retries: it "
    "continues from the watermarks, and nothing already loaded is lost."
)


class FailedState(BaseModel):
    """What the workflow records when a task fails: the cause of the failed execution.

    Examples
    --------
    >>> FailedState(state="IngestTable", item="sales_order", error="E", cause="boom").item
    'sales_order'
    """

    model_config = ConfigDict(frozen=True, extra="ignore")

    state: NonEmptyText
    #: The table of the Map item that failed (None outside a Map).
    item: str | None = None
    error: str
    #: The task's own cause: for a Lambda error, its JSON payload.
    cause: str | None = None


class CaughtError(BaseModel):
    """What a Step Functions Catch records: the error's name and, usually, its cause."""

    model_config = ConfigDict(frozen=True, extra="ignore")

    Error: NonEmptyText
    Cause: str | None = None


class FailureEvent(BaseModel):
    """The event of ``DescribeFailure``: the execution and the error that ended it.

    ``failure`` is the Catch's record as it is: a failure of a state of the workflow
    itself may come without a cause.
    """

    model_config = ConfigDict(frozen=True, extra="ignore")

    execution_arn: NonEmptyText
    execution_name: NonEmptyText
    state_machine: NonEmptyText
    started: AwareDatetime
    run_id: NonEmptyText
    failure: CaughtError

    @property
    def error(self) -> str:
        """The error's name."""
        return self.failure.Error

    @property
    def cause(self) -> str | None:
        """The error's cause, if the Catch recorded one."""
        return self.failure.Cause

    @classmethod
    def from_event(cls, event: Any) -> FailureEvent:
        """Validate the event.

        Raises
        ------
        InvalidEventError
            A field is missing or does not fit (named in the message).
        """
        return parse_event(cls, event, what="failure event")


class FailureNotice(BaseModel):
    """The email: a subject and a body."""

    model_config = ConfigDict(frozen=True)

    subject: str
    message: str


class DecodedFailure(BaseModel):
    """A failure cause, decoded for people."""

    model_config = ConfigDict(frozen=True)

    state: str | None
    item: str | None
    error: str
    message: str


def decode_failure(error: str, cause: str | None) -> DecodedFailure:
    """Which state and table failed, and the error's own message (no stack trace).

    Examples
    --------
    >>> lambda_error = json.dumps({"errorMessage": "no table x", "errorType": "E",
    ...                            "stackTrace": ["..."]})
    >>> cause = FailedState(state="IngestTable", item="x", error="E", cause=lambda_error)
    >>> decode_failure("E", cause.model_dump_json())
    DecodedFailure(state='IngestTable', item='x', error='E', message='no table x')
    >>> decode_failure("States.Timeout", "took too long").message
    'took too long'
    """
    state = item = None
    text = cause
    try:
        failed = FailedState.model_validate_json(cause or "")
    except ValidationError:
        pass
    else:
        state, item, error, text = failed.state, failed.item, failed.error, failed.cause
    return DecodedFailure(state=state, item=item, error=error, message=_lambda_message(text))


def _lambda_message(cause: str | None) -> str:
    if not cause:
        return "(no cause given)"
    try:
        payload = json.loads(cause)
    except json.JSONDecodeError:
        return first_line(cause)
    if isinstance(payload, dict) and "errorMessage" in payload:
        database_error = _database_error(str(payload.get("errorType", "")))
        if database_error is not None:
            return database_error
        return first_line(str(payload["errorMessage"]))
    return first_line(cause)


def _database_error(error_type: str) -> str | None:
    """For an error the database raised, its name and SQLSTATE instead of its message.

    Even the first line of a database's message may quote a value (``invalid input
    syntax for type integer: "…"``); the function's log has it whole.

    Examples
    --------
    >>> print(_database_error("InvalidTextRepresentation"))
    InvalidTextRepresentation (SQLSTATE 22P02): its message is in the function's log
    >>> _database_error("SourceSchemaDriftError") is None
    True
    """
    import psycopg.errors  # noqa: PLC0415 (only a failure's description needs it)

    found = getattr(psycopg.errors, error_type, None) if error_type.isidentifier() else None
    if not (isinstance(found, type) and issubclass(found, psycopg.Error)):
        return None
    code = getattr(found, "sqlstate", None) or "unknown"
    return f"{error_type} (SQLSTATE {code}): its message is in the function's log"


def first_line(message: str, limit: int = MESSAGE_LIMIT) -> str:
    """An error message fit to mail: its first line, at most ``limit`` characters.

    A database error's later lines (``DETAIL``, ``CONTEXT``) quote row values; a long
    line is cut, and says so.

    Examples
    --------
    >>> first_line('duplicate key value\\nDETAIL:  Key (email)=(ann@example.com) exists.')
    'duplicate key value'
    >>> len(first_line("x" * 5000))
    1000
    """
    line = (message.strip().splitlines() or [""])[0]
    return line if len(line) <= limit else f"{line[: limit - 1]}…"


def console_url(execution_arn: str, started: datetime) -> str:
    """The Step Functions console page of an Express execution.

    Examples
    --------
    >>> from datetime import UTC
    >>> console_url("arn:aws:states:eu-west-2:123456789012:express:sm:run-1:abc",
    ...             datetime(2024, 11, 14, 9, 0, tzinfo=UTC))  # doctest: +NORMALIZE_WHITESPACE
    'https://eu-west-2.console.aws.amazon.com/states/home?region=eu-west-2#/express-executions/details/arn:aws:states:eu-west-2:123456789012:express:sm:run-1:abc?startDate=1731574800000'
    """
    region = execution_arn.split(":")[3]
    start_ms = int(started.timestamp() * 1000)
    return (
        f"https://{region}.console.aws.amazon.com/states/home?region={region}"
        f"#/express-executions/details/{execution_arn}?startDate={start_ms}"
    )


def subject_line(decoded: DecodedFailure) -> str:
    """The email subject: state, table and error, in fewer than 100 printable ASCII characters.

    Examples
    --------
    >>> subject_line(DecodedFailure(state="LoadFact", item="fact_payment",
    ...                             error="Sandbox.Timedout", message="..."))
    'totes: LoadFact failed for fact_payment (Sandbox.Timedout)'
    """
    where = decoded.state or "the pipeline"
    if decoded.item:
        where += f" failed for {decoded.item}"
    else:
        where += " failed"
    subject = f"{_SUBJECT_PREFIX}: {where} ({decoded.error})"
    if len(subject) > SUBJECT_LIMIT:
        subject = f"{_SUBJECT_PREFIX}: {where}"
    printable = "".join(c if " " <= c <= "~" else "?" for c in subject)
    return printable[:SUBJECT_LIMIT]


def describe_failure(event: FailureEvent) -> FailureNotice:
    """The email about a failed execution.

    Examples
    --------
    >>> from datetime import UTC
    >>> notice = describe_failure(FailureEvent(
    ...     execution_arn="arn:aws:states:eu-west-2:1:express:sm:run-1:abc",
    ...     execution_name="run-1", state_machine="sm",
    ...     started=datetime(2024, 11, 14, 9, 0, tzinfo=UTC), run_id="2024-11-14T09:00Z-run-1",
    ...     failure=CaughtError(Error="E", Cause="boom")))
    >>> notice.subject
    'totes: the pipeline failed (E)'
    >>> print(notice.message.splitlines()[0])
    The totes pipeline execution run-1 failed.
    """
    decoded = decode_failure(event.error, event.cause)
    where = decoded.state or "(a state of the workflow itself)"
    if decoded.item:
        where += f", table {decoded.item}"
    lines = [
        f"The totes pipeline execution {event.execution_name} failed.",
        "",
        f"State:          {where}",
        f"Error:          {decoded.error}",
        f"Message:        {decoded.message}",
        f"Run id:         {event.run_id}",
        f"State machine:  {event.state_machine}",
        f"Started:        {event.started.isoformat()}",
        f"Execution:      {console_url(event.execution_arn, event.started)}",
        "",
        f"What to do: {ADVICE.get(decoded.error, _DEFAULT_ADVICE)}",
    ]
    if decoded.error in TRANSIENT_ERRORS:
        lines[4:4] = [f"Transient:      yes, {_OUTLASTED}; the next run will continue"]
    return FailureNotice(subject=subject_line(decoded), message="\n".join(lines))
