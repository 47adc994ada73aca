"""How the pipeline is started, watched and reported on: schedule, alert topic, alarms."""

from __future__ import annotations

from typing import Any

import pytest

from tests.infra.template_reading import allowed_actions, logical_id, role_statements
from totes.names import FRESHNESS_LAG_ALARM_SECONDS, METRICS_NAMESPACE, SERVICE_NAME, MetricName

pytestmark = pytest.mark.infra


def _alarms(template) -> dict[str, dict[str, Any]]:
    """Alarm properties by alarm name (the stack name is the names' prefix)."""
    return {
        alarm["Properties"]["AlarmName"].removeprefix("TotesDataPlatform-"): alarm["Properties"]
        for alarm in template.find_resources("AWS::CloudWatch::Alarm").values()
    }


# -- schedule ---------------------------------------------------------------------------------


def test_the_schedule_starts_the_state_machine_every_five_minutes(platform, template):
    # Given the schedule, with schedule_rate_minutes=5 in the test context
    (schedule,) = template.find_resources("AWS::Scheduler::Schedule").values()
    properties = schedule["Properties"]

    # Then it is enabled, on time (no flexible window), every 5 minutes
    assert properties["ScheduleExpression"] == "rate(5 minutes)"
    assert properties["State"] == "ENABLED"
    assert properties["FlexibleTimeWindow"] == {"Mode": "OFF"}
    # And it starts the pipeline's state machine, giving up on a start after two retries
    target = properties["Target"]
    assert target["Arn"] == {"Ref": logical_id(platform.stack.workflow.state_machine)}
    assert target["RetryPolicy"]["MaximumRetryAttempts"] == 2


def test_the_schedule_role_may_only_start_this_state_machine(platform, template):
    # Given the role the Scheduler acts as
    schedule = platform.stack.schedule
    allowed = allowed_actions(role_statements(template, schedule.role))

    # Then its one right is to start the pipeline's state machine
    state_machine = platform.stack.workflow.state_machine
    assert allowed == {"states:StartExecution": {f"<{logical_id(state_machine)}>"}}
    # And only EventBridge Scheduler, for this account, may assume it
    role = template.find_resources("AWS::IAM::Role")[logical_id(schedule.role)]
    (trust,) = role["Properties"]["AssumeRolePolicyDocument"]["Statement"]
    assert trust["Principal"] == {"Service": "scheduler.amazonaws.com"}
    assert trust["Condition"] == {"StringEquals": {"aws:SourceAccount": "123456789012"}}


def test_the_schedule_can_be_deployed_disabled(synthesise_platform):
    # Given `cdk deploy -c schedule_enabled=false` (text, as the CLI passes it)
    platform = synthesise_platform(schedule_enabled="false")

    # Then the schedule exists but starts nothing
    platform.template.has_resource_properties("AWS::Scheduler::Schedule", {"State": "DISABLED"})


def test_the_schedule_rate_comes_from_context(synthesise_platform):
    # Given `cdk deploy -c schedule_rate_minutes=15`
    platform = synthesise_platform(schedule_rate_minutes="15")

    # Then the pipeline runs every 15 minutes, and freshness is judged per 15 minutes
    platform.template.has_resource_properties(
        "AWS::Scheduler::Schedule", {"ScheduleExpression": "rate(15 minutes)"}
    )
    assert _alarms(platform.template)["FreshnessLag"]["Period"] == 15 * 60


# -- alert topic ------------------------------------------------------------------------------


def test_the_alert_topic_is_encrypted_with_a_rotated_key(platform, template):
    # Given the alert topic
    alerts = platform.stack.alerts

    # Then its messages are encrypted with the platform's own key, which rotates
    template.has_resource_properties(
        "AWS::SNS::Topic",
        {"KmsMasterKeyId": {"Fn::GetAtt": [logical_id(alerts.key), "Arn"]}},
    )
    template.has_resource_properties("AWS::KMS::Key", {"EnableKeyRotation": True})


def test_the_alert_topic_refuses_publishers_without_tls(platform, template):
    # Given the alert topic's policy
    (policy,) = template.find_resources("AWS::SNS::TopicPolicy").values()
    statements = policy["Properties"]["PolicyDocument"]["Statement"]

    # Then any request over plain HTTP is denied, whoever makes it
    assert any(
        statement["Effect"] == "Deny"
        and statement["Principal"] in ("*", {"AWS": "*"})
        and statement["Condition"] == {"Bool": {"aws:SecureTransport": "false"}}
        for statement in statements
    )


def test_cloudwatch_alarms_of_this_account_may_use_the_topic_and_its_key(template):
    # Given the topic policy and the key policy
    (topic_policy,) = template.find_resources("AWS::SNS::TopicPolicy").values()
    (key,) = template.find_resources("AWS::KMS::Key").values()
    condition = {
        "StringEquals": {"aws:SourceAccount": "123456789012"},
        "ArnLike": {"aws:SourceArn": "arn:aws:cloudwatch:eu-west-2:123456789012:alarm:*"},
    }

    # Then CloudWatch, on behalf of this account's alarms only, may publish and encrypt
    for statements, actions in (
        (topic_policy["Properties"]["PolicyDocument"]["Statement"], "sns:Publish"),
        (key["Properties"]["KeyPolicy"]["Statement"], ["kms:Decrypt", "kms:GenerateDataKey"]),
    ):
        assert any(
            statement["Principal"] == {"Service": "cloudwatch.amazonaws.com"}
            and statement["Action"] == actions
            and statement["Condition"] == condition
            for statement in statements
        ), actions


def test_the_alarm_email_is_subscribed_to_the_topic(platform, template):
    # Given alarm_email=data-alerts@example.com in the test context
    # Then that address receives the alerts
    template.has_resource_properties(
        "AWS::SNS::Subscription",
        {
            "Protocol": "email",
            "Endpoint": "data-alerts@example.com",
            "TopicArn": {"Ref": logical_id(platform.stack.alerts.topic)},
        },
    )


def test_without_an_alarm_email_nobody_is_subscribed(synthesise_platform):
    # Given cdk.json's empty alarm_email
    platform = synthesise_platform(alarm_email="")

    # Then the topic exists but has no subscription
    platform.template.resource_count_is("AWS::SNS::Topic", 1)
    platform.template.resource_count_is("AWS::SNS::Subscription", 0)


# -- alarms -----------------------------------------------------------------------------------


def test_there_is_an_alarm_for_every_way_the_pipeline_can_go_wrong(template):
    # Given the alarms of the platform
    # Then failures, timeouts, each function's errors, the freshness lag, a growing
    # backlog, rejected rows, schema drift and unknown codes are watched
    assert set(_alarms(template)) == {
        "ExecutionsFailed",
        "ExecutionsTimedOut",
        "IngestErrors",
        "TransformErrors",
        "LoadErrors",
        "ProgressErrors",
        "DescribeFailureErrors",
        "LakeMaintenanceErrors",
        "FreshnessLag",
        "BacklogGrowing",
        "RowsRejected",
        "SchemaDrift",
        "UnknownCodes",
    }


@pytest.mark.parametrize(
    ("name", "metric"),
    [("RowsRejected", MetricName.ROWS_REJECTED), ("UnknownCodes", MetricName.UNKNOWN_CODES)],
)
def test_a_single_rejected_row_or_unknown_code_in_a_period_fires_its_alarm(template, name, metric):
    # Given a data-quality alarm
    alarm = _alarms(template)[name]
    # Then it sums the metric the handlers publish for alarms (service dimension alone)
    assert (alarm["Namespace"], alarm["MetricName"]) == (METRICS_NAMESPACE, metric)
    assert alarm["Dimensions"] == [{"Name": "service", "Value": SERVICE_NAME}]
    assert (alarm["Statistic"], alarm["Period"]) == ("Sum", 300)
    # And one row in one period fires it; a period without any is fine
    assert (alarm["Threshold"], alarm["ComparisonOperator"]) == (
        1,
        "GreaterThanOrEqualToThreshold",
    )
    assert (alarm["EvaluationPeriods"], alarm["TreatMissingData"]) == (1, "notBreaching")
    # And its description tells the person who gets it what to do
    assert "totes" in alarm["AlarmDescription"] or "totesys" in alarm["AlarmDescription"]
    assert len(alarm["AlarmDescription"]) > 120


def test_a_source_column_that_appears_or_disappears_fires_the_schema_drift_alarm(template):
    # Given the schema drift alarm
    alarm = _alarms(template)["SchemaDrift"]
    # Then it adds up unexpected and missing columns, as published, a missing value as 0
    (expression,) = [m for m in alarm["Metrics"] if m.get("Expression")]
    assert expression["Expression"] == "FILL(unexpected, 0) + FILL(missing, 0)"
    watched = {
        m["Id"]: m["MetricStat"]["Metric"]["MetricName"]
        for m in alarm["Metrics"]
        if "MetricStat" in m
    }
    assert watched == {
        "unexpected": MetricName.UNEXPECTED_COLUMNS,
        "missing": MetricName.MISSING_COLUMNS,
    }
    for metric in alarm["Metrics"]:
        if "MetricStat" in metric:
            assert metric["MetricStat"]["Metric"]["Dimensions"] == [
                {"Name": "service", "Value": SERVICE_NAME}
            ]
            assert metric["MetricStat"]["Stat"] == "Sum"
    # And one such column fires it, and the description says what to do
    assert (alarm["Threshold"], alarm["ComparisonOperator"]) == (
        1,
        "GreaterThanOrEqualToThreshold",
    )
    assert "SourceSchemaDriftError" in alarm["AlarmDescription"]


def test_every_alarm_and_its_recovery_go_to_the_alert_topic(platform, template):
    # Given every alarm
    topic = {"Ref": logical_id(platform.stack.alerts.topic)}
    for name, alarm in _alarms(template).items():
        # Then the alert topic hears when it fires and when it clears
        assert alarm["AlarmActions"] == [topic], name
        assert alarm["OKActions"] == [topic], name


def test_failed_and_timed_out_executions_alarm_on_the_first_one(platform, template):
    # Given the execution alarms
    alarms = _alarms(template)
    state_machine = {"Ref": logical_id(platform.stack.workflow.state_machine)}
    for name, metric in (
        ("ExecutionsFailed", "ExecutionsFailed"),
        ("ExecutionsTimedOut", "ExecutionsTimedOut"),
    ):
        alarm = alarms[name]
        # Then a single failed (or timed-out) execution of this state machine fires it
        assert (alarm["Namespace"], alarm["MetricName"]) == ("AWS/States", metric)
        assert alarm["Dimensions"] == [{"Name": "StateMachineArn", "Value": state_machine}]
        assert alarm["Threshold"] == 1
        assert alarm["ComparisonOperator"] == "GreaterThanOrEqualToThreshold"
        # And no executions at all is not a failure
        assert alarm["TreatMissingData"] == "notBreaching"


def test_each_function_error_alarms(platform, template):
    # Given the error alarm of each function
    alarms = _alarms(template)
    for stage, function in platform.stack.functions.by_stage.items():
        alarm = alarms[f"{stage.title().replace('_', '')}Errors"]
        # Then one error of that function fires it
        assert (alarm["Namespace"], alarm["MetricName"]) == ("AWS/Lambda", "Errors")
        assert alarm["Dimensions"] == [
            {"Name": "FunctionName", "Value": {"Ref": logical_id(function)}}
        ]
        assert alarm["Threshold"] == 1


def test_the_freshness_alarm_watches_the_metric_exactly_as_powertools_publishes_it(template):
    # Given the freshness alarm
    alarm = _alarms(template)["FreshnessLag"]

    # Then it reads the namespace, name and dimensions the handlers publish with
    # (Powertools adds the `service` dimension to every metric)
    assert alarm["Namespace"] == METRICS_NAMESPACE
    assert alarm["MetricName"] == MetricName.FRESHNESS_LAG_SECONDS
    assert alarm["Dimensions"] == [{"Name": "service", "Value": SERVICE_NAME}]
    # And fires above the client's limit of 30 minutes
    assert alarm["Threshold"] == FRESHNESS_LAG_ALARM_SECONDS
    assert alarm["ComparisonOperator"] == "GreaterThanThreshold"
    assert alarm["Statistic"] == "Maximum"


def test_no_freshness_data_for_three_runs_is_an_alarm(template):
    # Given the freshness alarm, When no run reports freshness (schedule off, runs failing)
    alarm = _alarms(template)["FreshnessLag"]

    # Then silence counts as stale, but only after three schedule periods in a row
    assert alarm["TreatMissingData"] == "breaching"
    assert alarm["Period"] == 5 * 60
    assert (alarm["EvaluationPeriods"], alarm["DatapointsToAlarm"]) == (3, 3)


def test_a_backlog_that_grows_three_executions_in_a_row_is_an_alarm(template):
    # Given the backlog alarm
    alarm = _alarms(template)["BacklogGrowing"]

    # Then it watches the change of the backlog as CheckProgress publishes it
    # (service dimension alone, one value per execution), period by period
    (change, backlog) = sorted(alarm["Metrics"], key=lambda query: "MetricStat" in query)
    assert change["Expression"] == "DIFF(backlog)"
    assert change["ReturnData"] is True
    assert backlog["Id"] == "backlog"
    stat = backlog["MetricStat"]
    assert stat["Metric"]["Namespace"] == METRICS_NAMESPACE
    assert stat["Metric"]["MetricName"] == MetricName.BACKLOG_ROWS
    assert stat["Metric"]["Dimensions"] == [{"Name": "service", "Value": SERVICE_NAME}]
    assert stat["Period"] == 5 * 60
    # And fires once it grew in three consecutive schedule periods, not on one burst
    assert alarm["Threshold"] == 0
    assert alarm["ComparisonOperator"] == "GreaterThanThreshold"
    assert (alarm["EvaluationPeriods"], alarm["DatapointsToAlarm"]) == (3, 3)
    assert alarm["TreatMissingData"] == "notBreaching"
    # And its description says what to do
    assert "transform_max_rows" in alarm["AlarmDescription"]


def test_the_dashboard_shows_each_stage_and_the_freshness_lag(template):
    # Given the dashboard
    (dashboard,) = template.find_resources("AWS::CloudWatch::Dashboard").values()
    assert dashboard["Properties"]["DashboardName"] == "TotesDataPlatform-pipeline"
    body = str(dashboard["Properties"]["DashboardBody"])

    # Then it graphs every stage's rows per table (from the log lines), the executions
    # and the freshness lag
    for needle in (
        "stats sum(rows) by bin(5m), table",
        "stats sum(rows_loaded) by bin(5m), table",
        MetricName.FRESHNESS_LAG_SECONDS,
        MetricName.BACKLOG_ROWS,
        MetricName.CATCH_UP_PASSES,
        "ExecutionsFailed",
        "Invocations",
        "Duration",
    ):
        assert needle in body, needle
