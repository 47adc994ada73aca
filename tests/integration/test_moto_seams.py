"""moto as the local AWS service's patches assume it: each test shows the unpatched behaviour
that one patch of ``totes_local.runtime.moto_patches`` replaces, so a moto release that
changes it fails here, loudly, before the service behaves differently."""

from __future__ import annotations

import inspect
import io
import json
import time
import zipfile
from datetime import UTC, datetime, timedelta
from typing import Any

import boto3
import pytest

from totes_local.runtime import moto_patches
from totes_local.runtime.emf import MetricDatum

REGION = "eu-west-2"
ROLE = "arn:aws:iam::123456789012:role/local"


def _code() -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("handler.py", "def handler(event, context):\n    raise RuntimeError\n")
    return buffer.getvalue()


def _run(definition: dict[str, Any]) -> tuple[Any, str]:
    sfn = boto3.client("stepfunctions", region_name=REGION)
    machine = sfn.create_state_machine(
        name="seam", definition=json.dumps(definition), roleArn=ROLE
    )["stateMachineArn"]
    arn = sfn.start_execution(stateMachineArn=machine, input="{}")["executionArn"]
    for _ in range(200):
        if sfn.describe_execution(executionArn=arn)["status"] != "RUNNING":
            break
        time.sleep(0.05)
    return sfn, arn


def test_the_supported_moto_release_is_installed() -> None:
    moto_patches.check_moto_version()


def test_moto_without_docker_echoes_an_invoke_instead_of_running_the_code(moto: None) -> None:
    # Given a function whose code would raise
    lambda_ = boto3.client("lambda", region_name=REGION)
    lambda_.create_function(
        FunctionName="echo",
        Runtime="python3.12",
        Role=ROLE,
        Handler="handler.handler",
        Code={"ZipFile": _code()},
    )
    # When it is invoked
    response = lambda_.invoke(FunctionName="echo", Payload=b'{"table": "staff"}')
    # Then moto echoes the payload: the lambda-invoke patch is what runs the code
    assert "FunctionError" not in response
    assert json.loads(response["Payload"].read()) == {"table": "staff"}


def test_moto_hands_the_execution_start_time_over_as_a_datetime(moto: None) -> None:
    # Given a state that formats $$.Execution.StartTime, as the run id does
    definition = {
        "StartAt": "Format",
        "States": {
            "Format": {
                "Type": "Pass",
                "Parameters": {"started.$": "States.Format('{}', $$.Execution.StartTime)"},
                "End": True,
            }
        },
    }
    # When it runs in moto's interpreter without the patch
    sfn, arn = _run(definition)
    # Then it fails as the execution-start-time patch says: a datetime is not JSON text
    description = sfn.describe_execution(executionArn=arn)
    assert description["status"] == "FAILED"
    assert "datetime" in description.get("cause", "")


def test_moto_returns_the_whole_history_at_once_and_no_page_token(moto: None) -> None:
    # Given a finished execution with several events
    definition = {
        "StartAt": "A",
        "States": {"A": {"Type": "Pass", "Next": "B"}, "B": {"Type": "Pass", "End": True}},
    }
    sfn, arn = _run(definition)
    # When one event per page is asked for
    page = sfn.get_execution_history(executionArn=arn, maxResults=1)
    # Then moto answers every event and no token: the history-pages patch pages it
    assert len(page["events"]) > 1
    assert "nextToken" not in page


def test_moto_copies_every_recorded_event_for_each_history_request() -> None:
    from moto.stepfunctions.parser.asl.eval.event.event_manager import (  # noqa: PLC0415
        EventManager,
    )

    # The history-pages patch cuts the page from this list before copying anything
    source = inspect.getsource(EventManager.get_event_history)
    assert "copy.deepcopy(self._history_event_list)" in source
    assert "self._mutex" in source


def test_moto_finds_the_backend_of_every_request_by_listing_its_package() -> None:
    from moto.moto_server.werkzeug_app import DomainDispatcherApplication  # noqa: PLC0415

    # The host-backends patch remembers what this method finds for each host
    source = inspect.getsource(DomainDispatcherApplication.get_backend_for_host)
    assert "list_of_moto_modules()" in source
    assert "backend_url_patterns" in source


def test_moto_parses_a_json_path_anew_each_time_it_evaluates_one() -> None:
    from moto.stepfunctions.parser.asl.utils import json_path  # noqa: PLC0415

    # The parsed-json-paths patch keeps each path's parse, which this builds every time
    assert json_path.parse("$.tables.source") is not json_path.parse("$.tables.source")
    assert json_path.parse("$.tables.source") == json_path.parse("$.tables.source")


@pytest.mark.parametrize("token", ["not-a-token", "eyJvZmZzZXQiOiAtMX0="])
def test_a_page_token_the_service_did_not_make_is_refused(token: str) -> None:
    with pytest.raises(ValueError, match="not a history page token"):
        moto_patches.page_offset(token)


def test_moto_invokes_a_task_function_through_a_new_lambda_client_over_http(moto: None) -> None:
    from moto.stepfunctions.parser.asl.component.state.exec.state_task import (  # noqa: PLC0415
        lambda_eval_utils,
    )

    # The lambda-invoke-in-process patch replaces exactly this function, which makes a
    # client for every invoke and calls the Lambda API with it
    first = lambda_eval_utils.boto_client_for(REGION, "lambda")  # type: ignore[attr-defined]
    second = lambda_eval_utils.boto_client_for(REGION, "lambda")  # type: ignore[attr-defined]
    assert first is not second
    invoke = inspect.getsource(lambda_eval_utils._invoke_lambda_function)
    assert "boto_client_for" in invoke
    assert "lambda_client.invoke(**parameters)" in invoke
    # and every Lambda task, of either resource form, goes through it
    integration = inspect.getsource(lambda_eval_utils.execute_lambda_function_integration)
    assert "_invoke_lambda_function(" in integration


def test_moto_names_a_lambda_api_error_of_a_function_arn_task_plain_exception() -> None:
    from moto.stepfunctions.parser.asl.component.state.exec.state_task.state_task_lambda import (  # noqa: PLC0415
        StateTaskLambda,
    )

    # The lambda-invoke-in-process patch names such an error Lambda.<code>, as AWS does and
    # as moto's own lambda:invoke integration does; moto's function-ARN task says Exception
    source = inspect.getsource(StateTaskLambda._from_error)
    assert 'error = "Exception"' in source
    assert "isinstance(ex, ClientError)" in source


def test_moto_places_a_task_result_with_a_json_path_parsed_anew_each_time() -> None:
    from moto.stepfunctions.parser.asl.component.common.path import (  # noqa: PLC0415
        result_path,
    )

    # The parsed-json-paths patch keeps this parse too
    assert result_path.parse("$.ingested") is not result_path.parse("$.ingested")
    assert "parse(self.result_path_src)" in inspect.getsource(result_path.ResultPath._eval_body)


def test_moto_parses_the_definition_at_the_start_of_every_execution() -> None:
    from moto.stepfunctions.parser.backend.execution_worker import (  # noqa: PLC0415
        ExecutionWorker,
    )

    # The parsed-definitions patch replaces this method, which parses anew each time
    source = inspect.getsource(ExecutionWorker._get_evaluation_entrypoint)
    assert "AmazonStateLanguageParser.parse" in source
    assert "_get_evaluation_entrypoint()" in inspect.getsource(ExecutionWorker)


def test_moto_parses_a_definition_to_validate_it_on_create_and_throws_the_parse_away(
    moto: None,
) -> None:
    from moto.stepfunctions.parser.models import StepFunctionsParserBackend  # noqa: PLC0415

    # The parsed-definitions patch keeps the parse this validation makes
    sfn = boto3.client("stepfunctions", region_name=REGION)
    broken = {"StartAt": "Here", "States": {"Here": {"Type": "Wander", "End": True}}}
    with pytest.raises(sfn.exceptions.InvalidDefinition):
        sfn.create_state_machine(name="broken", definition=json.dumps(broken), roleArn=ROLE)
    validate = inspect.getsource(StepFunctionsParserBackend._validate_definition)
    assert "AmazonStateLanguageParser.parse(definition)" in validate
    assert "return" not in validate


def test_metric_values_put_in_process_are_what_cloudwatch_answers(moto: None) -> None:
    # Given one EMF value put straight into moto's CloudWatch backend
    now = datetime.now(UTC)
    put = moto_patches.metric_sink("123456789012", REGION)
    put([MetricDatum("Totes/Test", "RowsLoaded", 7.0, "Count", {"table": "dim_staff"}, now)])

    # When the CloudWatch API is asked for it, over the minute around it
    points = boto3.client("cloudwatch", region_name=REGION).get_metric_statistics(
        Namespace="Totes/Test",
        MetricName="RowsLoaded",
        Dimensions=[{"Name": "table", "Value": "dim_staff"}],
        StartTime=now - timedelta(seconds=30),
        EndTime=now + timedelta(seconds=30),
        Period=60,
        Statistics=["Sum"],
    )["Datapoints"]

    # Then it answers the value with its unit
    assert [(point["Sum"], point["Unit"]) for point in points] == [(7.0, "Count")]


def test_moto_lists_a_folder_whose_every_key_is_deleted_in_a_versioned_bucket(
    moto: None,
) -> None:
    # Given a versioned bucket with two folders, the one's only key deleted
    s3 = boto3.client("s3", region_name=REGION)
    s3.create_bucket(Bucket="seam", CreateBucketConfiguration={"LocationConstraint": REGION})
    s3.put_bucket_versioning(Bucket="seam", VersioningConfiguration={"Status": "Enabled"})
    for key in ("t/old/x.parquet", "t/new/x.parquet"):
        s3.put_object(Bucket="seam", Key=key, Body=b"x")
    s3.delete_object(Bucket="seam", Key="t/old/x.parquet")

    # When its folders are listed
    listed = s3.list_objects_v2(Bucket="seam", Prefix="t/", Delimiter="/")

    # Then moto still shows the emptied folder (S3 would not): the service drops it
    assert [folder["Prefix"] for folder in listed["CommonPrefixes"]] == ["t/new/", "t/old/"]


def test_moto_lets_an_update_made_from_an_older_glue_table_version_replace_a_newer_one(
    moto: None,
) -> None:
    # Given a Glue table updated once since a writer read its version
    glue = boto3.client("glue", region_name=REGION)
    glue.create_database(DatabaseInput={"Name": "seam"})
    glue.create_table(DatabaseName="seam", TableInput={"Name": "t", "Parameters": {"v": "1"}})
    read = glue.get_table(DatabaseName="seam", Name="t")["Table"]["VersionId"]
    glue.update_table(
        DatabaseName="seam", TableInput={"Name": "t", "Parameters": {"v": "2"}}, VersionId=read
    )

    # When that writer updates the table from the version it read
    glue.update_table(
        DatabaseName="seam", TableInput={"Name": "t", "Parameters": {"v": "3"}}, VersionId=read
    )

    # Then moto takes it (Glue refuses it): the service checks the version
    assert glue.get_table(DatabaseName="seam", Name="t")["Table"]["Parameters"] == {"v": "3"}
