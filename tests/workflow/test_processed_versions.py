"""The processed bucket keeps previous versions: an object the stages rely on, deleted by
mistake, is restored from its previous version and the pipeline goes on as if nothing
happened."""

from __future__ import annotations

import pytest

from totes.db import connect
from totes.warehouse.reconcile import reconcile

from .support import WorkflowFactory

pytestmark = pytest.mark.slow

STATE_KEY = "_state/transform/fact_sales_order.json"


def test_a_deleted_transform_state_is_restored_from_its_previous_version(
    seeded_source_dsn: str, warehouse_dsn: str, local_workflow: WorkflowFactory
) -> None:
    with local_workflow(seeded_source_dsn, warehouse_dsn) as workflow:
        # Given a run, whose transform committed its state for the sales orders
        assert workflow.execute().status == "SUCCEEDED"
        s3, bucket = workflow.client("s3"), workflow.processed_bucket
        committed = s3.get_object(Bucket=bucket, Key=STATE_KEY)["Body"].read()

        # When the state is deleted by mistake
        s3.delete_object(Bucket=bucket, Key=STATE_KEY)

        # Then its previous version is still there, and restoring it brings it back as it was
        versions = s3.list_object_versions(Bucket=bucket, Prefix=STATE_KEY)
        (previous,) = [v for v in versions["Versions"] if v["Key"] == STATE_KEY][:1]
        s3.copy_object(
            Bucket=bucket,
            Key=STATE_KEY,
            CopySource={"Bucket": bucket, "Key": STATE_KEY, "VersionId": previous["VersionId"]},
        )
        assert s3.get_object(Bucket=bucket, Key=STATE_KEY)["Body"].read() == committed

        # And the next run carries on from it: nothing is transformed again
        again = workflow.execute()
    assert again.status == "SUCCEEDED"
    assert again.tables()["fact_sales_order"].get("transformed", 0) == 0
    with connect(seeded_source_dsn) as source, connect(warehouse_dsn) as warehouse:
        assert reconcile(source, warehouse) == []
