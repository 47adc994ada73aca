"""Log groups the platform creates itself, so that none is left without a retention period."""

from __future__ import annotations

from aws_cdk import RemovalPolicy
from aws_cdk import aws_logs as logs
from constructs import Construct

from stacks.settings import LOG_RETENTION_DAYS_ALLOWED

# The CDK enum is keyed by name; CloudWatch and the settings speak in days.
_RETENTION_BY_DAYS: dict[int, logs.RetentionDays] = {
    1: logs.RetentionDays.ONE_DAY,
    3: logs.RetentionDays.THREE_DAYS,
    5: logs.RetentionDays.FIVE_DAYS,
    7: logs.RetentionDays.ONE_WEEK,
    14: logs.RetentionDays.TWO_WEEKS,
    30: logs.RetentionDays.ONE_MONTH,
    60: logs.RetentionDays.TWO_MONTHS,
    90: logs.RetentionDays.THREE_MONTHS,
    120: logs.RetentionDays.FOUR_MONTHS,
    150: logs.RetentionDays.FIVE_MONTHS,
    180: logs.RetentionDays.SIX_MONTHS,
    365: logs.RetentionDays.ONE_YEAR,
    400: logs.RetentionDays.THIRTEEN_MONTHS,
    545: logs.RetentionDays.EIGHTEEN_MONTHS,
    731: logs.RetentionDays.TWO_YEARS,
    1096: logs.RetentionDays.THREE_YEARS,
    1827: logs.RetentionDays.FIVE_YEARS,
    2192: logs.RetentionDays.SIX_YEARS,
    2557: logs.RetentionDays.SEVEN_YEARS,
    2922: logs.RetentionDays.EIGHT_YEARS,
    3288: logs.RetentionDays.NINE_YEARS,
    3653: logs.RetentionDays.TEN_YEARS,
}


def retention_period(days: int) -> logs.RetentionDays:
    """The CDK retention value for ``days``.

    Raises
    ------
    ValueError
        ``days`` is not one of :data:`~stacks.settings.LOG_RETENTION_DAYS_ALLOWED`.
    """
    if days not in LOG_RETENTION_DAYS_ALLOWED or days not in _RETENTION_BY_DAYS:
        raise ValueError(f"CloudWatch Logs cannot keep logs for {days} days")
    return _RETENTION_BY_DAYS[days]


def operational_log_group(
    scope: Construct,
    construct_id: str,
    *,
    retention_days: int,
    log_group_name: str | None = None,
) -> logs.LogGroup:
    """A log group for operational logs, kept ``retention_days`` days.

    Deleted with the stack: these are run logs, not data, and a retained group
    with a fixed name would make a re-created stack fail on the name clash.

    Parameters
    ----------
    scope : constructs.Construct
        Parent construct.
    construct_id : str
        Id of the log group within ``scope``.
    retention_days : int
        One of the periods CloudWatch Logs accepts (already validated by the settings).
    log_group_name : str or None
        Fixed name, for services that expect one; ``None`` lets CloudFormation name it.

    Returns
    -------
    aws_cdk.aws_logs.LogGroup
    """
    return logs.LogGroup(
        scope,
        construct_id,
        log_group_name=log_group_name,
        retention=retention_period(retention_days),
        removal_policy=RemovalPolicy.DESTROY,
    )
