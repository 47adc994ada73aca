"""What transform reads of the watermarks: the newest batch each source table's advance named."""

from __future__ import annotations

from typing import Any

from totes.ingest.watermarks import DynamoWatermarkStore


class _ThrottledDynamoDB:
    """A DynamoDB client answering BatchGetItem for its first key alone, the rest unprocessed."""

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


def test_a_table_dynamodb_left_unread_is_left_out_so_that_it_is_listed() -> None:
    # Given watermarks naming a batch of staff and of design, and a DynamoDB that, throttled,
    # reads the first key of a request and leaves the others unprocessed
    client = _ThrottledDynamoDB(
        {
            "staff": {"table_name": {"S": "staff"}, "manifest": {"S": "_manifests/staff/a.json"}},
            "design": {
                "table_name": {"S": "design"},
                "manifest": {"S": "_manifests/design/b.json"},
            },
        }
    )

    # When the newest batches of staff and design are read
    newest = DynamoWatermarkStore(client, "watermarks").newest_manifests(["staff", "design"])

    # Then only what was read is in the answer (design, left out, is listed), after one
    # consistent request
    assert newest == {"staff": "_manifests/staff/a.json"}
    assert len(client.requests) == 1
    assert client.requests[0]["watermarks"]["ConsistentRead"]


def test_a_watermark_an_earlier_release_wrote_names_no_batch() -> None:
    # Given a watermark item without the manifest attribute
    client = _ThrottledDynamoDB({"address": {"table_name": {"S": "address"}}})

    # When its newest batch is read, Then the table is left out (and so listed)
    assert DynamoWatermarkStore(client, "watermarks").newest_manifests(["address"]) == {}
