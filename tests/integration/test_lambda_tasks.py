"""A Lambda task of the local service, invoked in process: each answer of the Lambda service
reaches the state machine as it would on AWS (a result, a function error, an unknown
function, a failure of the service itself, a response too large)."""

from __future__ import annotations

import io
import json
import time
import zipfile
from collections.abc import Callable
from typing import Any

import boto3
import pytest

from totes_local.runtime import moto_patches
from totes_local.runtime.lambda_workers import FunctionRevision, WorkerPoolClosedError

REGION = "eu-west-2"
ROLE = "arn:aws:iam::123456789012:role/local"
Dispatch = Callable[[FunctionRevision, bytes, dict[str, str]], bytes]


@pytest.fixture
def lambda_tasks(moto: None, monkeypatch: pytest.MonkeyPatch) -> Callable[[Dispatch], None]:
    """moto with the service's two invoke patches, each undone after the test."""
    from moto.awslambda_simple.models import LambdaSimpleBackend  # noqa: PLC0415
    from moto.stepfunctions.parser.asl.component.state.exec.state_task import (  # noqa: PLC0415
        lambda_eval_utils,
    )
    from moto.stepfunctions.parser.asl.component.state.exec.state_task.state_task_lambda import (  # noqa: PLC0415
        StateTaskLambda,
    )

    # Set to what they are, so that monkeypatch puts them back afterwards.
    monkeypatch.setattr(LambdaSimpleBackend, "invoke", LambdaSimpleBackend.invoke)
    monkeypatch.setattr(
        lambda_eval_utils, "_invoke_lambda_function", lambda_eval_utils._invoke_lambda_function
    )
    monkeypatch.setattr(StateTaskLambda, "_from_error", StateTaskLambda._from_error)

    def install(dispatch: Dispatch) -> None:
        moto_patches._patch_lambda_invoke(dispatch)
        moto_patches._patch_lambda_invoke_in_process()
        moto_patches._patch_lambda_task_errors()

    return install


def _function() -> str:
    archive = io.BytesIO()
    with zipfile.ZipFile(archive, "w") as code:
        code.writestr("handler.py", "def handler(event, context):\n    return event\n")
    return str(
        boto3.client("lambda", region_name=REGION).create_function(
            FunctionName="work",
            Runtime="python3.12",
            Role=ROLE,
            Handler="handler.handler",
            Code={"ZipFile": archive.getvalue()},
        )["FunctionArn"]
    )


def _run_task(resource: str, **task: Any) -> dict[str, Any]:
    """Run a one-task state machine on ``{"table": "staff"}``; its description when it ends."""
    definition = {
        "StartAt": "Work",
        "States": {"Work": {"Type": "Task", "Resource": resource, "End": True, **task}},
    }
    sfn = boto3.client("stepfunctions", region_name=REGION)
    machine = sfn.create_state_machine(
        name="task", definition=json.dumps(definition), roleArn=ROLE
    )["stateMachineArn"]
    arn = sfn.start_execution(stateMachineArn=machine, input='{"table": "staff"}')["executionArn"]
    deadline = time.monotonic() + 30
    while (described := sfn.describe_execution(executionArn=arn))["status"] == "RUNNING":
        assert time.monotonic() < deadline, "the execution did not end"
        time.sleep(0.02)
    return dict(described)


def test_a_task_gets_the_function_payload_and_the_function_its_input(
    lambda_tasks: Callable[[Dispatch], None],
) -> None:
    # Given a function that answers with the table it was given and a row count
    received: list[tuple[str, bytes]] = []

    def answer(function: FunctionRevision, payload: bytes, headers: dict[str, str]) -> bytes:
        received.append((function.name, payload))
        return json.dumps({**json.loads(payload), "rows": 3}).encode()

    lambda_tasks(answer)
    arn = _function()
    # When a task invokes it
    described = _run_task(arn)
    # Then the function ran once on the state's input and its answer is the task's output
    assert received == [("work", b'{"table": "staff"}')]
    assert described["status"] == "SUCCEEDED"
    assert json.loads(described["output"]) == {"table": "staff", "rows": 3}


def test_a_function_error_fails_the_task_with_the_functions_error_type(
    lambda_tasks: Callable[[Dispatch], None],
) -> None:
    # Given a function whose handler raised, as the Lambda service reports it
    def raised(function: FunctionRevision, payload: bytes, headers: dict[str, str]) -> bytes:
        headers["x-amz-function-error"] = "Unhandled"
        return json.dumps({"errorType": "WatermarkConflictError", "errorMessage": "moved"}).encode()

    lambda_tasks(raised)
    # When a task invokes it
    described = _run_task(_function())
    # Then the execution fails with the handler's error type and its message in the cause
    assert (described["status"], described["error"]) == ("FAILED", "WatermarkConflictError")
    assert json.loads(described["cause"])["errorMessage"] == "moved"


def test_an_unknown_function_fails_the_task_as_the_lambda_service_names_it(
    lambda_tasks: Callable[[Dispatch], None],
) -> None:
    # Given no function of that name
    lambda_tasks(lambda function, payload, headers: payload)
    missing = _function().replace(":function:work", ":function:no-such-function")
    # When a task invokes it
    described = _run_task(missing)
    # Then the error is the Lambda API's, named as Step Functions names it
    assert (described["status"], described["error"]) == (
        "FAILED",
        "Lambda.ResourceNotFoundException",
    )
    assert "no-such-function" in described["cause"]


def test_a_failure_of_the_local_lambda_service_reads_as_a_lambda_service_exception(
    lambda_tasks: Callable[[Dispatch], None],
) -> None:
    # Given a service that cannot run the function (it is shutting down, say)
    def broken(function: FunctionRevision, payload: bytes, headers: dict[str, str]) -> bytes:
        raise WorkerPoolClosedError("the local Lambda service is shutting down")

    lambda_tasks(broken)
    # When a task invokes it
    described = _run_task(_function())
    # Then the error is the one the state machine retries for Lambda's own failures
    assert (described["status"], described["error"]) == ("FAILED", "Lambda.ServiceException")
    assert "shutting down" in described["cause"]


def test_a_response_larger_than_lambda_returns_fails_the_task(
    lambda_tasks: Callable[[Dispatch], None],
) -> None:
    # Given a function whose answer exceeds the synchronous response limit
    lambda_tasks(lambda function, payload, headers: b'"' + b"x" * 6_300_000 + b'"')
    # When a task invokes it
    described = _run_task(_function())
    # Then the task fails as Lambda reports an oversized response
    assert (described["status"], described["error"]) == (
        "FAILED",
        "Function.ResponseSizeTooLarge",
    )


def test_a_task_retried_on_lambda_service_errors_gets_past_a_failed_service(
    lambda_tasks: Callable[[Dispatch], None],
) -> None:
    # Given a service that fails the first invoke and answers the second
    calls: list[bytes] = []

    def flaky(function: FunctionRevision, payload: bytes, headers: dict[str, str]) -> bytes:
        calls.append(payload)
        if len(calls) == 1:
            raise WorkerPoolClosedError("the local Lambda service is restarting")
        return b'{"rows": 1}'

    lambda_tasks(flaky)
    # When a task that retries Lambda's service errors, as the pipeline's do, invokes it
    retry = [{"ErrorEquals": ["Lambda.ServiceException"], "IntervalSeconds": 1, "MaxAttempts": 2}]
    described = _run_task(_function(), Retry=retry)
    # Then the retry applies and the task succeeds with the second answer
    assert len(calls) == 2
    assert (described["status"], json.loads(described["output"])) == ("SUCCEEDED", {"rows": 1})


def test_the_lambda_invoke_integration_gets_the_whole_invoke_response(
    lambda_tasks: Callable[[Dispatch], None],
) -> None:
    # Given a function that answers
    lambda_tasks(lambda function, payload, headers: b'{"rows": 2}')
    # When a task invokes it through arn:aws:states:::lambda:invoke
    described = _run_task(
        "arn:aws:states:::lambda:invoke",
        Parameters={"FunctionName": _function(), "Payload.$": "$"},
    )
    # Then its output is the Invoke API's response: status, version and the payload
    output = json.loads(described["output"])
    assert described["status"] == "SUCCEEDED"
    assert (output["StatusCode"], output["ExecutedVersion"]) == (200, "$LATEST")
    assert output["Payload"] == {"rows": 2}
