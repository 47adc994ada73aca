"""The Powertools logger and metrics every handler shares.

One namespace and one ``service`` dimension, both from :mod:`totes.names`, so the
alarms the CDK side defines watch exactly the metrics the handlers emit.
"""

from aws_lambda_powertools import Logger, Metrics
from aws_lambda_powertools.metrics import MetricUnit, single_metric

from totes.names import METRICS_NAMESPACE, SERVICE_NAME

logger = Logger(service=SERVICE_NAME)
metrics = Metrics(namespace=METRICS_NAMESPACE, service=SERVICE_NAME)


def publish_for_alarm(name: str, value: float, unit: MetricUnit = MetricUnit.Count) -> None:
    """Emit one metric with the ``service`` dimension alone, which is what the alarms watch.

    The handlers' per-table metrics carry a ``table`` dimension too; CloudWatch alarms
    match a metric's dimensions exactly and cannot search, so a metric an alarm
    watches is also emitted once without it.
    """
    with single_metric(
        name=name,
        unit=unit,
        value=value,
        namespace=METRICS_NAMESPACE,
        default_dimensions={"service": SERVICE_NAME},
    ):
        pass
