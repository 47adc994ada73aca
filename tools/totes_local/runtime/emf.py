"""CloudWatch embedded metric format (EMF): the metric values inside a handler's log line.

In AWS, CloudWatch Logs turns every EMF line a function prints into metric
values; the local service does the same with :func:`parse_emf` and puts them
into its CloudWatch.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any


@dataclass(frozen=True)
class MetricDatum:
    """One value of one metric, read from an EMF line a handler printed."""

    namespace: str
    name: str
    value: float
    unit: str
    dimensions: dict[str, str]
    timestamp: datetime


def parse_emf(record: Mapping[str, Any]) -> list[MetricDatum]:
    """The metric values of one CloudWatch embedded-metric-format record.

    Examples
    --------
    >>> record = {"_aws": {"Timestamp": 0, "CloudWatchMetrics": [{"Namespace": "N",
    ...     "Dimensions": [["table"]], "Metrics": [{"Name": "Rows", "Unit": "Count"}]}]},
    ...     "table": "staff", "Rows": [3.0]}
    >>> [(m.name, m.value, m.dimensions) for m in parse_emf(record)]
    [('Rows', 3.0, {'table': 'staff'})]
    """
    directives = record.get("_aws")
    if not isinstance(directives, Mapping):
        return []
    millis = directives.get("Timestamp")
    timestamp = (
        datetime.fromtimestamp(millis / 1000, UTC)
        if isinstance(millis, int | float)
        else datetime.now(UTC)
    )
    data: list[MetricDatum] = []
    for directive in directives.get("CloudWatchMetrics", []):
        dimension_names = {name for group in directive.get("Dimensions", []) for name in group}
        dimensions = {name: str(record[name]) for name in sorted(dimension_names) if name in record}
        for metric in directive.get("Metrics", []):
            raw = record.get(metric.get("Name"))
            values = raw if isinstance(raw, list) else [raw]
            data.extend(
                MetricDatum(
                    namespace=str(directive.get("Namespace")),
                    name=str(metric["Name"]),
                    value=float(value),
                    unit=str(metric.get("Unit", "None")),
                    dimensions=dimensions,
                    timestamp=timestamp,
                )
                for value in values
                if isinstance(value, int | float) and not isinstance(value, bool)
            )
    return data
