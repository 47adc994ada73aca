"""What transform reads of the watermarks: the newest batch each source table's advance named."""

from __future__ import annotations

from typing import Any

from totes.ingest.watermarks import DynamoWatermarkStore


class _ThrottledDynamoDB:
    """A DynamoDB client answering BatchGetItem with one key at a time, the rest unprocessed."""

    def __init__(self, items: dict[str, dict[str, Any]]) -> None:
        self.items = items
        self.requests: list[dict[str, Any]] = []

    def batch_get_item(self, RequestItems: dict[str, Any]) -> dict[str, Any]:  # noqa: N803
        self.requests.append(RequestItems)
        ((table, request),) = RequestItems.items()
        first, *rest = request["Keys"]
        found = self.items.get(first["table_name"]["S"])
        return {
            "Responses": {table: [found] if found else []},
            "UnprocessedKeys": {table: {**request, "Keys": rest}} if rest else {},
        }


def test_keys_left_unprocessed_are_asked_for_again_until_every_one_is_read() -> None:
    # Given a table of three watermarks, one from a release that named no manifest, and a
    # DynamoDB that answers one key per request
    client = _ThrottledDynamoDB(
        {
            "staff": {"table_name": {"S": "staff"}, "manifest": {"S": "_manifests/staff/a.json"}},
            "address": {"table_name": {"S": "address"}},
            "design": {
                "table_name": {"S": "design"},
                "manifest": {"S": "_manifests/design/b.json"},
            },
        }
    )

    # When the newest batches of four tables (one never extracted) are read
    newest = DynamoWatermarkStore(client, "watermarks").newest_manifests(
        ["staff", "address", "design", "currency"]
    )

    # Then every table that names a batch is in the answer, after one request per key,
    # each consistent
    assert newest == {"staff": "_manifests/staff/a.json", "design": "_manifests/design/b.json"}
    assert len(client.requests) == 4
    assert all(request["watermarks"]["ConsistentRead"] for request in client.requests)
