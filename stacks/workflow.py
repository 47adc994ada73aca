"""The Express state machine: passes of the pipeline while work remains and time allows.

The execution graph reads as the story of a run::

    RunPipeline (Parallel, so that one Catch covers every stage)
        Plan -> IngestTables -> TransformTables -> LoadDimensions -> LoadFacts
             -> CheckProgress -> MoreToCatchUp?
                  yes: StartNextPass -> IngestTables (the loop, for the tables with work left)
                  no:  MaintainLake -> Summarise
    -> Succeeded
    any error -> DescribeFailure -> NotifyFailure (SNS) -> PipelineFailed

Each stage takes a bounded bite per table. ``CheckProgress`` adds the pass's counts
to the execution's totals and decides: another pass if work remains and the pass
just done would fit again in the catch-up budget; otherwise the execution ends,
caught up or saying what remains, and the next schedule tick continues. The loads
write the lake's Iceberg tables as they go; ``MaintainLake``, last, compacts those that
enough commits have made due.

A task that fails for good (its retries spent) goes to a ``<Task>Failed`` state
that names the task and the table it was working on, then fails with the task's own
error: the execution's cause says which state failed, for which table, and why.
``DescribeFailure`` turns that into the email the alert topic sends.

The state carries the run id, the table lists, the totals per table, what the
stages found (rejected rows by cause, schema drift, ...) and each handler's small
result dict (keys and counts, never rows), far below the 256 KB payload limit.
"""

from __future__ import annotations

from collections.abc import Sequence

from aws_cdk import Acknowledgment, Duration, Stack, Validations
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_stepfunctions as sfn
from aws_cdk import aws_stepfunctions_tasks as tasks
from constructs import Construct

from stacks.alerts import AlertTopic
from stacks.functions import PipelineFunctions
from stacks.log_groups import operational_log_group
from totes.names import (
    TRANSFORM_STATE_CONFLICT_ERROR,
    TRANSIENT_ERRORS,
    TRANSIENT_RETRY_ATTEMPTS,
    TRANSIENT_RETRY_BACKOFF_RATE,
    TRANSIENT_RETRY_FIRST_INTERVAL_SECONDS,
    TRANSIENT_RETRY_MAX_DELAY_SECONDS,
    WATERMARK_CONFLICT_ERROR,
)
from totes.tables import (
    FACT_TABLES,
    GOLD_DIMENSIONS,
    GOLD_TABLES,
    SOURCE_TABLES,
    largest_first,
)

#: Errors of the Lambda service itself (not of the handler), worth a retry.
LAMBDA_SERVICE_ERRORS: tuple[str, ...] = (
    "Lambda.ServiceException",
    "Lambda.AWSLambdaException",
    "Lambda.SdkClientException",
    "Lambda.TooManyRequestsException",
)

#: An Express execution cannot run longer.
EXPRESS_EXECUTION_LIMIT = Duration.minutes(5)

#: The run id: the execution's start time and name, so run folders sort by time.
RUN_ID = sfn.JsonPath.format(
    "{}-{}",
    sfn.JsonPath.string_at("$$.Execution.StartTime"),
    sfn.JsonPath.string_at("$$.Execution.Name"),
)
#: Where a caught task failure lands in the state, and where a Map item's table is.
_FAILURE_PATH = "$.failure"


class PipelineWorkflow(Construct):
    """The Express state machine, its log group and its failure notification.

    Parameters
    ----------
    scope : constructs.Construct
        Parent construct.
    construct_id : str
        Id of this construct within ``scope``.
    functions : PipelineFunctions
        The ingest, transform and load functions the tasks invoke.
    alerts : AlertTopic
        Where a failed execution is reported.
    ingest_max_concurrency : int
        Source tables extracted at once: the load the pipeline puts on the
        operational database.
    log_retention_days : int
        Days the execution logs are kept.

    Attributes
    ----------
    state_machine : aws_cdk.aws_stepfunctions.StateMachine
        The Express state machine.
    log_group : aws_cdk.aws_logs.LogGroup
        ``/aws/vendedlogs/states/<stack>-pipeline``: every state transition,
        with its input and output.
    """

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        functions: PipelineFunctions,
        alerts: AlertTopic,
        ingest_max_concurrency: int,
        log_retention_days: int,
    ) -> None:
        super().__init__(scope, construct_id)
        stack_name = Stack.of(self).stack_name

        plan = sfn.Pass(
            self,
            "Plan",
            comment=(
                "Names this run after its start time and execution (so run folders sort by "
                "time) and lists the tables of each stage for the first pass"
            ),
            parameters={
                "run_id": RUN_ID,
                "passes": 0,
                "pass_started": sfn.JsonPath.string_at("$$.State.EnteredTime"),
                "longest_pass_seconds": 0,  # nosec B105 (a duration, not a password)
                # Each Map starts its largest tables first (see largest_first).
                "visiting": {
                    "source": largest_first(SOURCE_TABLES),
                    "warehouse": largest_first(GOLD_TABLES),
                    "dimensions": largest_first(GOLD_DIMENSIONS),
                    "facts": largest_first(FACT_TABLES),
                },
                "tables": {},
                "findings": [],
            },
        )
        ingest_tables = self._map(
            "IngestTables",
            comment="Extracts the next batch of each source table into the raw zone",
            items_path="$.visiting.source",
            item_key="table",
            result_path="$.ingested",
            # Every concurrent item holds a connection to the operational database.
            max_concurrency=ingest_max_concurrency,
            task=self._invoke(
                "IngestTable",
                functions.live(functions.ingest),
                item_key="table",
                also_retry=[WATERMARK_CONFLICT_ERROR],
            ),
        )
        transform_tables = self._map(
            "TransformTables",
            comment="Builds the mirror and gold zones from the oldest raw batches, one "
            "warehouse table per item",
            items_path="$.visiting.warehouse",
            item_key="target",
            result_path="$.transformed",
            task=self._invoke(
                "TransformTable",
                functions.live(functions.transform),
                item_key="target",
                also_retry=[TRANSFORM_STATE_CONFLICT_ERROR],
            ),
        )
        # Dimensions before facts: fact rows reference dimension keys.
        load_dimensions = self._map(
            "LoadDimensions",
            comment="Upserts the pending files of every dimension into the warehouse "
            "(dim_date grows with the facts that reference its dates)",
            items_path="$.visiting.dimensions",
            item_key="target",
            result_path="$.dimensions_loaded",
            task=self._invoke("LoadDimension", functions.live(functions.load), item_key="target"),
        )
        load_facts = self._map(
            "LoadFacts",
            comment="Appends the new fact versions to the warehouse",
            items_path="$.visiting.facts",
            item_key="target",
            result_path="$.facts_loaded",
            task=self._invoke("LoadFact", functions.live(functions.load), item_key="target"),
        )
        check_progress = tasks.LambdaInvoke(
            self,
            "CheckProgress",
            comment="Adds this pass to the totals, says what remains and whether another "
            "pass fits in the catch-up budget",
            lambda_function=functions.live(functions.progress),
            payload=sfn.TaskInput.from_object(
                {
                    "run_id": sfn.JsonPath.string_at("$.run_id"),
                    "passes": sfn.JsonPath.number_at("$.passes"),
                    "execution_started": sfn.JsonPath.string_at("$$.Execution.StartTime"),
                    "pass_started": sfn.JsonPath.string_at("$.pass_started"),
                    "longest_pass_seconds": sfn.JsonPath.number_at("$.longest_pass_seconds"),
                    "visiting": sfn.JsonPath.object_at("$.visiting"),
                    "tables": sfn.JsonPath.object_at("$.tables"),
                    "findings": sfn.JsonPath.list_at("$.findings"),
                    "ingested": sfn.JsonPath.list_at("$.ingested"),
                    "transformed": sfn.JsonPath.list_at("$.transformed"),
                    "dimensions_loaded": sfn.JsonPath.list_at("$.dimensions_loaded"),
                    "facts_loaded": sfn.JsonPath.list_at("$.facts_loaded"),
                }
            ),
            payload_response_only=True,
            retry_on_service_exceptions=False,
            # The progress replaces the state: the stage results are in its totals now.
            result_path="$",
        )
        self._retry_service_errors(check_progress)
        check_progress_failed = self._failed("CheckProgress")
        check_progress.add_catch(
            check_progress_failed, errors=[sfn.Errors.ALL], result_path=_FAILURE_PATH
        )
        start_next_pass = sfn.Pass(
            self,
            "StartNextPass",
            comment="Loops back for the tables with work left, keeping the totals",
            parameters={
                "run_id": sfn.JsonPath.string_at("$.run_id"),
                "passes": sfn.JsonPath.number_at("$.passes"),
                "pass_started": sfn.JsonPath.string_at("$$.State.EnteredTime"),
                "longest_pass_seconds": sfn.JsonPath.number_at("$.longest_pass_seconds"),
                "visiting": sfn.JsonPath.object_at("$.visiting"),
                "tables": sfn.JsonPath.object_at("$.tables"),
                "findings": sfn.JsonPath.list_at("$.findings"),
            },
        )
        summarise = sfn.Pass(
            self,
            "Summarise",
            comment="The execution's output: rows per table and stage over every pass, "
            "whether it caught up, what remains, and what needs attention",
            parameters={
                "run_id": sfn.JsonPath.string_at("$.run_id"),
                "passes": sfn.JsonPath.number_at("$.passes"),
                "caught_up": sfn.JsonPath.string_at("$.caught_up"),
                "verdict": sfn.JsonPath.string_at("$.verdict"),
                "tables": sfn.JsonPath.object_at("$.tables"),
                "remaining": sfn.JsonPath.object_at("$.remaining"),
                "backlog_rows": sfn.JsonPath.number_at("$.backlog_rows"),
                "files_remaining": sfn.JsonPath.number_at("$.files_remaining"),
                "files_waiting": sfn.JsonPath.number_at("$.files_waiting"),
                "rows_rejected": sfn.JsonPath.number_at("$.rows_rejected"),
                "findings": sfn.JsonPath.list_at("$.findings"),
                "lake": sfn.JsonPath.object_at("$.lake"),
            },
        )
        maintain_lake = tasks.LambdaInvoke(
            self,
            "MaintainLake",
            comment="Compacts the small files of the lake's Iceberg tables that enough commits "
            "have made due, expires their old snapshots, deletes files nothing references",
            lambda_function=functions.live(functions.lake_maintenance),
            payload=sfn.TaskInput.from_object({"run_id": sfn.JsonPath.string_at("$.run_id")}),
            payload_response_only=True,
            retry_on_service_exceptions=False,
            result_path="$.lake",
        )
        self._retry_service_errors(maintain_lake)
        maintain_lake.add_catch(
            self._failed("MaintainLake"), errors=[sfn.Errors.ALL], result_path=_FAILURE_PATH
        )
        maintain_lake.next(summarise)
        more_to_catch_up = (
            sfn.Choice(
                self,
                "MoreToCatchUp",
                comment="Another pass while work remains and it fits in the catch-up budget",
            )
            .when(sfn.Condition.boolean_equals("$.next_pass", True), start_next_pass)
            .otherwise(maintain_lake)
        )
        start_next_pass.next(ingest_tables)

        run_pipeline = sfn.Parallel(
            self,
            "RunPipeline",
            comment="One branch: the passes in order, under a single Catch",
            # A Parallel state outputs one element per branch; keep the summary only.
            output_path="$[0]",
        )
        run_pipeline.branch(
            plan.next(ingest_tables)
            .next(transform_tables)
            .next(load_dimensions)
            .next(load_facts)
            .next(check_progress)
            .next(more_to_catch_up)
        )

        pipeline_failed = sfn.Fail(
            self,
            "PipelineFailed",
            comment="Ends the execution with the error that stopped the run",
            error_path="$.failure.Error",
            cause_path="$.failure.Cause",
        )
        notify_failure = tasks.SnsPublish(
            self,
            "NotifyFailure",
            comment="Mails the alert topic which state failed, for which table, and why",
            topic=alerts.topic,
            subject=sfn.JsonPath.string_at("$.notice.subject"),
            message=sfn.TaskInput.from_json_path_at("$.notice.message"),
            # The SNS response is not needed; the failure must reach PipelineFailed intact.
            result_path=sfn.JsonPath.DISCARD,
        )
        notify_failure.add_retry(
            errors=[sfn.Errors.TASKS_FAILED],
            interval=Duration.seconds(1),
            backoff_rate=2,
            max_attempts=2,
        )
        # A notification that cannot be sent must not hide the original failure.
        notify_failure.add_catch(
            pipeline_failed, errors=[sfn.Errors.ALL], result_path="$.notification_error"
        )
        notify_failure.next(pipeline_failed)

        describe_failure = tasks.LambdaInvoke(
            self,
            "DescribeFailure",
            comment="Writes the email: the failed state and table, the error and its "
            "message, the run id and where to look",
            lambda_function=functions.describe_failure,
            payload=sfn.TaskInput.from_object(
                {
                    "execution_arn": sfn.JsonPath.string_at("$$.Execution.Id"),
                    "execution_name": sfn.JsonPath.string_at("$$.Execution.Name"),
                    "state_machine": sfn.JsonPath.string_at("$$.StateMachine.Name"),
                    "started": sfn.JsonPath.string_at("$$.Execution.StartTime"),
                    "run_id": RUN_ID,
                    # Whole, as the Catch recorded it: a cause is not always there.
                    "failure": sfn.JsonPath.object_at("$.failure"),
                }
            ),
            payload_response_only=True,
            retry_on_service_exceptions=False,
            result_path="$.notice",
        )
        self._retry_service_errors(describe_failure)
        # Should the description itself fail, the email still goes, with the raw error.
        raw_notice = sfn.Pass(
            self,
            "UseRawFailure",
            comment=(
                "The email without a description: the error's name and the execution, never "
                "the failure record (its cause holds a stack trace and may quote row values)"
            ),
            parameters={
                "failure": sfn.JsonPath.object_at("$.failure"),
                "notice": {
                    "subject": "totes data platform: a pipeline execution failed",
                    "message": sfn.JsonPath.format(
                        "Execution {} of the totes pipeline failed with {}. Describing the "
                        "failure failed too: the failed state and its message are in the "
                        "execution's history ({}) in the Step Functions console.",
                        sfn.JsonPath.string_at("$$.Execution.Name"),
                        sfn.JsonPath.string_at("$.failure.Error"),
                        sfn.JsonPath.string_at("$$.Execution.Id"),
                    ),
                },
            },
        )
        describe_failure.add_catch(
            raw_notice, errors=[sfn.Errors.ALL], result_path="$.description_error"
        )
        describe_failure.next(notify_failure)
        raw_notice.next(notify_failure)
        run_pipeline.add_catch(describe_failure, errors=[sfn.Errors.ALL], result_path="$.failure")

        definition = run_pipeline.next(sfn.Succeed(self, "Succeeded"))

        self.log_group = operational_log_group(
            self,
            "ExecutionLogs",
            retention_days=log_retention_days,
            # Step Functions delivers logs through CloudWatch vended logs, whose
            # resource policy size limit the /aws/vendedlogs/ prefix avoids.
            log_group_name=f"/aws/vendedlogs/states/{stack_name}-pipeline",
        )
        self.state_machine = sfn.StateMachine(
            self,
            "StateMachine",
            comment="totes pipeline: ingest, transform and load one increment of totesys",
            definition_body=sfn.DefinitionBody.from_chainable(definition),
            state_machine_type=sfn.StateMachineType.EXPRESS,
            timeout=EXPRESS_EXECUTION_LIMIT,
            tracing_enabled=True,
            logs=sfn.LogOptions(
                destination=self.log_group,
                level=sfn.LogLevel.ALL,
                # Payloads hold table names, run ids and counts: nothing secret.
                include_execution_data=True,
            ),
        )
        alerts.grant_publish(self.state_machine)
        self._acknowledge_role_wildcards(functions)

    def _map(
        self,
        construct_id: str,
        *,
        comment: str,
        items_path: str,
        item_key: str,
        result_path: str,
        task: sfn.IChainable,
        max_concurrency: int | None = None,
    ) -> sfn.Map:
        stage = sfn.Map(
            self,
            construct_id,
            comment=comment,
            items_path=items_path,
            # Each item is exactly the handler's event: {<item_key>: <table>, "run_id": ...}.
            item_selector={
                item_key: sfn.JsonPath.string_at("$$.Map.Item.Value"),
                "run_id": sfn.JsonPath.string_at("$.run_id"),
            },
            max_concurrency=max_concurrency,
            result_path=result_path,
        )
        stage.item_processor(task)
        return stage

    def _invoke(
        self,
        construct_id: str,
        function: lambda_.IFunction,
        *,
        item_key: str,
        also_retry: Sequence[str] = (),
    ) -> tasks.LambdaInvoke:
        task = tasks.LambdaInvoke(
            self,
            construct_id,
            lambda_function=function,
            # The result is the handler's return value itself (a small dict),
            # not the Invoke API response wrapped around it.
            payload_response_only=True,
            # Replaced by the explicit retry below: the same errors, fewer attempts,
            # with jitter so that the items of a Map do not retry in lockstep.
            retry_on_service_exceptions=False,
        )
        self._retry_service_errors(task)
        if also_retry:
            task.add_retry(
                errors=list(also_retry),
                interval=Duration.seconds(1),
                backoff_rate=2,
                max_attempts=2,
                jitter_strategy=sfn.JitterType.FULL,
            )
        # A failover, a restart or throttling: the same item again after a few seconds,
        # then longer, with jitter; only a fault that outlasts this fails the execution.
        task.add_retry(
            errors=list(TRANSIENT_ERRORS),
            interval=Duration.seconds(TRANSIENT_RETRY_FIRST_INTERVAL_SECONDS),
            backoff_rate=TRANSIENT_RETRY_BACKOFF_RATE,
            max_attempts=TRANSIENT_RETRY_ATTEMPTS,
            max_delay=Duration.seconds(TRANSIENT_RETRY_MAX_DELAY_SECONDS),
            jitter_strategy=sfn.JitterType.FULL,
        )
        task.add_catch(
            self._failed(construct_id, item_key=item_key),
            errors=[sfn.Errors.ALL],
            result_path=_FAILURE_PATH,
        )
        return task

    def _failed(self, task: str, *, item_key: str | None = None) -> sfn.IChainable:
        """``<task>Failed``: names the task and its table, then fails with the task's error.

        The cause becomes a :class:`totes.failure_notice.FailedState` document (the
        task's own cause inside), which ``DescribeFailure`` reads.
        """
        failed_state: dict[str, object] = {
            "state": task,
            "error": sfn.JsonPath.string_at(f"{_FAILURE_PATH}.Error"),
            "cause": sfn.JsonPath.string_at(f"{_FAILURE_PATH}.Cause"),
        }
        if item_key:
            failed_state["item"] = sfn.JsonPath.string_at(f"$.{item_key}")
        named = sfn.Pass(
            self,
            f"{task}Failed",
            comment=f"Names the failed state ({task}) and its table for the failure email",
            parameters=failed_state,
        )
        return named.next(
            sfn.Fail(
                self,
                f"{task}Stopped",
                comment=f"Fails with {task}'s own error; the cause says where and why",
                error_path="$.error",
                cause_path=sfn.JsonPath.json_to_string(sfn.JsonPath.object_at("$")),
            )
        )

    @staticmethod
    def _retry_service_errors(task: tasks.LambdaInvoke) -> None:
        task.add_retry(
            errors=list(LAMBDA_SERVICE_ERRORS),
            interval=Duration.seconds(2),
            backoff_rate=2,
            max_attempts=3,
            jitter_strategy=sfn.JitterType.FULL,
        )

    def _acknowledge_role_wildcards(self, functions: PipelineFunctions) -> None:
        stack = Stack.of(self)
        acknowledge = Validations.of(self.state_machine).acknowledge
        for function in functions.by_stage.values():
            if functions.live(function) is not function:
                continue  # invoked through its alias, whose ARN is granted as it is
            function_id = stack.get_logical_id(_cfn_function(function))
            acknowledge(
                Acknowledgment(
                    id=f"AwsSolutions-IAM5[Resource::<{function_id}.Arn>:*]",
                    reason=(
                        "Granted by the LambdaInvoke task: the ':*' suffix covers the versions "
                        "and aliases of this one function, no other function."
                    ),
                )
            )
        acknowledge(
            Acknowledgment(
                id="AwsSolutions-IAM5[Resource::*]",
                reason=(
                    "X-Ray tracing (xray:PutTraceSegments, ...) and log delivery to CloudWatch "
                    "Logs (logs:CreateLogDelivery, ...) support no resource-level permissions."
                ),
            )
        )


def _cfn_function(function: lambda_.IFunction) -> lambda_.CfnFunction:
    cfn_function = function.node.default_child
    if not isinstance(cfn_function, lambda_.CfnFunction):  # pragma: no cover
        raise TypeError(f"{function.node.path} is not a function defined in this app")
    return cfn_function
