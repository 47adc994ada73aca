"""The parts of the local runtime: the template's resources under local names, a handler
exception as the Lambda service reports it, the execution history read back into states,
EMF lines into metrics, and the coloured graph."""

from __future__ import annotations

import concurrent.futures
import http.client
import json
import time
import urllib.parse
from datetime import UTC, datetime, timedelta
from typing import Any

import boto3
import pytest
from botocore.exceptions import ClientError

from totes_local.runtime.assembly import CloudAssembly
from totes_local.runtime.call_trail import call_counts, call_seconds
from totes_local.runtime.deployment import LOCAL_TOOLING_ONLY
from totes_local.runtime.emf import parse_emf
from totes_local.runtime.graph import markdown_report, mermaid_flowchart
from totes_local.runtime.history import HistoryFollower, Outcome, read_history, state_tree
from totes_local.runtime.lambda_bootstrap import ABSENT_PACKAGES_VARIABLE
from totes_local.runtime.moto_patches import aws_timestamp
from totes_local.runtime.platform import LocalPlatform

from .support import REPO_ROOT, WorkflowFactory, invocation_reports


def test_every_token_of_the_template_points_at_a_local_resource(
    cloud_assembly: CloudAssembly,
) -> None:
    platform = LocalPlatform.from_assembly(cloud_assembly)

    buckets = {bucket.name for bucket in platform.buckets}
    tables = {table.name for table in platform.tables}
    functions = {function.invoked_arn: function for function in platform.functions}
    by_stage = {
        state.name: str(state.definition.get("Resource"))
        for state in state_tree(platform.state_machine.definition_json).values()
        if state.type == "Task"
    }
    # Each Map's task invokes a function of the stack; the failure path, the stack's topic
    assert {by_stage[task] for task in ("IngestTable", "TransformTable", "LoadFact")} <= set(
        functions
    )
    notify = state_tree(platform.state_machine.definition_json)["NotifyFailure"]
    assert notify.definition["Parameters"]["TopicArn"] == platform.topics[0].arn
    ingest = functions[by_stage["IngestTable"]]
    assert ingest.environment["INGESTED_BUCKET"] in buckets
    assert ingest.environment["WATERMARK_TABLE"] in tables
    assert (ingest.code / "handler.py").is_file()
    assert any(bucket.versioned for bucket in platform.buckets)


def test_no_function_may_import_what_only_the_local_tooling_installs(
    local_workflow: WorkflowFactory,
) -> None:
    # Given the third-party packages the dependencies layer ships
    report = REPO_ROOT / "build" / "layers" / "dependencies.json"
    shipped = {
        name.lower().replace("_", "-")
        for name in json.loads(report.read_text(encoding="utf-8"))["packages"]
    }
    # When the stack is deployed in the local service
    with local_workflow("host=unused", "host=unused") as workflow:
        lambda_ = workflow.client("lambda")
        hidden = {
            function.logical_id: lambda_.get_function_configuration(FunctionName=function.name)[
                "Environment"
            ]["Variables"].get(ABSENT_PACKAGES_VARIABLE)
            for function in workflow.platform.functions
        }

    # Then no function imports pandas, numpy or awswrangler, which the local environment
    # holds for the local tooling: as in Lambda, where no layer of the stack ships them
    assert shipped.isdisjoint(LOCAL_TOOLING_ONLY)
    assert set(hidden.values()) == {",".join(LOCAL_TOOLING_ONLY)}


def test_a_handler_exception_comes_back_as_the_lambda_service_reports_it(
    local_workflow: WorkflowFactory,
) -> None:
    # Given the stack deployed in the local service
    with local_workflow("host=unused", "host=unused") as workflow:
        # When its ingest function is invoked through the Lambda API with a bad event
        response = workflow.client("lambda").invoke(
            FunctionName=workflow.function_name("FunctionsIngest"),
            Payload=json.dumps({"run_id": "r1"}).encode(),
        )
        payload = json.loads(response["Payload"].read())
        reports = invocation_reports(workflow, "FunctionsIngest")

    # Then the answer is the Lambda service's: a function error with the exception's type
    assert response["FunctionError"] == "Unhandled"
    assert payload["errorType"] == "InvalidEventError"
    assert "table" in payload["errorMessage"]
    assert isinstance(payload["stackTrace"], list)
    assert payload["stackTrace"]
    # And the platform report of the invocation names the error
    assert reports[-1]["error_type"] == "InvalidEventError"
    assert reports[-1]["function_request_id"] == payload["requestId"]


def test_the_deployment_publishes_versions_whose_new_environments_each_initialise(
    local_workflow: WorkflowFactory,
) -> None:
    # Given the stack deployed in the local service (which waits for its versions)
    with local_workflow("host=unused", "host=unused") as workflow:
        lambda_ = workflow.client("lambda")
        name = workflow.function_name("FunctionsIngest")
        # Then the live alias points at a published version, Active, without SnapStart
        alias = lambda_.get_alias(FunctionName=name, Name="live")
        version = lambda_.get_function_configuration(
            FunctionName=name, Qualifier=alias["FunctionVersion"]
        )
        assert alias["FunctionVersion"] != "$LATEST"
        assert version["State"] == "Active"
        assert version.get("SnapStart", {}).get("ApplyOn", "None") == "None"
        # When the alias is invoked twice at once (two new environments)
        earlier = {r["worker_pid"] for r in invocation_reports(workflow, "FunctionsIngest")}
        with concurrent.futures.ThreadPoolExecutor(2) as callers:
            list(
                callers.map(
                    lambda _: lambda_.invoke(
                        FunctionName=alias["AliasArn"], Payload=b'{"run_id": "r1"}'
                    ),
                    range(2),
                )
            )
        reports = [
            r
            for r in invocation_reports(workflow, "FunctionsIngest")
            if r["worker_pid"] not in earlier
        ]

    # Then each ran in an environment of its own, which imported the handler (a cold
    # start, its init phase reported apart from the invocation's duration)
    assert len(reports) == 2
    assert len({report["worker_pid"] for report in reports}) == 2
    assert all(report["init_duration_ms"] > 0 for report in reports)


def _event(
    event_id: int, previous: int, event_type: str, seconds: float = 0, **details: Any
) -> dict[str, Any]:
    event: dict[str, Any] = {
        "id": event_id,
        "previousEventId": previous,
        "type": event_type,
        "timestamp": datetime(2025, 1, 1, tzinfo=UTC) + timedelta(seconds=seconds or event_id),
    }
    if details:
        if event_type.endswith("StateEntered"):
            key = "stateEnteredEventDetails"
        elif event_type.endswith("StateExited"):
            key = "stateExitedEventDetails"
        else:
            key = event_type[0].lower() + event_type[1:] + "EventDetails"
        event[key] = {
            name: json.dumps(value) if name in ("input", "output") else value
            for name, value in details.items()
        }
    return event


DEFINITION: dict[str, Any] = {
    "StartAt": "Run",
    "States": {
        "Run": {
            "Type": "Parallel",
            "Branches": [
                {
                    "StartAt": "Items",
                    "States": {
                        "Items": {
                            "Type": "Map",
                            "ItemsPath": "$.items",
                            "ItemProcessor": {
                                "StartAt": "Work",
                                "States": {
                                    "Work": {
                                        "Type": "Task",
                                        "Resource": "arn:aws:lambda:eu-west-2:1:function:work",
                                        "End": True,
                                    }
                                },
                            },
                            "End": True,
                        }
                    },
                }
            ],
            "Catch": [{"ErrorEquals": ["States.ALL"], "Next": "Stopped"}],
            "End": True,
        },
        "Stopped": {"Type": "Fail"},
    },
}

#: Two items run at once; "a" succeeds, "b" fails twice (one retry); the Catch ends in Fail.
EVENTS = [
    _event(1, 0, "ExecutionStarted"),
    _event(2, 1, "ParallelStateEntered", name="Run", input={}),
    _event(3, 2, "ParallelStateStarted"),
    _event(4, 3, "MapStateEntered", name="Items", input={"items": ["a", "b"]}),
    _event(5, 4, "MapStateStarted"),
    _event(6, 5, "MapIterationStarted"),
    _event(7, 6, "TaskStateEntered", name="Work", input={"table": "a"}),
    _event(8, 5, "MapIterationStarted"),
    _event(9, 8, "TaskStateEntered", name="Work", input={"table": "b"}),
    _event(10, 7, "LambdaFunctionScheduled"),
    _event(11, 10, "LambdaFunctionStarted"),
    _event(12, 9, "LambdaFunctionScheduled"),
    _event(13, 12, "LambdaFunctionStarted"),
    _event(14, 11, "LambdaFunctionSucceeded", output={"table": "a", "rows": 3}),
    _event(15, 14, "TaskStateExited", name="Work", output={"table": "a", "rows": 3}),
    _event(16, 15, "MapIterationSucceeded"),
    _event(17, 13, "LambdaFunctionFailed", error="Boom", cause='{"errorMessage": "x"}'),
    _event(18, 17, "LambdaFunctionScheduled"),
    _event(19, 18, "LambdaFunctionStarted"),
    _event(20, 19, "LambdaFunctionFailed", error="Boom", cause='{"errorMessage": "y"}'),
    _event(21, 20, "MapIterationFailed"),
    _event(22, 20, "MapStateFailed"),
    _event(23, 22, "ParallelStateFailed"),
    _event(24, 23, "ParallelStateExited", name="Run", output={"failure": {}}),
    _event(25, 24, "FailStateEntered", name="Stopped", input={}),
    _event(26, 25, "ExecutionFailed", error="Boom", cause="y"),
]


def test_the_history_is_read_back_into_state_entries_with_their_outcomes() -> None:
    history = read_history(DEFINITION, list(reversed(EVENTS)))

    assert history.outcomes() == {
        "Run": Outcome.FAILED,
        "Items": Outcome.FAILED,
        "Work": Outcome.FAILED,
        "Stopped": Outcome.FAILED,
    }
    first, second = history.of_state("Work")
    assert (first.item, first.outcome, first.attempts, first.output) == (
        "a",
        Outcome.SUCCEEDED,
        1,
        {"table": "a", "rows": 3},
    )
    assert (second.item, second.outcome, second.attempts, second.error) == (
        "b",
        Outcome.FAILED,
        2,
        "Boom",
    )
    assert history.failed_task() is second
    (items,) = history.of_state("Items")
    assert items.duration_s == 18.0


@pytest.mark.parametrize("page", [1, 2, 5, 100])
def test_the_history_followed_page_by_page_reads_as_the_whole_history(page: int) -> None:
    # Given the events of an execution, arriving a few at a time
    follower = HistoryFollower(DEFINITION)

    # When each page is fed once, in order
    for start in range(0, len(EVENTS), page):
        follower.feed(EVENTS[start : start + page])

    # Then the entries and outcomes equal those of the whole history read at once
    whole = read_history(DEFINITION, EVENTS)
    assert follower.history.outcomes() == whole.outcomes()
    assert follower.history.entries == whole.entries


def test_a_state_that_never_ran_is_not_run_and_a_retried_success_succeeds() -> None:
    events = [
        *EVENTS[:16],
        _event(17, 13, "LambdaFunctionFailed", error="Boom"),
        _event(18, 17, "LambdaFunctionScheduled"),
        _event(19, 18, "LambdaFunctionStarted"),
        _event(20, 19, "LambdaFunctionSucceeded", output={"table": "b", "rows": 1}),
        _event(21, 20, "TaskStateExited", name="Work", output={"table": "b", "rows": 1}),
        _event(22, 21, "MapIterationSucceeded"),
        _event(23, 22, "MapStateSucceeded"),
        _event(24, 22, "MapStateExited", name="Items", output={}),
        _event(25, 24, "ParallelStateSucceeded"),
        _event(26, 24, "ParallelStateExited", name="Run", output={}),
    ]
    history = read_history(DEFINITION, events)

    assert history.outcomes() == {
        "Run": Outcome.SUCCEEDED,
        "Items": Outcome.SUCCEEDED,
        "Work": Outcome.SUCCEEDED,
        "Stopped": Outcome.NOT_RUN,
    }
    assert [entry.attempts for entry in history.of_state("Work")] == [1, 2]
    assert history.failed_task() is None
    # And the retry is told by state and by the error that caused it
    assert history.retries() == {("Work", "Boom"): 1}


def test_the_graph_colours_each_state_by_its_outcome_and_names_the_failure() -> None:
    history = read_history(DEFINITION, EVENTS)

    chart = mermaid_flowchart(DEFINITION, history)
    page = markdown_report(DEFINITION, history, title="run-1", status="FAILED", error="Boom")

    lines = chart.splitlines()
    assert lines[0] == "flowchart TD"
    # Run, Items, Work and Stopped are s0..s3, in the order of the definition
    assert "    class s2 failed" in lines
    assert "    class s3 failed" in lines
    assert any(line.startswith("    style s1 fill:#fbd5d5") for line in lines)
    assert '    s0 -. "catch States.ALL" .-> s3' in lines
    assert "1/2 items succeeded" in chart
    assert "1 retry" in chart
    assert "✖ Boom (b)" in chart
    assert page.startswith("# Execution run-1: FAILED\n")
    assert f"```mermaid\n{chart}\n```" in page
    assert "| Work | Task | failed | 2 | 11.00 |" in page


def test_a_state_not_run_is_drawn_grey() -> None:
    chart = mermaid_flowchart(DEFINITION, read_history(DEFINITION, []))

    assert all(f"    class s{i} notrun" in chart for i in (2, 3))


def test_emf_lines_become_metric_values_with_their_dimensions() -> None:
    record = {
        "_aws": {
            "Timestamp": 1_700_000_000_000,
            "CloudWatchMetrics": [
                {
                    "Namespace": "Totes/DataPlatform",
                    "Dimensions": [["table", "service"]],
                    "Metrics": [
                        {"Name": "RowsLoaded", "Unit": "Count"},
                        {"Name": "LoadDurationMs", "Unit": "Milliseconds"},
                    ],
                }
            ],
        },
        "table": "fact_payment",
        "service": "totes-pipeline",
        "RowsLoaded": [2.0, 3.0],
        "LoadDurationMs": 85.7,
    }

    data = parse_emf(record)

    assert [(datum.name, datum.value, datum.unit) for datum in data] == [
        ("RowsLoaded", 2.0, "Count"),
        ("RowsLoaded", 3.0, "Count"),
        ("LoadDurationMs", 85.7, "Milliseconds"),
    ]
    assert data[0].dimensions == {"service": "totes-pipeline", "table": "fact_payment"}
    assert data[0].timestamp == datetime.fromtimestamp(1_700_000_000, UTC)
    assert parse_emf({"level": "INFO", "message": "loaded"}) == []


@pytest.mark.parametrize(
    ("moment", "text"),
    [
        (datetime(2019, 3, 26, 20, 14, 13, 192_000, tzinfo=UTC), "2019-03-26T20:14:13.192Z"),
        (
            datetime(2024, 1, 1, 1, 0, 0, tzinfo=UTC) + timedelta(microseconds=999),
            "2024-01-01T01:00:00.000Z",
        ),
    ],
)
def test_the_execution_start_time_reads_as_aws_writes_it(moment: datetime, text: str) -> None:
    assert aws_timestamp(moment) == text


def test_the_service_pages_an_execution_history_so_each_event_is_read_once(
    local_workflow: WorkflowFactory,
) -> None:
    # Given a finished execution (its ingest fails at once: no database is reachable)
    with local_workflow("host=unused", "host=unused") as workflow:
        report = workflow.execute()
        sfn = workflow.client("stepfunctions")

        # When its history is read seven events at a time, following nextToken
        pages: list[list[int]] = []
        token: str | None = None
        while True:
            page = sfn.get_execution_history(
                executionArn=report.arn, maxResults=7, **({"nextToken": token} if token else {})
            )
            pages.append([int(event["id"]) for event in page["events"]])
            token = page.get("nextToken")
            if token is None:
                break
        whole = sfn.get_execution_history(executionArn=report.arn, maxResults=1000)

    # Then every event comes once, in order, in pages of at most seven, and the last page
    # of an ended execution carries no token
    ids = [event_id for page_ids in pages for event_id in page_ids]
    assert report.status == "FAILED"
    assert ids == list(range(1, len(ids) + 1))
    assert all(len(page_ids) == 7 for page_ids in pages[:-1])
    assert pages[-1]
    # (A Map that fails lets the items already running finish, where AWS aborts them:
    # their last events may follow the execution's end, after the pages were read.)
    assert [int(event["id"]) for event in whole["events"]][: len(ids)] == ids
    assert "nextToken" not in whole


def test_the_service_refuses_a_broken_definition_and_runs_each_definition_it_was_given(
    local_workflow: WorkflowFactory,
) -> None:
    # Given the local service, holding the parse of each definition it validated
    with local_workflow("host=unused", "host=unused") as workflow:
        sfn = workflow.client("stepfunctions")
        role = workflow.client("iam").list_roles()["Roles"][0]["Arn"]

        def passing(result: str) -> str:
            states = {"Answer": {"Type": "Pass", "Result": {"answer": result}, "End": True}}
            return json.dumps({"StartAt": "Answer", "States": states})

        def output_of(machine: str, name: str) -> Any:
            arn = sfn.start_execution(stateMachineArn=machine, name=name, input="{}")[
                "executionArn"
            ]
            deadline = time.monotonic() + 30
            while (described := sfn.describe_execution(executionArn=arn))["status"] == "RUNNING":
                assert time.monotonic() < deadline, "the execution did not end"
                time.sleep(0.05)
            assert described["status"] == "SUCCEEDED", described
            return json.loads(described["output"])["answer"]

        # When a definition with a state of no known type is created
        broken = {"StartAt": "Here", "States": {"Here": {"Type": "Wander", "End": True}}}
        # Then it is refused, as Step Functions refuses it
        with pytest.raises(sfn.exceptions.InvalidDefinition):
            sfn.create_state_machine(name="broken", definition=json.dumps(broken), roleArn=role)
        # When a valid one is created, run, updated and run again
        machine = sfn.create_state_machine(
            name="answers", definition=passing("first"), roleArn=role
        )["stateMachineArn"]
        first = output_of(machine, "before")
        sfn.update_state_machine(stateMachineArn=machine, definition=passing("second"))
        # Then each execution runs the definition the machine had when it started
        assert (first, output_of(machine, "after")) == ("first", "second")


def test_the_service_keeps_a_clients_connection_open_between_requests(
    local_workflow: WorkflowFactory,
) -> None:
    # Given the local service, and one HTTP connection to it
    with local_workflow("host=unused", "host=unused") as workflow:
        endpoint = urllib.parse.urlsplit(workflow.service.service.endpoint)
        connection = http.client.HTTPConnection(endpoint.hostname or "", endpoint.port)
        try:
            # When a client sends three requests over it, one after the other
            answers, sockets = [], []
            for _ in range(3):
                connection.request("GET", "/")  # S3's ListBuckets
                response = connection.getresponse()
                response.read()
                answers.append((response.status, response.getheader("Connection")))
                sockets.append(connection.sock)
        finally:
            connection.close()

    # Then each is answered over the same socket, none closing it: as an AWS endpoint,
    # the service does not make each request of a handler pay for a new connection
    assert answers == [(200, None)] * 3
    assert sockets[0] is not None
    assert all(sock is sockets[0] for sock in sockets)


def test_an_s3_key_holding_characters_a_url_escapes_is_kept_as_written(
    local_workflow: WorkflowFactory,
) -> None:
    # Given the local service's S3 and keys holding "?", an escaped-looking "%41" and "+"
    keys = ["run=a?b/%41.parquet", "x/y z+1.csv"]
    with local_workflow("host=unused", "host=unused") as workflow:
        s3 = workflow.client("s3")
        bucket = workflow.processed_bucket
        assert bucket
        # When each is written and read back, and the bucket listed
        for key in keys:
            s3.put_object(Bucket=bucket, Key=key, Body=key.encode())
        bodies = [s3.get_object(Bucket=bucket, Key=key)["Body"].read() for key in keys]
        listed = {item["Key"] for item in s3.list_objects_v2(Bucket=bucket)["Contents"]}

    # Then each key is the one written, as S3 keeps it
    assert bodies == [key.encode() for key in keys]
    assert set(keys) <= listed


def test_a_folder_whose_every_key_is_deleted_is_no_longer_listed(
    local_workflow: WorkflowFactory,
) -> None:
    # Given the processed bucket (versioned) holding two folders of the lake
    with local_workflow("host=unused", "host=unused") as workflow:
        s3 = workflow.client("s3")
        bucket = workflow.processed_bucket
        assert bucket
        for key in ("seam/old/x.parquet", "seam/new/x.parquet"):
            s3.put_object(Bucket=bucket, Key=key, Body=b"x")
        # When the one's only key is deleted and the folders are listed
        s3.delete_object(Bucket=bucket, Key="seam/old/x.parquet")
        listed = s3.list_objects_v2(Bucket=bucket, Prefix="seam/", Delimiter="/")
        versions = s3.list_object_versions(Bucket=bucket, Prefix="seam/old/")

    # Then, as S3 answers, only the folder with a current key is listed, and the deleted
    # key's version is still kept behind its delete marker
    assert [folder["Prefix"] for folder in listed["CommonPrefixes"]] == ["seam/new/"]
    assert len(versions["Versions"]) == 1
    assert len(versions["DeleteMarkers"]) == 1


def test_a_glue_table_update_made_from_an_older_version_is_refused_as_glue_refuses_it(
    local_workflow: WorkflowFactory,
) -> None:
    # Given a table in the local service's Glue, updated once since a writer read it
    with local_workflow("host=unused", "host=unused") as workflow:
        glue = workflow.client("glue")
        glue.create_database(DatabaseInput={"Name": "seam"})
        glue.create_table(DatabaseName="seam", TableInput={"Name": "t", "Parameters": {"v": "1"}})
        read = glue.get_table(DatabaseName="seam", Name="t")["Table"]["VersionId"]
        glue.update_table(
            DatabaseName="seam", TableInput={"Name": "t", "Parameters": {"v": "2"}}, VersionId=read
        )
        # When that writer updates it from the version it read
        with pytest.raises(ClientError) as refused:
            glue.update_table(
                DatabaseName="seam",
                TableInput={"Name": "t", "Parameters": {"v": "3"}},
                VersionId=read,
            )
        kept = glue.get_table(DatabaseName="seam", Name="t")["Table"]["Parameters"]

    # Then the update is refused as a concurrent modification and the newer one stands
    assert refused.value.response["Error"]["Code"] == "ConcurrentModificationException"
    assert kept == {"v": "2"}


def test_the_service_counts_each_functions_requests_and_the_seconds_it_took_to_answer(
    local_workflow: WorkflowFactory,
) -> None:
    # Given a client signing as a function does (its name as the access key id)
    with local_workflow("host=unused", "host=unused") as workflow:
        endpoint = workflow.service.service.endpoint
        bucket = workflow.processed_bucket
        function = boto3.client(
            "s3",
            region_name=workflow.platform.region,
            endpoint_url=endpoint,
            aws_access_key_id="totes-measured-function",
            aws_secret_access_key="unused",  # the local service checks no signature
        )
        # When it writes one object and reads it three times, and the CLI reads it once
        function.put_object(Bucket=bucket, Key="measured/x", Body=b"x")
        for _ in range(3):
            function.get_object(Bucket=bucket, Key="measured/x")["Body"].read()
        workflow.client("s3").get_object(Bucket=bucket, Key="measured/x")["Body"].read()
        counts = call_counts(endpoint)["totes-measured-function"]
        seconds = call_seconds(endpoint)["totes-measured-function"]

    # Then its requests are counted by action, the CLI's not at all, and the service's
    # seconds are kept for the same actions
    assert counts == {"s3:PutObject": 1, "s3:GetObject": 3}
    assert set(seconds) == set(counts)
    assert all(0 < spent < 5 for spent in seconds.values())
