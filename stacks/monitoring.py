"""Alarms and the operations dashboard of the pipeline."""

from __future__ import annotations

import re
from dataclasses import dataclass

from aws_cdk import Duration, Stack
from aws_cdk import aws_cloudwatch as cloudwatch
from aws_cdk import aws_cloudwatch_actions as actions
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_stepfunctions as sfn
from constructs import Construct

from stacks.alerts import AlertTopic
from stacks.functions import PipelineFunctions
from totes.names import FRESHNESS_LAG_ALARM_SECONDS, METRICS_NAMESPACE, SERVICE_NAME, MetricName

_ALARM_PERIOD = Duration.minutes(5)
#: Consecutive schedule ticks without fresh data before the freshness alarm fires:
#: one late or skipped run is tolerated, three in a row are not.
FRESHNESS_TICKS_TO_ALARM = 3
#: Consecutive schedule ticks whose executions each ended with a larger backlog than
#: the one before: a burst in the source grows it once or twice, a pipeline that
#: cannot keep up grows it every time.
BACKLOG_TICKS_TO_ALARM = 3
# CloudWatch evaluates at most one day of data for an alarm.
_LONGEST_FRESHNESS_PERIOD_MINUTES = 24 * 60 // max(FRESHNESS_TICKS_TO_ALARM, BACKLOG_TICKS_TO_ALARM)


def _spoken(title: str) -> str:
    """A construct's title as words.

    Examples
    --------
    >>> _spoken("LakeMaintenance")
    'lake maintenance'
    """
    return re.sub(r"(?<=[a-z])(?=[A-Z])", " ", title).lower()


@dataclass(frozen=True)
class _Stage:
    title: str
    function: lambda_.Function
    #: The field of the handler's log line that counts the rows it moved.
    rows_field: str


class PipelineMonitoring(Construct):
    """Alarms to the alert topic, and one dashboard to look at when they fire.

    Alarms:

    - ``ExecutionsFailed`` and ``ExecutionsTimedOut`` of the state machine;
    - ``Errors`` of each function (a retried error counts too: a retry that
      succeeds still says something is wrong, e.g. overlapping executions);
    - ``FreshnessLagSeconds`` above the client's limit
      (:data:`totes.names.FRESHNESS_LAG_ALARM_SECONDS`);
    - ``BacklogGrowing``: the rows left after each execution (``BacklogRows``) grew
      three schedule periods in a row: the pipeline is not keeping up;
    - ``RowsRejected``: a row was quarantined (transform could not shape it, or load
      found no dimension row for it in time) in the period;
    - ``SchemaDrift``: a source column appeared, disappeared or changed type;
    - ``UnknownCodes``: a row carried a code the pipeline could not name (a
      placeholder was used).

    Missing freshness data counts as breaching, deliberately. The load stage
    publishes the lag on every run, so silence means nothing is reaching the
    warehouse: the schedule is disabled or broken, or every run fails before
    loading. Treating silence as fine would hide exactly the staleness the
    client asked to be told about. To ride out one late or skipped run, the
    alarm fires only after three consecutive periods (one period per schedule
    tick) without a fresh value.

    The other alarms treat missing data as not breaching: no execution, or no
    invocation, means nothing failed.

    Parameters
    ----------
    scope : constructs.Construct
        Parent construct.
    construct_id : str
        Id of this construct within ``scope``.
    alerts : AlertTopic
        Where alarms (and their recoveries) are sent.
    state_machine : aws_cdk.aws_stepfunctions.StateMachine
        The pipeline.
    functions : PipelineFunctions
        Its functions.
    schedule_rate_minutes : int
        Minutes between two runs: the period of the freshness alarm.

    Attributes
    ----------
    alarms : dict of str to aws_cdk.aws_cloudwatch.Alarm
        Every alarm, by construct id.
    freshness_lag : aws_cdk.aws_cloudwatch.Metric
        The freshness lag exactly as the handlers publish it.
    backlog : aws_cdk.aws_cloudwatch.Metric
        Rows left to ingest or transform when an execution ends, as published.
    rows_rejected, unexpected_columns, missing_columns, unknown_codes : Metric
        What the data-quality alarms watch, as published (service dimension, summed).
    dashboard : aws_cdk.aws_cloudwatch.Dashboard
        A row per stage, then the executions and the freshness lag.
    """

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        alerts: AlertTopic,
        state_machine: sfn.StateMachine,
        functions: PipelineFunctions,
        schedule_rate_minutes: int,
    ) -> None:
        super().__init__(scope, construct_id)
        self._stack_name = Stack.of(self).stack_name
        self._notify = actions.SnsAction(alerts.topic)
        self.alarms: dict[str, cloudwatch.Alarm] = {}

        self._alarm(
            "ExecutionsFailed",
            state_machine.metric_failed(period=_ALARM_PERIOD, statistic="Sum"),
            description="A pipeline execution failed. The NotifyFailure email names the "
            "state and table that failed, the error, its message and what to do; the "
            "execution log has the details.",
        )
        self._alarm(
            "ExecutionsTimedOut",
            state_machine.metric_timed_out(period=_ALARM_PERIOD, statistic="Sum"),
            description="A pipeline execution hit the 5-minute Express limit: a stage "
            "took too long (large backlog?). The next run continues from the watermarks.",
        )
        stages = (
            _Stage("Ingest", functions.ingest, "rows"),
            _Stage("Transform", functions.transform, "rows"),
            _Stage("Load", functions.load, "rows_loaded"),
        )
        for title, function in (
            *((stage.title, stage.function) for stage in stages),
            ("Progress", functions.progress),
            ("DescribeFailure", functions.describe_failure),
            ("LakeMaintenance", functions.lake_maintenance),
        ):
            self._alarm(
                f"{title}Errors",
                function.metric_errors(period=_ALARM_PERIOD, statistic="Sum"),
                description=f"The {_spoken(title)} function raised an error "
                "(perhaps retried successfully); see its log group.",
            )

        freshness_period = Duration.minutes(
            min(schedule_rate_minutes, _LONGEST_FRESHNESS_PERIOD_MINUTES)
        )
        # Powertools adds the `service` dimension to every metric; an alarm only
        # matches a metric whose dimensions are exactly the same.
        self.freshness_lag = cloudwatch.Metric(
            namespace=METRICS_NAMESPACE,
            metric_name=MetricName.FRESHNESS_LAG_SECONDS,
            dimensions_map={"service": SERVICE_NAME},
            statistic="Maximum",
            period=freshness_period,
        )
        self._alarm(
            "FreshnessLag",
            self.freshness_lag,
            description=f"The warehouse is more than {FRESHNESS_LAG_ALARM_SECONDS // 60} "
            "minutes behind totesys, or no run has reported freshness for "
            f"{FRESHNESS_TICKS_TO_ALARM} schedule periods (schedule disabled? runs failing?).",
            threshold=FRESHNESS_LAG_ALARM_SECONDS,
            comparison=cloudwatch.ComparisonOperator.GREATER_THAN_THRESHOLD,
            periods=FRESHNESS_TICKS_TO_ALARM,
            missing_data=cloudwatch.TreatMissingData.BREACHING,
        )

        # One value per execution, published by CheckProgress with the service dimension.
        self.backlog = cloudwatch.Metric(
            namespace=METRICS_NAMESPACE,
            metric_name=MetricName.BACKLOG_ROWS,
            dimensions_map={"service": SERVICE_NAME},
            statistic="Minimum",
            period=freshness_period,
        )
        self._alarm(
            "BacklogGrowing",
            cloudwatch.MathExpression(
                expression="DIFF(backlog)",
                using_metrics={"backlog": self.backlog},
                label="Backlog change per schedule period (rows)",
                period=freshness_period,
            ),
            description=f"The rows left to ingest or transform after each execution grew "
            f"{BACKLOG_TICKS_TO_ALARM} schedule periods in a row: the pipeline is not "
            "keeping up with totesys. Check the executions' CheckProgress output (which "
            "tables remain), then raise the stage limits (ingest_max_rows, "
            "transform_max_rows) or the catch-up budget, or run the schedule more often.",
            threshold=0,
            comparison=cloudwatch.ComparisonOperator.GREATER_THAN_THRESHOLD,
            periods=BACKLOG_TICKS_TO_ALARM,
        )

        self.rows_rejected = _service_sum(MetricName.ROWS_REJECTED)
        self._alarm(
            "RowsRejected",
            self.rows_rejected,
            description="Rows were quarantined in the last 5 minutes: transform could not "
            "shape them (e.g. a date that is not YYYY-MM-DD) or load found no dimension row "
            "for them within 30 minutes. Nothing else was held back. Run `totes rejects "
            "--stack <stack>` to see each row, its reason and where it is kept. Fix the "
            "source row (a new last_updated brings it back) or the missing dimension row "
            "(quarantined facts are replayed automatically when it arrives).",
        )
        self.unexpected_columns = _service_sum(MetricName.UNEXPECTED_COLUMNS)
        self.missing_columns = _service_sum(MetricName.MISSING_COLUMNS)
        self._alarm(
            "SchemaDrift",
            cloudwatch.MathExpression(
                expression="FILL(unexpected, 0) + FILL(missing, 0)",
                using_metrics={
                    "unexpected": self.unexpected_columns,
                    "missing": self.missing_columns,
                },
                label="Source columns unexpected, missing or retyped",
                period=_ALARM_PERIOD,
            ),
            # Every ingest publishes both counts, zeros included: a period without an
            # execution says nothing about the schema, so the alarm keeps its state.
            missing_data=cloudwatch.TreatMissingData.IGNORE,
            description="The totesys schema changed: a source column appeared (it is kept "
            "in the raw zone but not loaded), or one disappeared or changed type. If a "
            "transform needs it, ingest of that table stops with SourceSchemaDriftError "
            "before writing anything and the executions fail until the column is restored. "
            "See the ingest log's warnings for which table and column, then restore the "
            "column or change the pipeline's column contract (totes.source.columns).",
        )
        self.unknown_codes = _service_sum(MetricName.UNKNOWN_CODES)
        self._alarm(
            "UnknownCodes",
            self.unknown_codes,
            description="A row carried a code the pipeline cannot name (a currency code "
            "not in ISO 4217): it was loaded with a placeholder name ('Unknown currency "
            "(XYZ)'). Correct the code in totesys, or add the code's name to the pipeline "
            "(totes.transform.currencies).",
        )

        self.dashboard = cloudwatch.Dashboard(
            self,
            "Dashboard",
            dashboard_name=f"{self._stack_name}-pipeline",
            default_interval=Duration.hours(6),
        )
        self.dashboard.add_widgets(
            cloudwatch.AlarmStatusWidget(
                title="Alarms", alarms=list(self.alarms.values()), width=24, height=3
            )
        )
        for stage in stages:
            self.dashboard.add_widgets(*_stage_row(stage))
        self.dashboard.add_widgets(
            cloudwatch.GraphWidget(
                title="Executions",
                width=12,
                left=[
                    state_machine.metric_started(period=_ALARM_PERIOD, statistic="Sum"),
                    state_machine.metric_succeeded(period=_ALARM_PERIOD, statistic="Sum"),
                    state_machine.metric_failed(period=_ALARM_PERIOD, statistic="Sum"),
                    state_machine.metric_timed_out(period=_ALARM_PERIOD, statistic="Sum"),
                ],
            ),
            cloudwatch.GraphWidget(
                title="Freshness lag: now minus the newest last_updated in the warehouse",
                width=12,
                # A label would make the alarm a metric-math alarm; only the graph gets one.
                left=[self.freshness_lag.with_(label="Freshness lag (s)")],
                left_annotations=[
                    cloudwatch.HorizontalAnnotation(
                        value=FRESHNESS_LAG_ALARM_SECONDS, label="alarm threshold"
                    )
                ],
            ),
        )
        self.dashboard.add_widgets(
            cloudwatch.GraphWidget(
                title="Backlog: rows left to ingest or transform after each execution",
                width=12,
                left=[self.backlog.with_(label="Backlog (rows)")],
            ),
            cloudwatch.GraphWidget(
                title="Passes per execution (more than one: catching up)",
                width=12,
                left=[
                    cloudwatch.Metric(
                        namespace=METRICS_NAMESPACE,
                        metric_name=MetricName.CATCH_UP_PASSES,
                        dimensions_map={"service": SERVICE_NAME},
                        statistic="Maximum",
                        period=_ALARM_PERIOD,
                        label="Passes",
                    )
                ],
            ),
        )

        self.dashboard.add_widgets(
            cloudwatch.GraphWidget(
                title="Data quality: rows rejected and codes not named (sum per 5 minutes)",
                width=12,
                left=[
                    self.rows_rejected.with_(label="Rows rejected"),
                    self.unknown_codes.with_(label="Rows with an unknown code"),
                ],
            ),
            cloudwatch.GraphWidget(
                title="Schema drift: source columns unexpected or missing",
                width=12,
                left=[
                    self.unexpected_columns.with_(label="Unexpected columns"),
                    self.missing_columns.with_(label="Missing or retyped columns"),
                ],
            ),
        )
        self.dashboard.add_widgets(
            cloudwatch.GraphWidget(
                title=(
                    "Retries: invocations that met a transient fault (failover, restart, "
                    "throttling), by stage and error"
                ),
                width=24,
                left=[
                    cloudwatch.MathExpression(
                        # One line per stage and error that occurred: SEARCH finds them.
                        expression=(
                            f"SEARCH('{{{METRICS_NAMESPACE},error,service,stage}} "
                            f'MetricName="{MetricName.RETRIES}"\', '
                            f"'Sum', {int(_ALARM_PERIOD.to_seconds())})"
                        ),
                        label="",
                        period=_ALARM_PERIOD,
                    )
                ],
            ),
        )

    def _alarm(
        self,
        construct_id: str,
        metric: cloudwatch.IMetric,
        *,
        description: str,
        threshold: float = 1,
        comparison: cloudwatch.ComparisonOperator = (
            cloudwatch.ComparisonOperator.GREATER_THAN_OR_EQUAL_TO_THRESHOLD
        ),
        periods: int = 1,
        missing_data: cloudwatch.TreatMissingData = cloudwatch.TreatMissingData.NOT_BREACHING,
    ) -> cloudwatch.Alarm:
        alarm = cloudwatch.Alarm(
            self,
            construct_id,
            # The name is the subject of the alarm email: say which deployment.
            alarm_name=f"{self._stack_name}-{construct_id}",
            alarm_description=description,
            metric=metric,
            threshold=threshold,
            comparison_operator=comparison,
            evaluation_periods=periods,
            datapoints_to_alarm=periods,
            treat_missing_data=missing_data,
        )
        alarm.add_alarm_action(self._notify)
        # Recovery is news too: whoever got the alarm learns it is over.
        alarm.add_ok_action(self._notify)
        self.alarms[construct_id] = alarm
        return alarm


def _service_sum(name: str) -> cloudwatch.Metric:
    """A metric as the handlers publish it for alarms (service dimension alone), summed."""
    return cloudwatch.Metric(
        namespace=METRICS_NAMESPACE,
        metric_name=name,
        dimensions_map={"service": SERVICE_NAME},
        statistic="Sum",
        period=_ALARM_PERIOD,
    )


def _stage_row(stage: _Stage) -> list[cloudwatch.IWidget]:
    function = stage.function
    return [
        cloudwatch.GraphWidget(
            title=f"{stage.title}: invocations and errors",
            width=8,
            left=[
                function.metric_invocations(period=_ALARM_PERIOD, statistic="Sum"),
                function.metric_errors(period=_ALARM_PERIOD, statistic="Sum"),
                function.metric_throttles(period=_ALARM_PERIOD, statistic="Sum"),
            ],
        ),
        cloudwatch.GraphWidget(
            title=f"{stage.title}: duration (ms)",
            width=8,
            left=[
                function.metric_duration(period=_ALARM_PERIOD, statistic="p50"),
                function.metric_duration(period=_ALARM_PERIOD, statistic="Maximum"),
            ],
            left_annotations=[
                cloudwatch.HorizontalAnnotation(
                    value=function.timeout.to_milliseconds() if function.timeout else 0,
                    label="timeout",
                )
            ],
        ),
        # Rows per table come from the handlers' log lines (fields, not metrics).
        cloudwatch.LogQueryWidget(
            title=f"{stage.title}: rows per table (sum per 5 minutes)",
            width=8,
            log_group_names=[function.log_group.log_group_name],
            view=cloudwatch.LogQueryVisualizationType.LINE,
            query_lines=[
                f"filter ispresent({stage.rows_field}) and ispresent(table)",
                f"stats sum({stage.rows_field}) by bin(5m), table",
            ],
        ),
    ]
