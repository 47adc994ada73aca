"""The EventBridge Scheduler schedule that starts one pipeline execution per tick."""

from __future__ import annotations

from aws_cdk import Duration, Stack
from aws_cdk import aws_iam as iam
from aws_cdk import aws_scheduler as scheduler
from aws_cdk import aws_scheduler_targets as targets
from aws_cdk import aws_stepfunctions as sfn
from constructs import Construct

# A start that keeps failing is superseded by the next tick: retrying it for the
# Scheduler's default 24 hours would only pile up late, overlapping runs.
_START_RETRIES = 2
# The longest a Scheduler target may keep retrying an event.
_LONGEST_EVENT_AGE_MINUTES = 24 * 60


class PipelineSchedule(Construct):
    """Starts the state machine every ``rate_minutes`` minutes.

    Parameters
    ----------
    scope : constructs.Construct
        Parent construct.
    construct_id : str
        Id of this construct within ``scope``.
    state_machine : aws_cdk.aws_stepfunctions.IStateMachine
        The pipeline to start.
    rate_minutes : int
        Minutes between two starts.
    enabled : bool
        ``False`` creates the schedule disabled: nothing starts until it is
        enabled (by redeploying with ``schedule_enabled=true``).

    Attributes
    ----------
    schedule : aws_cdk.aws_scheduler.Schedule
        The schedule.
    role : aws_cdk.aws_iam.Role
        What the Scheduler acts as: it may only start this state machine.
    """

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        state_machine: sfn.IStateMachine,
        rate_minutes: int,
        enabled: bool,
    ) -> None:
        super().__init__(scope, construct_id)
        stack = Stack.of(self)

        self.role = iam.Role(
            self,
            "Role",
            description=f"Lets EventBridge Scheduler start the pipeline of {stack.stack_name}",
            # Only schedules of this account may use the role (confused deputy).
            assumed_by=iam.ServicePrincipal(
                "scheduler.amazonaws.com",
                conditions={"StringEquals": {"aws:SourceAccount": stack.account}},
            ),
        )
        state_machine.grant_start_execution(self.role)

        period = Duration.minutes(rate_minutes)
        self.schedule = scheduler.Schedule(
            self,
            "Schedule",
            description="Starts one totes pipeline execution",
            schedule=scheduler.ScheduleExpression.rate(period),
            enabled=enabled,
            target=targets.StepFunctionsStartExecution(
                state_machine,
                role=self.role,
                retry_attempts=_START_RETRIES,
                max_event_age=Duration.minutes(min(rate_minutes, _LONGEST_EVENT_AGE_MINUTES)),
            ),
        )
