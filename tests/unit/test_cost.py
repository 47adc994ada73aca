"""The monthly bill's arithmetic, against examples worked by hand from the price table."""

from __future__ import annotations

import pytest

from totes_local.cost import (
    PRICES,
    ExecutionUsage,
    FunctionUsage,
    Standing,
    execution_cost,
    monthly_bill,
)

NOTHING_STANDING = Standing(custom_metrics=0, alarms=0, dashboards=0, kms_keys=0, secrets=0)


def test_every_price_names_its_unit_and_the_page_it_comes_from() -> None:
    for name, price in PRICES.items():
        assert price.dollars >= 0, name
        assert price.source.startswith("https://aws.amazon.com/"), name
        assert price.unit, name


def test_lambda_bills_requests_and_gigabyte_seconds_by_architecture() -> None:
    # Given a 2,048 MB function invoked 10 times for 3 billed seconds in all, on each
    # architecture: 10 requests = $0.000002; 2 GB x 3 s = 6 GB-s
    def cost(architecture: str) -> float:
        usage = ExecutionUsage(
            functions={
                "transform": FunctionUsage(
                    memory_mb=2048, invocations=10, billed_seconds=3, architecture=architecture
                )
            },
            requests={},
            express_seconds=0,
            log_bytes=0,
        )
        return execution_cost(usage)["Lambda"]

    # Then x86_64 is 0.000002 + 6 x 0.0000166667 = $0.0001020002, arm64 $0.0000820004
    assert cost("x86_64") == pytest.approx(0.0001020002)
    assert cost("arm64") == pytest.approx(0.0000820004)


def test_s3_reads_writes_and_free_deletes_are_priced_apart() -> None:
    # Given 1,000 GETs, 1,000 PUTs, 1,000 LISTs and 1,000 DELETEs
    usage = ExecutionUsage(
        functions={},
        requests={
            "s3:GetObject": 1000,
            "s3:PutObject": 1000,
            "s3:ListBucket": 1000,
            "s3:DeleteObject": 1000,
        },
        express_seconds=0,
        log_bytes=0,
    )
    # Then they cost 0.00042 + 2 x 0.0053 = $0.01102 (deletes are free)
    assert execution_cost(usage)["S3"] == pytest.approx(0.01102)


def test_express_bills_each_execution_and_its_duration_in_100_ms_steps_at_64_mb() -> None:
    # Given an execution of 1.234 s: billed as 1.3 s at 64 MB = 0.08125 GB-s
    usage = ExecutionUsage(functions={}, requests={}, express_seconds=1.234, log_bytes=0)
    # Then it costs $0.000001 + 0.08125 x 0.00001667 = $0.0000023544
    assert execution_cost(usage)["Step Functions"] == pytest.approx(0.0000023544, rel=1e-4)


def test_a_month_at_five_minutes_is_8640_executions_and_at_one_minute_43200() -> None:
    usage = ExecutionUsage(functions={}, requests={}, express_seconds=0, log_bytes=0)
    assert monthly_bill(usage, NOTHING_STANDING, schedule_minutes=5).executions == 8640
    assert monthly_bill(usage, NOTHING_STANDING, schedule_minutes=1).executions == 43200


def test_snapstart_caches_each_version_s_snapshot_all_month() -> None:
    # Given a 1,024 MB function with SnapStart on its published version
    usage = ExecutionUsage(
        functions={
            "ingest": FunctionUsage(memory_mb=1024, invocations=0, billed_seconds=0, snapstart=True)
        },
        requests={},
        express_seconds=0,
        log_bytes=0,
    )
    bill = monthly_bill(usage, NOTHING_STANDING, schedule_minutes=5)
    # Then its cache costs 1 GB x 2,592,000 s x 0.0000015046 = $3.8999 a month, run or not
    assert bill.lines["Lambda SnapStart"] == pytest.approx(3.8999, abs=1e-4)


def test_standing_charges_do_not_depend_on_the_schedule() -> None:
    # Given 40 metrics, 13 alarms, a dashboard, a key and two secrets
    standing = Standing(custom_metrics=40, alarms=13, dashboards=1, kms_keys=1, secrets=2)
    usage = ExecutionUsage(functions={}, requests={}, express_seconds=0, log_bytes=0)
    five, one = (monthly_bill(usage, standing, schedule_minutes=m) for m in (5, 1))
    # Then they come to 12 + 1.3 + 3 + 1 + 0.8 = $18.10 either way (Express's requests aside)
    standing_only = {k: v for k, v in five.lines.items() if k != "Step Functions"}
    assert sum(standing_only.values()) == pytest.approx(18.10)
    assert five.lines["CloudWatch metrics"] == one.lines["CloudWatch metrics"] == 12.0
    # And Express's requests scale with the executions: $0.00864 and $0.0432
    assert five.lines["Step Functions"] == pytest.approx(0.00864)
    assert one.lines["Step Functions"] == pytest.approx(0.0432)
