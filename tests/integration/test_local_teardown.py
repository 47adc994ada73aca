"""Tearing a local deployment down (``totes run --fresh``, the tests' clean slate) while an
invocation of an ended execution still writes to its buckets."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import boto3

from totes_local.runtime.deployment import LocalDeployment

REGION = "eu-west-2"
BUCKET = "totes-teardown-processed"


class _StragglerWrites:
    """The S3 client, with an object put just before the first deletion of the bucket."""

    def __init__(self, s3: Any) -> None:
        self._s3 = s3
        self.deletions = 0

    def __getattr__(self, name: str) -> Any:
        return getattr(self._s3, name)

    def delete_bucket(self, **arguments: Any) -> Any:
        self.deletions += 1
        if self.deletions == 1:
            self._s3.put_object(Bucket=BUCKET, Key="fact_sales_order/late.parquet", Body=b"x")
        return self._s3.delete_bucket(**arguments)


def test_a_bucket_written_to_while_the_deployment_is_destroyed_is_emptied_again(
    moto: None,
) -> None:
    # Given a deployment's bucket holding a file, and a straggling invocation that writes
    # another between the emptying and the deletion
    s3 = boto3.client("s3", region_name=REGION)
    s3.create_bucket(Bucket=BUCKET, CreateBucketConfiguration={"LocationConstraint": REGION})
    s3.put_object(Bucket=BUCKET, Key="dim_staff/run=r/1.parquet", Body=b"x")
    straggler = _StragglerWrites(s3)
    platform = SimpleNamespace(
        account="123456789012",
        stack_name="TotesTeardown",
        state_machine=SimpleNamespace(
            arn=f"arn:aws:states:{REGION}:123456789012:stateMachine:absent"
        ),
        functions=[],
        tables=[],
        buckets=[SimpleNamespace(name=BUCKET)],
        glue_databases=[],
        topics=[],
    )
    clients = {"s3": straggler}

    # When the deployment is destroyed
    LocalDeployment(
        platform,  # type: ignore[arg-type]
        lambda name: clients.get(name) or boto3.client(name, region_name=REGION),
        {},
    ).destroy()

    # Then the bucket is emptied again and deleted
    assert straggler.deletions == 2
    assert BUCKET not in {bucket["Name"] for bucket in s3.list_buckets()["Buckets"]}
