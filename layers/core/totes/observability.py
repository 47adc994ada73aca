"""The Powertools logger every handler shares, and the metrics the alarms watch.

One namespace and one ``service`` dimension, both from :mod:`totes.names`, so the
alarms the CDK side defines watch exactly the metrics the handlers emit. Figures per
table (rows, bytes, durations) go in each invocation's log line instead: CloudWatch
bills every metric name and dimension value as a custom metric, and Logs Insights
charts log fields as well (ADR 20).
"""

from aws_lambda_powertools import Logger
from aws_lambda_powertools.metrics import MetricUnit, single_metric

from totes.names import METRICS_NAMESPACE, SERVICE_NAME

logger = Logger(service=SERVICE_NAME)


def publish_for_alarm(name: str, value: float, unit: MetricUnit = MetricUnit.Count) -> None:
    """Emit one metric with the ``service`` dimension alone, which is what the alarms watch.

    CloudWatch alarms match a metric's dimensions exactly and cannot search: a metric
    an alarm watches carries the ``service`` dimension and nothing else.
    """
    with single_metric(
        name=name,
        unit=unit,
        value=value,
        namespace=METRICS_NAMESPACE,
        default_dimensions={"service": SERVICE_NAME},
    ):
        pass
