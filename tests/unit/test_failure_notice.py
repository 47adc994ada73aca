"""The failure email: a subject SNS accepts, a body a person can act on."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest
from hypothesis import given
from hypothesis import strategies as st

from totes.errors import InvalidEventError
from totes.failure_notice import (
    ADVICE,
    SUBJECT_LIMIT,
    CaughtError,
    DecodedFailure,
    FailedState,
    FailureEvent,
    decode_failure,
    describe_failure,
    subject_line,
)

STARTED = datetime(2024, 11, 14, 9, 0, 1, 250_000, tzinfo=UTC)
ARN = "arn:aws:states:eu-west-2:123456789012:express:TotesDataPlatform-pipeline:run-1:9a8b"


def _lambda_error(error_type: str, message: str) -> str:
    return json.dumps(
        {
            "errorMessage": message,
            "errorType": error_type,
            "requestId": "5d1f",
            "stackTrace": ['  File "/var/task/handler.py", line 30, in handler\n'],
        }
    )


def _event(error: str, cause: str | None) -> FailureEvent:
    return FailureEvent(
        execution_arn=ARN,
        execution_name="run-1",
        state_machine="TotesDataPlatform-pipeline",
        started=STARTED,
        run_id="2024-11-14T09:00:01.250Z-run-1",
        failure=CaughtError(Error=error, Cause=cause),
    )


def test_a_failed_ingest_is_mailed_with_its_state_table_error_message_run_and_console_link():
    # Given an ingest that failed for sales_order with a named error
    cause = FailedState(
        state="IngestTable",
        item="sales_order",
        error="SourceSchemaDriftError",
        cause=_lambda_error("SourceSchemaDriftError", "sales_order lacks units_sold: ..."),
    ).model_dump_json()
    # When the failure is described
    notice = describe_failure(_event("SourceSchemaDriftError", cause))
    # Then the subject names the state, the table and the error
    assert notice.subject == "totes: IngestTable failed for sales_order (SourceSchemaDriftError)"
    # And the body has the execution, the error, its message without the stack trace,
    # the run id, the console page and what to do
    assert notice.message.splitlines() == [
        "The totes pipeline execution run-1 failed.",
        "",
        "State:          IngestTable, table sales_order",
        "Error:          SourceSchemaDriftError",
        "Message:        sales_order lacks units_sold: ...",
        "Run id:         2024-11-14T09:00:01.250Z-run-1",
        "State machine:  TotesDataPlatform-pipeline",
        "Started:        2024-11-14T09:00:01.250000+00:00",
        "Execution:      https://eu-west-2.console.aws.amazon.com/states/home?region=eu-west-2"
        f"#/express-executions/details/{ARN}?startDate=1731574801250",
        "",
        f"What to do: {ADVICE['SourceSchemaDriftError']}",
    ]
    assert "stackTrace" not in notice.message


def test_a_failure_outside_a_task_is_mailed_with_its_cause_as_it_is() -> None:
    notice = describe_failure(_event("States.Runtime", "The JSONPath '$.x' could not be found"))
    assert notice.subject == "totes: the pipeline failed (States.Runtime)"
    assert "Message:        The JSONPath '$.x' could not be found" in notice.message
    assert "(a state of the workflow itself)" in notice.message
    assert "What to do: See the function's log group" in notice.message


def test_a_lambda_error_that_reached_the_catch_unnamed_still_loses_its_stack_trace() -> None:
    decoded = decode_failure("Sandbox.Timedout", _lambda_error("Sandbox.Timedout", "timed out"))
    assert decoded == DecodedFailure(
        state=None, item=None, error="Sandbox.Timedout", message="timed out"
    )


@given(
    state=st.text(min_size=1, max_size=80),
    item=st.none() | st.text(max_size=80),
    error=st.text(min_size=1, max_size=200),
)
def test_every_subject_is_shorter_than_100_printable_ascii_characters(state, item, error) -> None:
    subject = subject_line(DecodedFailure(state=state, item=item, error=error, message=""))
    assert len(subject) <= SUBJECT_LIMIT < 100
    assert all(" " <= character <= "~" for character in subject)
    assert subject.startswith("totes: ")


def test_a_long_error_name_is_dropped_from_the_subject_before_the_table() -> None:
    decoded = DecodedFailure(state="LoadFact", item="fact_payment", error="E" * 90, message="")
    assert subject_line(decoded) == "totes: LoadFact failed for fact_payment"


def test_an_event_without_the_error_is_refused_naming_the_field() -> None:
    event = json.loads(_event("E", None).model_dump_json())
    del event["failure"]["Error"]
    with pytest.raises(InvalidEventError, match=r"failure event: failure\.Error is not set"):
        FailureEvent.from_event(event)


def test_a_failure_the_catch_recorded_without_a_cause_is_still_mailed() -> None:
    event = json.loads(_event("States.Runtime", None).model_dump_json())
    del event["failure"]["Cause"]
    notice = describe_failure(FailureEvent.from_event(event))
    assert notice.subject == "totes: the pipeline failed (States.Runtime)"
    assert "Message:        (no cause given)" in notice.message


@pytest.mark.parametrize(
    "error", ["DatabaseTransientError", "DatabaseUnreachableError", "AwsTransientError"]
)
def test_a_transient_fault_that_outlasted_the_retries_is_mailed_as_transient(error: str) -> None:
    # Given a load that met a failover longer than every retry of the state machine
    cause = FailedState(
        state="LoadFact",
        item="fact_sales_order",
        error=error,
        cause=_lambda_error(error, "PostgreSQL at etl@db:5432/warehouse: AdminShutdown: ..."),
    ).model_dump_json()

    # When the failure is described
    lines = describe_failure(_event(error, cause)).message.splitlines()

    # Then the email says it was transient, how long it was retried, and that the next run
    # continues: nothing for the operator to repair
    assert lines[4] == (
        "Transient:      yes, retried 4 times over up to 41 s, and it outlasted every retry; "
        "the next run will continue"
    )
    assert "Nothing is lost: the next run continues where this one stopped." in lines[-1]


def test_a_database_errors_row_values_never_reach_the_mail_and_a_long_message_is_cut() -> None:
    # Given a load that failed on a constraint, whose message's later lines quote the row
    message = (
        'duplicate key value violates unique constraint "dim_staff_pkey"\n'
        "DETAIL:  Key (email_address)=(ann.oconnor@example.com) already exists.\n"
        "CONTEXT:  COPY dim_staff, line 7"
    )
    cause = FailedState(
        state="LoadDimension",
        item="dim_staff",
        error="UniqueViolation",
        cause=_lambda_error("UniqueViolation", message),
    ).model_dump_json()

    # When the failure is described
    body = describe_failure(_event("UniqueViolation", cause)).message

    # Then the mail names the database's error and its code, and nothing of the row (even
    # a database message's first line may quote a value)
    assert (
        "Message:        UniqueViolation (SQLSTATE 23505): its message is in the function's log\n"
        in body
    )
    assert "ann.oconnor" not in body
    assert "DETAIL" not in body
    assert "CONTEXT" not in body

    assert "duplicate key" not in body
    # And a message of any length is cut to 1,000 characters
    long_cause = FailedState(
        state="LoadFact", item="fact_payment", error="E", cause=_lambda_error("E", "y" * 50_000)
    ).model_dump_json()
    (line,) = [
        line
        for line in describe_failure(_event("E", long_cause)).message.splitlines()
        if line.startswith("Message:")
    ]
    assert len(line.removeprefix("Message:        ")) == 1000
