"""What the Express state machine promises: the story of a run, retries, failure handling.

The definition is read the way Step Functions reads it: the JSON string in the
template, with CloudFormation tokens rendered as ``<LogicalId.Attribute>``.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest

from tests.infra.template_reading import (
    allowed_actions,
    logical_id,
    role_statements,
    state_machine_definition,
)
from totes.failure_notice import FailedState
from totes.tables import (
    FACT_TABLES,
    GOLD_DIMENSIONS,
    GOLD_TABLES,
    SOURCE_TABLES,
    largest_first,
)

pytestmark = pytest.mark.infra

LAMBDA_SERVICE_ERRORS = [
    "Lambda.ServiceException",
    "Lambda.AWSLambdaException",
    "Lambda.SdkClientException",
    "Lambda.TooManyRequestsException",
]


@pytest.fixture(scope="module")
def definition(template) -> dict[str, Any]:
    return state_machine_definition(template)


@pytest.fixture(scope="module")
def stages(definition) -> dict[str, Any]:
    """The states inside RunPipeline's one branch: the stages of a run."""
    (branch,) = definition["States"]["RunPipeline"]["Branches"]
    states: dict[str, Any] = branch["States"]
    return states


def _all_states(states: dict[str, Any]) -> Iterator[tuple[str, dict[str, Any]]]:
    """Every state, however deeply nested in Parallel branches and Map processors."""
    for name, state in states.items():
        yield name, state
        for branch in state.get("Branches", []):
            yield from _all_states(branch["States"])
        if "ItemProcessor" in state:
            yield from _all_states(state["ItemProcessor"]["States"])


def _order(states: dict[str, Any], start: str) -> list[str]:
    names, current = [], start
    while current is not None:
        names.append(current)
        current = states[current].get("Next")
    return names


def test_the_pipeline_is_an_express_state_machine_within_the_express_time_limit(template):
    # Given the state machine, Then it is Express (one cheap, short execution per
    # tick) and stops itself at the 5-minute Express limit
    template.has_resource_properties(
        "AWS::StepFunctions::StateMachine", {"StateMachineType": "EXPRESS"}
    )
    (state_machine,) = template.find_resources("AWS::StepFunctions::StateMachine").values()
    assert state_machine_definition(template)["TimeoutSeconds"] == 300
    assert state_machine["Properties"]["TracingConfiguration"] == {"Enabled": True}


def test_every_transition_is_logged_with_its_data_to_a_vended_logs_group(platform, template):
    # Given the state machine's logging configuration
    (state_machine,) = template.find_resources("AWS::StepFunctions::StateMachine").values()
    logging = state_machine["Properties"]["LoggingConfiguration"]

    # Then every event, with inputs and outputs, goes to the workflow's own log group
    log_group = platform.stack.workflow.log_group
    assert logging["Level"] == "ALL"
    assert logging["IncludeExecutionData"] is True
    assert logging["Destinations"] == [
        {"CloudWatchLogsLogGroup": {"LogGroupArn": {"Fn::GetAtt": [logical_id(log_group), "Arn"]}}}
    ]
    # And that group is named where Step Functions can deliver logs, and expires them
    template.has_resource_properties(
        "AWS::Logs::LogGroup",
        {
            "LogGroupName": "/aws/vendedlogs/states/TotesDataPlatform-pipeline",
            "RetentionInDays": 30,
        },
    )


def test_a_run_reads_as_its_stages_in_order(definition, stages):
    # Given the definition, When a run starts
    # Then one Parallel state holds the stages, and success or failure follows it
    assert definition["StartAt"] == "RunPipeline"
    assert definition["States"]["RunPipeline"]["Type"] == "Parallel"
    assert definition["States"]["RunPipeline"]["Next"] == "Succeeded"
    assert definition["States"]["Succeeded"]["Type"] == "Succeed"
    # And inside it, the stages in the order the data flows
    assert _order(stages, "Plan") == [
        "Plan",
        "IngestTables",
        "TransformTables",
        "LoadDimensions",
        "LoadFacts",
        "CheckProgress",
        "MoreToCatchUp",
    ]


def test_the_run_loops_back_for_another_pass_while_work_remains_and_time_allows(stages):
    # Given the Choice after each pass
    choice = stages["MoreToCatchUp"]
    assert choice["Type"] == "Choice"

    # Then when CheckProgress says another pass fits, a visible edge leads back to ingest
    (again,) = choice["Choices"]
    assert again == {"Variable": "$.next_pass", "BooleanEquals": True, "Next": "StartNextPass"}
    assert stages["StartNextPass"]["Next"] == "IngestTables"
    # And the next pass keeps the run id and totals, and takes CheckProgress's table lists
    carried = stages["StartNextPass"]["Parameters"]
    assert carried["run_id.$"] == "$.run_id"
    assert carried["tables.$"] == "$.tables"
    assert carried["visiting.$"] == "$.visiting"
    assert carried["pass_started.$"] == "$$.State.EnteredTime"
    assert carried["findings.$"] == "$.findings"
    # And otherwise the run maintains the lake, then ends with its summary
    assert choice["Default"] == "MaintainLake"
    assert stages["MaintainLake"]["Next"] == "Summarise"
    assert stages["Summarise"]["End"] is True


def test_the_lake_is_maintained_once_the_passes_are_done_and_its_failure_is_named(platform, stages):
    # Given the lake maintenance step
    maintenance = stages["MaintainLake"]
    # Then it runs the lake maintenance function for the run, keeping its counts under $.lake
    functions = platform.stack.functions
    assert maintenance["Resource"] == f"<{logical_id(functions.live(functions.lake_maintenance))}>"
    assert maintenance["Parameters"] == {"run_id.$": "$.run_id"}
    assert maintenance["ResultPath"] == "$.lake"
    # And a failure of it is named like any task's, and ends the run there (the loads,
    # and with them the lake's tables, are done by then, and stay done)
    assert [c["Next"] for c in maintenance["Catch"]] == ["MaintainLakeFailed"]
    assert stages["Summarise"]["Parameters"]["lake.$"] == "$.lake"


def test_check_progress_is_told_the_pass_and_the_execution_start(stages):
    # Given the progress check
    check = stages["CheckProgress"]

    # Then it gets every stage's results, the totals so far and both start times
    payload = check["Parameters"]
    assert payload["execution_started.$"] == "$$.Execution.StartTime"
    assert payload["pass_started.$"] == "$.pass_started"
    for stage in ("ingested", "transformed", "dimensions_loaded", "facts_loaded", "tables"):
        assert payload[f"{stage}.$"] == f"$.{stage}"
    # And its answer replaces the state: stage results never pile up across passes
    assert check["ResultPath"] == "$"


def test_the_catch_up_budget_comes_from_context(synthesise_platform):
    # Given `cdk deploy -c catch_up_budget_seconds=120`
    platform = synthesise_platform(catch_up_budget_seconds="120")

    # Then the progress check ends an execution's passes by 120 s
    progress = platform.template.find_resources("AWS::Lambda::Function")[
        logical_id(platform.stack.functions.progress)
    ]
    assert progress["Properties"]["Environment"]["Variables"]["CATCH_UP_BUDGET_SECONDS"] == "120"


def test_plan_names_the_run_after_its_start_and_execution_and_lists_the_shared_tables(stages):
    # Given the first state of a run
    plan = stages["Plan"]

    # Then the run id starts with the start time (run folders sort by time), then the
    # execution's name; and the table lists are the shared ones, the largest tables first
    assert plan["Type"] == "Pass"
    assert plan["Parameters"]["run_id.$"] == (
        "States.Format('{}-{}', $$.Execution.StartTime, $$.Execution.Name)"
    )
    assert plan["Parameters"]["visiting"] == {
        "source": largest_first(SOURCE_TABLES),
        "warehouse": largest_first(GOLD_TABLES),
        "dimensions": largest_first(GOLD_DIMENSIONS),
        "facts": largest_first(FACT_TABLES),
    }
    assert plan["Parameters"]["visiting"]["dimensions"][0] == "dim_transaction"


@dataclass(frozen=True)
class StageCase:
    map_state: str
    items_path: str
    item_key: str
    task: str
    function: str
    result_path: str


STAGE_CASES = [
    StageCase("IngestTables", "$.visiting.source", "table", "IngestTable", "ingest", "$.ingested"),
    StageCase(
        "TransformTables",
        "$.visiting.warehouse",
        "target",
        "TransformTable",
        "transform",
        "$.transformed",
    ),
    StageCase(
        "LoadDimensions",
        "$.visiting.dimensions",
        "target",
        "LoadDimension",
        "load",
        "$.dimensions_loaded",
    ),
    StageCase("LoadFacts", "$.visiting.facts", "target", "LoadFact", "load", "$.facts_loaded"),
]


@pytest.mark.parametrize("case", STAGE_CASES, ids=lambda case: case.map_state)
def test_each_stage_maps_its_tables_onto_its_function(platform, stages, case):
    # Given a stage of the run
    stage = stages[case.map_state]

    # Then it is a Map over its table list whose items are exactly the handler's event
    assert stage["Type"] == "Map"
    assert stage["ItemsPath"] == case.items_path
    assert stage["ItemSelector"] == {
        f"{case.item_key}.$": "$$.Map.Item.Value",
        "run_id.$": "$.run_id",
    }
    # And each item invokes the stage's function, getting back only the handler's result
    invoke = stage["ItemProcessor"]["States"][case.task]
    functions = platform.stack.functions
    target = functions.live(getattr(functions, case.function))
    assert invoke["Resource"] == f"<{logical_id(target)}>", "its live alias"
    assert "Parameters" not in invoke, "the item is the payload, unchanged"
    # And the results land beside the run id, which later stages still need
    assert stage["ResultPath"] == case.result_path


def test_ingest_opens_at_most_three_source_connections_at_once(stages):
    # Given the ingest stage with the default ingest_max_concurrency of 3
    # Then no more than three tables are extracted concurrently
    assert stages["IngestTables"]["MaxConcurrency"] == 3


def test_ingest_concurrency_comes_from_context(synthesise_platform):
    # Given `cdk deploy -c ingest_max_concurrency=5`
    platform = synthesise_platform(ingest_max_concurrency="5")

    # Then the ingest Map runs up to five tables at once
    (branch,) = state_machine_definition(platform.template)["States"]["RunPipeline"]["Branches"]
    assert branch["States"]["IngestTables"]["MaxConcurrency"] == 5


def test_every_lambda_task_retries_lambda_service_errors_with_jittered_backoff(definition):
    # Given every Lambda task of the definition
    lambda_tasks = {
        name: state
        for name, state in _all_states(definition["States"])
        if state["Type"] == "Task" and state["Resource"].startswith("<Functions")
    }
    assert set(lambda_tasks) == {
        "IngestTable",
        "TransformTable",
        "LoadDimension",
        "LoadFact",
        "CheckProgress",
        "MaintainLake",
        "DescribeFailure",
    }

    # Then each retries errors of the Lambda service (not of the handler) three
    # times, 2 s apart and doubling, with jitter so the Map items do not retry in step
    for name, state in lambda_tasks.items():
        assert {
            "ErrorEquals": LAMBDA_SERVICE_ERRORS,
            "IntervalSeconds": 2,
            "BackoffRate": 2,
            "MaxAttempts": 3,
            "JitterStrategy": "FULL",
        } in state["Retry"], name


def test_every_task_state_has_a_retry(definition):
    # Given every Task state, the SNS notification included
    tasks = {
        name: state for name, state in _all_states(definition["States"]) if state["Type"] == "Task"
    }

    # Then none gives up on the first transient error
    assert tasks
    assert [name for name, state in tasks.items() if not state.get("Retry")] == []


def test_every_stage_that_reaches_a_database_or_aws_retries_transient_faults(definition):
    # Given the tasks of the stages that read or write a database, S3 or DynamoDB
    stage_tasks = {
        name: state
        for name, state in _all_states(definition["States"])
        if name in ("IngestTable", "TransformTable", "LoadDimension", "LoadFact")
    }
    assert len(stage_tasks) == 4

    # Then a failover, a restart or throttling is retried four times: after up to 3, 6, 12
    # and 20 s (full jitter), 41 s at most in all, before the execution fails with it
    for name, state in stage_tasks.items():
        assert {
            "ErrorEquals": [
                "DatabaseTransientError",
                "DatabaseUnreachableError",
                "AwsTransientError",
                "LakeCommitError",
            ],
            "IntervalSeconds": 3,
            "BackoffRate": 2,
            "MaxAttempts": 4,
            "MaxDelaySeconds": 20,
            "JitterStrategy": "FULL",
        } in state["Retry"], name
        # And a permanent error (a refused login, a schema problem) is not retried
        retried = {error for retry in state["Retry"] for error in retry["ErrorEquals"]}
        assert retried.isdisjoint({"AuthenticationFailedError", "States.ALL", "States.TaskFailed"})


def test_a_watermark_conflict_is_retried_twice_by_ingest(stages):
    # Given the ingest task, When another execution advanced the watermark first
    retries = stages["IngestTables"]["ItemProcessor"]["States"]["IngestTable"]["Retry"]

    # Then the task retries twice (re-reading the watermark) before failing the run
    (conflict,) = [retry for retry in retries if retry["ErrorEquals"] == ["WatermarkConflictError"]]
    assert conflict["MaxAttempts"] == 2


def test_any_failure_is_described_notified_then_fails_the_execution_with_its_error(
    platform, definition
):
    # Given the Catch around the whole run
    states = definition["States"]
    (catch,) = states["RunPipeline"]["Catch"]

    # Then every error goes to DescribeFailure, with the error kept under $.failure
    assert catch == {
        "ErrorEquals": ["States.ALL"],
        "ResultPath": "$.failure",
        "Next": "DescribeFailure",
    }
    # And DescribeFailure is given the execution, the run id, the error and its cause
    describe = states["DescribeFailure"]
    assert describe["Resource"] == f"<{logical_id(platform.stack.functions.describe_failure)}.Arn>"
    assert describe["Parameters"] == {
        "execution_arn.$": "$$.Execution.Id",
        "execution_name.$": "$$.Execution.Name",
        "state_machine.$": "$$.StateMachine.Name",
        "started.$": "$$.Execution.StartTime",
        "run_id.$": "States.Format('{}-{}', $$.Execution.StartTime, $$.Execution.Name)",
        "failure.$": "$.failure",
    }
    assert (describe["ResultPath"], describe["Next"]) == ("$.notice", "NotifyFailure")
    # And should it fail, the error's name and the execution are mailed instead
    assert [(c["ErrorEquals"], c["Next"]) for c in describe["Catch"]] == [
        (["States.ALL"], "UseRawFailure")
    ]
    raw = states["UseRawFailure"]
    assert raw["Parameters"]["failure.$"] == "$.failure"
    message = raw["Parameters"]["notice"]["message.$"]
    for path in ("$$.Execution.Name", "$.failure.Error", "$$.Execution.Id"):
        assert path in message
    # (never the record: its cause holds a stack trace and may quote row values)
    assert "$.failure.Cause" not in message
    assert "JsonToString" not in message
    assert raw["Next"] == "NotifyFailure"
    # And NotifyFailure publishes the described subject and body to the alert topic
    notify = states["NotifyFailure"]
    assert notify["Resource"] == "arn:<AWS::Partition>:states:::sns:publish"
    assert notify["Parameters"]["TopicArn"] == f"<{logical_id(platform.stack.alerts.topic)}>"
    assert notify["Parameters"]["Subject.$"] == "$.notice.subject"
    assert notify["Parameters"]["Message.$"] == "$.notice.message"
    # And keeps the failure in the state for the Fail state that follows
    assert notify["ResultPath"] is None
    assert notify["Next"] == "PipelineFailed"
    # And even when the notification itself fails, the execution still ends there
    assert [catch["Next"] for catch in notify["Catch"]] == ["PipelineFailed"]
    assert notify["Catch"][0]["ResultPath"] != "$.failure"
    # And the execution fails with the original error and cause, not a generic one
    failed = states["PipelineFailed"]
    assert failed["Type"] == "Fail"
    assert (failed["ErrorPath"], failed["CausePath"]) == ("$.failure.Error", "$.failure.Cause")


@pytest.mark.parametrize(
    ("task", "item_key"),
    [
        ("IngestTable", "table"),
        ("TransformTable", "target"),
        ("LoadDimension", "target"),
        ("LoadFact", "target"),
        ("CheckProgress", None),
        ("MaintainLake", None),
    ],
)
def test_a_task_that_fails_for_good_names_itself_and_its_table_in_the_cause(
    definition, task, item_key
):
    # Given a pipeline task, once its retries are spent
    states = dict(_all_states(definition["States"]))
    (catch,) = states[task]["Catch"]
    assert catch == {
        "ErrorEquals": ["States.ALL"],
        "ResultPath": "$.failure",
        "Next": f"{task}Failed",
    }
    # Then a state of its own records the task's name, its table, its error and cause
    named = states[f"{task}Failed"]
    expected = {
        "state": task,
        "error.$": "$.failure.Error",
        "cause.$": "$.failure.Cause",
    }
    if item_key:
        expected["item.$"] = f"$.{item_key}"
    assert named["Parameters"] == expected
    # And the branch fails with the task's own error and that record as the cause
    stopped = states[named["Next"]]
    assert stopped["Type"] == "Fail"
    assert (stopped["ErrorPath"], stopped["CausePath"]) == ("$.error", "States.JsonToString($)")
    # And the record is the document DescribeFailure reads
    record = {key.removesuffix(".$"): value for key, value in expected.items()}
    assert set(record) <= set(FailedState.model_fields)


def test_the_execution_output_is_a_small_summary_of_counts(definition, stages):
    # Given the last stage, Then it keeps the run id, the passes, the counts per table
    # over every pass, whether the run caught up, what remains, the rows rejected and
    # what the stages found
    summary = stages["Summarise"]["Parameters"]
    assert summary == {
        "run_id.$": "$.run_id",
        "passes.$": "$.passes",
        "caught_up.$": "$.caught_up",
        "verdict.$": "$.verdict",
        "tables.$": "$.tables",
        "remaining.$": "$.remaining",
        "backlog_rows.$": "$.backlog_rows",
        "files_remaining.$": "$.files_remaining",
        "files_waiting.$": "$.files_waiting",
        "rows_rejected.$": "$.rows_rejected",
        "findings.$": "$.findings",
        "lake.$": "$.lake",
    }
    # And that summary (the one branch's output) is what the execution returns
    assert definition["States"]["RunPipeline"]["OutputPath"] == "$[0]"


def test_the_state_machine_may_invoke_only_the_pipeline_functions(platform, template):
    # Given the state machine's role
    allowed = allowed_actions(role_statements(template, platform.stack.workflow.state_machine.role))

    # Then it invokes the pipeline's functions through their live aliases (the failure's
    # describer, which has none, and its versions), nothing else
    functions = platform.stack.functions
    expected = set()
    for function in functions.by_stage.values():
        live = functions.live(function)
        if live is function:
            expected |= {f"<{logical_id(function)}.Arn>", f"<{logical_id(function)}.Arn>:*"}
        else:
            expected |= {f"<{logical_id(live)}>"}
    assert allowed["lambda:InvokeFunction"] == expected
    assert any(functions.live(f) is f for f in functions.by_stage.values())
    # And publishes only to the alert topic, with its key
    assert allowed["sns:Publish"] == {f"<{logical_id(platform.stack.alerts.topic)}>"}
    assert allowed["kms:GenerateDataKey"] == {f"<{logical_id(platform.stack.alerts.key)}.Arn>"}


def test_the_state_machine_role_has_no_wildcard_action_and_nothing_unscoped_but_delivery(
    platform, template
):
    # Given the state machine's role
    allowed = allowed_actions(role_statements(template, platform.stack.workflow.state_machine.role))

    # Then no action is a wildcard
    assert not [action for action in allowed if "*" in action]
    # And only X-Ray tracing and log delivery, which support no resource-level permissions,
    # apply to every resource
    unscoped = {action for action, resources in allowed.items() if "*" in resources}
    assert unscoped
    log_delivery = {
        "logs:CreateLogDelivery",
        "logs:GetLogDelivery",
        "logs:UpdateLogDelivery",
        "logs:DeleteLogDelivery",
        "logs:ListLogDeliveries",
        "logs:PutResourcePolicy",
        "logs:DescribeResourcePolicies",
        "logs:DescribeLogGroups",
    }
    assert {a for a in unscoped if not a.startswith("xray:")} <= log_delivery
