"""What the local service records of a function's request: the IAM action and resource AWS
would authorise it against, so that the least-privilege test judges real authorisations."""

from __future__ import annotations

import json
from typing import Any

import pytest

from totes_local.runtime.call_trail import needed_authorisations

ACCOUNT, REGION = "123456789012", "eu-west-2"


def _s3(method: str, path: str, query: str = "", body: bytes = b"", **headers: str) -> list[Any]:
    environ = {"REQUEST_METHOD": method, "PATH_INFO": path, "QUERY_STRING": query}
    environ.update({f"HTTP_{name.upper()}": value for name, value in headers.items()})
    return list(needed_authorisations(environ, body, "s3", REGION, ACCOUNT))


@pytest.mark.parametrize(
    ("method", "path", "query", "action"),
    [
        ("GET", "/b/k/x.csv", "", "s3:GetObject"),
        ("HEAD", "/b/k/x.csv", "", "s3:GetObject"),
        ("GET", "/b/k/x.csv", "versionId=3", "s3:GetObjectVersion"),
        ("PUT", "/b/k/x.csv", "", "s3:PutObject"),
        ("POST", "/b/k/x.csv", "uploads=", "s3:PutObject"),
        ("PUT", "/b/k/x.csv", "partNumber=1&uploadId=u", "s3:PutObject"),
        ("DELETE", "/b/k/x.csv", "uploadId=u", "s3:AbortMultipartUpload"),
        ("DELETE", "/b/k/x.csv", "", "s3:DeleteObject"),
    ],
)
def test_an_object_request_needs_the_action_iam_names_for_it(
    method: str, path: str, query: str, action: str
) -> None:
    # Given a request on an object, Then it is authorised as AWS documents, on the object
    assert _s3(method, path, query) == [(action, "arn:aws:s3:::b/k/x.csv", "k/x.csv")]


def test_listing_is_authorised_on_the_bucket_with_the_listed_prefix() -> None:
    assert _s3("GET", "/b", "list-type=2&prefix=lake%2F") == [
        ("s3:ListBucket", "arn:aws:s3:::b", "lake/")
    ]
    assert _s3("GET", "/b", "versions=&prefix=") == [
        ("s3:ListBucketVersions", "arn:aws:s3:::b", "")
    ]


def test_a_copy_reads_its_source_and_writes_its_target() -> None:
    assert _s3("PUT", "/b/new", x_amz_copy_source="/b/old%20name?versionId=1") == [
        ("s3:GetObject", "arn:aws:s3:::b/old name", "old name"),
        ("s3:PutObject", "arn:aws:s3:::b/new", "new"),
    ]


def test_a_multi_object_delete_needs_delete_on_every_key_it_names() -> None:
    body = (
        b'<?xml version="1.0" encoding="UTF-8"?><Delete xmlns="http://s3.amazonaws.com/doc/'
        b'2006-03-01/"><Object><Key>lake/a&amp;b</Key></Object><Object><Key>lake/c</Key>'
        b"</Object></Delete>"
    )
    assert _s3("POST", "/b", "delete=", body) == [
        ("s3:DeleteObject", "arn:aws:s3:::b/lake/a&b", "lake/a&b"),
        ("s3:DeleteObject", "arn:aws:s3:::b/lake/c", "lake/c"),
    ]


def test_an_unknown_s3_request_is_named_so_that_no_role_allows_it() -> None:
    assert _s3("PATCH", "/b/k") == [("s3:PATCH?", "arn:aws:s3:::b/k", "k")]


def test_json_requests_are_authorised_on_the_resource_their_body_names() -> None:
    def call(service: str, target: str, payload: dict[str, Any]) -> list[Any]:
        environ = {"REQUEST_METHOD": "POST", "PATH_INFO": "/", "HTTP_X_AMZ_TARGET": target}
        body = json.dumps(payload).encode()
        return list(needed_authorisations(environ, body, service, REGION, ACCOUNT))

    arn = f"arn:aws:{{}}:{REGION}:{ACCOUNT}"
    assert call("dynamodb", "DynamoDB_20120810.PutItem", {"TableName": "marks"}) == [
        ("dynamodb:PutItem", arn.format("dynamodb") + ":table/marks", None)
    ]
    # A batch read needs the action on every table it names
    batch = {"RequestItems": {"marks": {"Keys": []}, "other": {"Keys": []}}}
    assert call("dynamodb", "DynamoDB_20120810.BatchGetItem", batch) == [
        ("dynamodb:BatchGetItem", arn.format("dynamodb") + ":table/marks", None),
        ("dynamodb:BatchGetItem", arn.format("dynamodb") + ":table/other", None),
    ]
    # Glue checks the catalog, the database and the table of a table's call
    assert [
        r for _, r, _ in call("glue", "AWSGlue.GetTable", {"DatabaseName": "d", "Name": "t"})
    ] == [
        arn.format("glue") + ":catalog",
        arn.format("glue") + ":database/d",
        arn.format("glue") + ":table/d/t",
    ]
    assert call("secretsmanager", "secretsmanager.GetSecretValue", {"SecretId": "db"}) == [
        ("secretsmanager:GetSecretValue", arn.format("secretsmanager") + ":secret:db-AbCdEf", None)
    ]
