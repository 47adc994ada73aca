"""What the stack costs a month on AWS, from what executions were measured to use.

:func:`monthly_bill` multiplies the usage of an average execution (Lambda invocations and
their billed seconds, requests by service and action, the Express execution's duration,
log bytes) by the executions of a month at a schedule, and adds what is billed whatever
runs (custom metrics, alarms, dashboards, keys, secrets, cached SnapStart snapshots).
``make bench-cost`` measures the usage; :data:`PRICES` holds the prices, each with the
page it comes from.

Free tiers are left out: the client's account may well use them already, and a bill that
fits without them fits with them.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field

#: Seconds in the month the bill is for (30 days): 8,640 executions at five minutes.
MONTH_SECONDS = 30 * 24 * 3600
#: The region the prices are for.
REGION = "eu-west-2"
#: When the prices were last compared with the pages they come from.
PRICES_RECORDED = "2026-12-06"

_LAMBDA = "https://aws.amazon.com/lambda/pricing/"
_STATES = "https://aws.amazon.com/step-functions/pricing/"
_S3 = "https://aws.amazon.com/s3/pricing/"
_DYNAMODB = "https://aws.amazon.com/dynamodb/pricing/on-demand/"
_CLOUDWATCH = "https://aws.amazon.com/cloudwatch/pricing/"
_KMS = "https://aws.amazon.com/kms/pricing/"
_SECRETS = "https://aws.amazon.com/secrets-manager/pricing/"
_SNS = "https://aws.amazon.com/sns/pricing/"
_GLUE = "https://aws.amazon.com/glue/pricing/"
_XRAY = "https://aws.amazon.com/xray/pricing/"


@dataclass(frozen=True)
class Price:
    """One price: US dollars per ``per`` units of what ``unit`` names, and its source page."""

    dollars: float
    unit: str
    source: str
    per: int = 1

    def of(self, quantity: float) -> float:
        """The cost of ``quantity`` units.

        Examples
        --------
        >>> Price(0.0053, "S3 PUT, COPY, POST or LIST requests", _S3, per=1000).of(2000)
        0.0106
        """
        return self.dollars * quantity / self.per


PRICES: dict[str, Price] = {
    "lambda_requests": Price(0.20, "Lambda requests", _LAMBDA, per=1_000_000),
    "lambda_x86_64": Price(0.0000166667, "Lambda GB-seconds on x86_64", _LAMBDA),
    "lambda_arm64": Price(0.0000133334, "Lambda GB-seconds on arm64", _LAMBDA),
    "snapstart_cache": Price(0.0000015046, "SnapStart cache, GB-seconds", _LAMBDA),
    "express_requests": Price(1.00, "Step Functions Express requests", _STATES, per=1_000_000),
    "express_duration": Price(0.00001667, "Express GB-seconds (64 MB, 100 ms steps)", _STATES),
    "s3_write_list": Price(0.0053, "S3 PUT, COPY, POST, LIST requests", _S3, per=1000),
    "s3_read": Price(0.00042, "S3 GET and other requests", _S3, per=1000),
    "dynamodb_write": Price(0.7625, "DynamoDB on-demand write units", _DYNAMODB, per=1_000_000),
    "dynamodb_read": Price(0.1525, "DynamoDB on-demand read units", _DYNAMODB, per=1_000_000),
    "custom_metric": Price(0.30, "CloudWatch custom metrics, a month each", _CLOUDWATCH),
    "alarm": Price(0.10, "CloudWatch standard alarms, a month each", _CLOUDWATCH),
    "dashboard": Price(3.00, "CloudWatch dashboards, a month each", _CLOUDWATCH),
    "log_ingestion": Price(0.5985, "CloudWatch Logs ingested, GB", _CLOUDWATCH),
    "kms_key": Price(1.00, "KMS keys, a month each", _KMS),
    "secret": Price(0.40, "Secrets Manager secrets, a month each", _SECRETS),
    "secret_requests": Price(0.05, "Secrets Manager API calls", _SECRETS, per=10_000),
    "sns_email": Price(2.00, "SNS e-mail notifications", _SNS, per=100_000),
    "glue_requests": Price(1.00, "Glue Data Catalog requests", _GLUE, per=1_000_000),
    "xray_traces": Price(5.00, "X-Ray traces recorded", _XRAY, per=1_000_000),
}


@dataclass(frozen=True)
class FunctionUsage:
    """One function's part of an average execution."""

    memory_mb: int
    invocations: float
    #: Billed seconds over those invocations (duration and init phases).
    billed_seconds: float
    architecture: str = "x86_64"
    #: Its published version keeps a SnapStart snapshot cached all month.
    snapstart: bool = False


@dataclass(frozen=True)
class ExecutionUsage:
    """What an average execution uses."""

    functions: Mapping[str, FunctionUsage]
    #: Requests by IAM action (``s3:GetObject``), the functions' own.
    requests: Mapping[str, float]
    express_seconds: float
    log_bytes: float
    #: Secrets read (one per environment older than the secrets cache).
    secret_reads: float = 0.0
    #: Traces X-Ray records (see :func:`sampled_traces`).
    traces: float = 0.0


@dataclass(frozen=True)
class Standing:
    """What is billed every month whatever runs."""

    custom_metrics: int
    alarms: int
    dashboards: int
    kms_keys: int
    secrets: int


@dataclass(frozen=True)
class Bill:
    """Dollars a month by service, for a number of executions."""

    executions: int
    lines: dict[str, float] = field(default_factory=dict)

    @property
    def total(self) -> float:
        """The month's total."""
        return sum(self.lines.values())


def sampled_traces(invocations: float, seconds: float) -> float:
    """Traces X-Ray's default sampling rule records: the first request of each second, and
    5 % of the others.

    Examples
    --------
    >>> sampled_traces(invocations=33, seconds=0.8)  # 1 second: 1 + 5 % of 32
    2.6
    """
    reservoir = min(invocations, math.ceil(seconds))
    return round(reservoir + 0.05 * (invocations - reservoir), 6)


def _s3_price(action: str) -> Price:
    # GET and HEAD are reads; DELETE is free; the rest (PUT, COPY, POST, LIST) is a write tier.
    if action in ("s3:GetObject", "s3:GetObjectVersion", "s3:GetBucketLocation"):
        return PRICES["s3_read"]
    if action.startswith(("s3:DeleteObject", "s3:AbortMultipartUpload")):
        return Price(0.0, "S3 DELETE requests", _S3)
    return PRICES["s3_write_list"]


def _dynamodb_price(action: str) -> Price:
    return (
        PRICES["dynamodb_read"]
        if action.endswith(("GetItem", "Query", "Scan"))
        else (PRICES["dynamodb_write"])
    )


def execution_cost(usage: ExecutionUsage) -> dict[str, float]:
    """Dollars one average execution costs, by service.

    Examples
    --------
    >>> usage = ExecutionUsage(
    ...     functions={"load": FunctionUsage(memory_mb=1024, invocations=2, billed_seconds=0.5)},
    ...     requests={"s3:GetObject": 1000}, express_seconds=0.05, log_bytes=0)
    >>> {k: round(v, 9) for k, v in execution_cost(usage).items()}
    {'Lambda': 8.733e-06, 'Step Functions': 1.104e-06, 'S3': 0.00042}
    """
    lines: dict[str, float] = {}

    def add(line: str, dollars: float) -> None:
        if dollars:
            lines[line] = lines.get(line, 0.0) + dollars

    for function in usage.functions.values():
        gigabytes = function.memory_mb / 1024
        add("Lambda", PRICES["lambda_requests"].of(function.invocations))
        add(
            "Lambda",
            PRICES[f"lambda_{function.architecture}"].of(gigabytes * function.billed_seconds),
        )
    # Express bills each execution, and its duration in 100 ms steps at 64 MB.
    steps = math.ceil(usage.express_seconds * 10) / 10
    add("Step Functions", PRICES["express_requests"].of(1))
    add("Step Functions", PRICES["express_duration"].of(steps * 64 / 1024))
    for action, count in usage.requests.items():
        service = action.split(":", 1)[0]
        if service == "s3":
            add("S3", _s3_price(action).of(count))
        elif service == "dynamodb":
            add("DynamoDB", _dynamodb_price(action).of(count))
        elif service == "glue":
            add("Glue Data Catalog", PRICES["glue_requests"].of(count))
    add("CloudWatch Logs", PRICES["log_ingestion"].of(usage.log_bytes / 1024**3))
    add("Secrets Manager", PRICES["secret_requests"].of(usage.secret_reads))
    add("X-Ray", PRICES["xray_traces"].of(usage.traces))
    return lines


def monthly_bill(usage: ExecutionUsage, standing: Standing, *, schedule_minutes: int) -> Bill:
    """The month's bill at one execution every ``schedule_minutes``.

    Examples
    --------
    >>> usage = ExecutionUsage(functions={}, requests={}, express_seconds=0.0, log_bytes=0)
    >>> bill = monthly_bill(usage, Standing(custom_metrics=10, alarms=3, dashboards=1,
    ...                                     kms_keys=1, secrets=2), schedule_minutes=5)
    >>> bill.executions, round(bill.total, 4)
    (8640, 8.1086)
    """
    executions = MONTH_SECONDS // (schedule_minutes * 60)
    lines = {line: dollars * executions for line, dollars in execution_cost(usage).items()}
    snapshots = (
        sum(f.memory_mb / 1024 for f in usage.functions.values() if f.snapstart) * MONTH_SECONDS
    )
    standing_lines = {
        "Lambda SnapStart": PRICES["snapstart_cache"].of(snapshots),
        "CloudWatch metrics": PRICES["custom_metric"].of(standing.custom_metrics),
        "CloudWatch alarms": PRICES["alarm"].of(standing.alarms),
        "CloudWatch dashboards": PRICES["dashboard"].of(standing.dashboards),
        "KMS": PRICES["kms_key"].of(standing.kms_keys),
        "Secrets Manager": PRICES["secret"].of(standing.secrets),
    }
    for line, dollars in standing_lines.items():
        if dollars:
            lines[line] = lines.get(line, 0.0) + dollars
    return Bill(executions=executions, lines=dict(sorted(lines.items())))
