"""The Powertools logger and metrics every handler shares.

One namespace and one ``service`` dimension, both from :mod:`totes.names`, so the
alarms the CDK side defines watch exactly the metrics the handlers emit.
"""

from aws_lambda_powertools import Logger, Metrics

from totes.names import METRICS_NAMESPACE, SERVICE_NAME

logger = Logger(service=SERVICE_NAME)
metrics = Metrics(namespace=METRICS_NAMESPACE, service=SERVICE_NAME)
