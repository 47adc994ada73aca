"""The one way the pipeline writes S3 objects that must not be overwritten by accident.

S3 conditional writes make "create only if absent" (``If-None-Match: *``) and
"replace only if unchanged since I read it" (``If-Match: <ETag>``) atomic; a
failed condition is answered ``412 PreconditionFailed`` (or ``409
ConditionalRequestConflict`` while another conditional write of the key is in
flight). :func:`put_if` turns both into ``None`` and lets every other error
through, so each caller decides what a lost condition means: the raw zone
refuses to overwrite, a content-named file is already there, a state write lost
a race. A write that succeeded returns the object's new ETag: the condition of the
next replacement, without reading the object back.
"""

from __future__ import annotations

from typing import Any, TypeVar

from botocore.exceptions import ClientError
from pydantic import BaseModel, Field

_CONDITION_FAILED = frozenset({"PreconditionFailed", "ConditionalRequestConflict"})
_NOT_FOUND = frozenset({"404", "NoSuchKey", "NotFound"})
_CONTENT_NAMED_ATTEMPTS = 3


def put_if(
    s3: Any,
    bucket: str,
    key: str,
    body: bytes,
    *,
    etag: str | None = None,
    **options: Any,
) -> str | None:
    """Write ``key`` if it does not exist (``etag`` None) or still has ``etag``.

    Parameters
    ----------
    s3
        An S3 client.
    bucket, key, body
        What to write where.
    etag
        The ETag the object had when it was read; ``None`` to create it only.
    options
        More ``put_object`` arguments (``ContentType``, ``ChecksumAlgorithm``).

    Returns
    -------
    str or None
        The ETag of the object written (the condition of the next write), or ``None``
        when the condition failed: the object exists, or changed meanwhile.

    Examples
    --------
    >>> import boto3
    >>> from moto import mock_aws
    >>> with mock_aws():
    ...     s3 = boto3.client("s3", region_name="us-east-1")
    ...     _ = s3.create_bucket(Bucket="totes-example")
    ...     first = put_if(s3, "totes-example", "k", b"1")
    ...     again = put_if(s3, "totes-example", "k", b"2")
    ...     replaced = put_if(s3, "totes-example", "k", b"3", etag=first)
    ...     stale = put_if(s3, "totes-example", "k", b"4", etag=first)
    ...     current = s3.head_object(Bucket="totes-example", Key="k")["ETag"]
    >>> first is not None, again, replaced == current, stale
    (True, None, True, None)
    """
    condition = {"IfMatch": etag} if etag else {"IfNoneMatch": "*"}
    try:
        response = s3.put_object(Bucket=bucket, Key=key, Body=body, **condition, **options)
    except ClientError as exc:
        if exc.response["Error"]["Code"] in _CONDITION_FAILED:
            return None
        raise
    return str(response["ETag"])


def put_content_named(s3: Any, bucket: str, key: str, body: bytes, **options: Any) -> None:
    """Make sure ``key`` exists, writing ``body`` unless it does.

    For objects named after what they hold (a digest of their inputs), an existing
    object is the same object. A condition can also fail while another write of the
    key is still in flight (``409``): then the object is looked for, and written if
    that write did not complete.

    Examples
    --------
    >>> import boto3
    >>> from moto import mock_aws
    >>> with mock_aws():
    ...     s3 = boto3.client("s3", region_name="us-east-1")
    ...     _ = s3.create_bucket(Bucket="totes-example")
    ...     put_content_named(s3, "totes-example", "k", b"1")
    ...     put_content_named(s3, "totes-example", "k", b"1")
    ...     s3.get_object(Bucket="totes-example", Key="k")["Body"].read()
    b'1'
    """
    for _ in range(_CONTENT_NAMED_ATTEMPTS):
        if put_if(s3, bucket, key, body, **options) or exists(s3, bucket, key):
            return
    raise RuntimeError(f"s3://{bucket}/{key} could neither be written nor found")


class VersionedDocument(BaseModel):
    """A JSON document in S3 replaced only by compare-and-set on the ETag it was read with."""

    #: The ETag the document had when read (not stored): the condition of the next write.
    etag: str | None = Field(default=None, exclude=True)


Document = TypeVar("Document", bound=VersionedDocument)


def read_document(s3: Any, bucket: str, key: str, model: type[Document]) -> Document:
    """The document at ``key`` with its ETag, or an empty one (no ETag) if there is none.

    Examples
    --------
    >>> read_document(s3, "processed", "state/absent.json", VersionedDocument)
    VersionedDocument(etag=None)
    >>> etag = put_if(s3, "processed", "state/present.json", b"{}")
    >>> read_document(s3, "processed", "state/present.json", VersionedDocument).etag == etag
    True
    """
    found = get_if_present(s3, bucket, key)
    if found is None:
        return model()
    body, etag = found
    document = model.model_validate_json(body)
    document.etag = etag
    return document


def get_if_present(s3: Any, bucket: str, key: str) -> tuple[bytes, str] | None:
    """An object's body and ETag (the condition of a later :func:`put_if`), or None if absent.

    Examples
    --------
    >>> get_if_present(s3, "processed", "no-such-key") is None
    True
    >>> etag = put_if(s3, "processed", "greeting.txt", b"hello")
    >>> get_if_present(s3, "processed", "greeting.txt") == (b"hello", etag)
    True
    """
    try:
        response = s3.get_object(Bucket=bucket, Key=key)
    except ClientError as exc:
        if exc.response["Error"]["Code"] in ("NoSuchKey", "404"):
            return None
        raise
    return response["Body"].read(), str(response["ETag"])


def exists(s3: Any, bucket: str, key: str) -> bool:
    """Whether ``key`` exists; any answer but "not found" is raised.

    Examples
    --------
    >>> exists(s3, "processed", "dim_staff/run=r/1.parquet")
    False
    >>> _ = s3.put_object(Bucket="processed", Key="dim_staff/run=r/1.parquet", Body=b"")
    >>> exists(s3, "processed", "dim_staff/run=r/1.parquet")
    True
    """
    try:
        s3.head_object(Bucket=bucket, Key=key)
    except ClientError as exc:
        if exc.response["Error"]["Code"] in _NOT_FOUND:
            return False
        raise
    return True
