"""S3 buckets of the raw (ingested) and processed data zones."""

from __future__ import annotations

from collections.abc import Sequence

from aws_cdk import Duration, RemovalPolicy
from aws_cdk import aws_s3 as s3
from constructs import Construct

from totes.names import TRANSFORM_STAGING_PREFIX, TRANSFORM_STAGING_RETENTION_DAYS

# Long enough for a slow multipart upload to finish, short enough that abandoned
# parts (a Lambda that timed out mid-upload) do not accumulate storage charges.
_INCOMPLETE_UPLOAD_GRACE = Duration.days(7)


class DataBuckets(Construct):
    """The buckets that hold the platform's data, and the bucket that audits them.

    Every bucket blocks public access, refuses requests without TLS 1.2 or
    later, encrypts at rest with S3-managed keys and outlives the stack
    (``RETAIN``), because the data is the product and a stack deletion must not
    take it along.

    Parameters
    ----------
    scope : constructs.Construct
        Parent construct.
    construct_id : str
        Id of this construct within ``scope``.
    raw_retention_days : int
        Days a raw object, or an overwritten version of one, stays in S3
        Standard before it moves to Glacier Instant Retrieval. Nothing in the
        raw zone ever expires: it is the record every other zone is rebuilt
        from, and versioning keeps an accidental overwrite recoverable.
    access_log_retention_days : int
        Days server access logs are kept.
    processed_version_retention_days : int
        Days the previous version of an overwritten or deleted processed object is kept.

    Attributes
    ----------
    ingested : aws_cdk.aws_s3.Bucket
        Raw zone: gzipped CSV parts and batch manifests; versioned.
    processed : aws_cdk.aws_s3.Bucket
        Mirror, star and lake zones, transform state and quarantined rows: rewritten and
        deleted by the stages, so versioned, its previous versions expiring.
    access_logs : aws_cdk.aws_s3.Bucket
        Destination of the server access logs of the two data buckets.
    """

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        raw_retention_days: int,
        access_log_retention_days: int,
        processed_version_retention_days: int,
    ) -> None:
        super().__init__(scope, construct_id)
        # Log delivery must be granted by bucket policy: the buckets disable ACLs
        # (BUCKET_OWNER_ENFORCED), which the legacy ACL grant would need. Pinned
        # here so the buckets synthesise the same with or without cdk.json's flags.
        self.node.set_context("@aws-cdk/aws-s3:serverAccessLogsUseBucketPolicy", True)

        # Not logged itself: logging the log bucket would write a log object per
        # log object. AwsSolutions-S1 recognises a log destination, so this needs
        # no acknowledgement.
        self.access_logs = locked_down_bucket(
            self,
            "AccessLogs",
            lifecycle_rules=[
                s3.LifecycleRule(
                    id="ExpireOldAccessLogs",
                    expiration=Duration.days(access_log_retention_days),
                    abort_incomplete_multipart_upload_after=_INCOMPLETE_UPLOAD_GRACE,
                )
            ],
        )

        self.ingested = locked_down_bucket(
            self,
            "Ingested",
            versioned=True,
            access_logs=self.access_logs,
            lifecycle_rules=[
                s3.LifecycleRule(
                    id="MoveAgeingRawDataToInstantRetrieval",
                    transitions=[
                        s3.Transition(
                            storage_class=s3.StorageClass.GLACIER_INSTANT_RETRIEVAL,
                            transition_after=Duration.days(raw_retention_days),
                        )
                    ],
                    noncurrent_version_transitions=[
                        s3.NoncurrentVersionTransition(
                            storage_class=s3.StorageClass.GLACIER_INSTANT_RETRIEVAL,
                            transition_after=Duration.days(raw_retention_days),
                        )
                    ],
                    abort_incomplete_multipart_upload_after=_INCOMPLETE_UPLOAD_GRACE,
                )
            ],
        )

        self.processed = locked_down_bucket(
            self,
            "Processed",
            # Load and the lake maintenance step delete objects, transform rewrites its
            # state: a mistake (or a bug) there is undone from the previous version.
            versioned=True,
            access_logs=self.access_logs,
            lifecycle_rules=[
                s3.LifecycleRule(
                    id="AbortIncompleteUploads",
                    abort_incomplete_multipart_upload_after=_INCOMPLETE_UPLOAD_GRACE,
                ),
                s3.LifecycleRule(
                    id="ExpirePreviousVersions",
                    noncurrent_version_expiration=Duration.days(processed_version_retention_days),
                    expired_object_delete_marker=True,
                ),
                # Transform stages files here until its state write commits them; what an
                # execution that lost the race left behind is never published.
                s3.LifecycleRule(
                    id="ExpireStagedTransformFiles",
                    prefix=f"{TRANSFORM_STAGING_PREFIX}/",
                    expiration=Duration.days(TRANSFORM_STAGING_RETENTION_DAYS),
                ),
            ],
        )


def locked_down_bucket(
    scope: Construct,
    construct_id: str,
    *,
    lifecycle_rules: Sequence[s3.LifecycleRule],
    versioned: bool = False,
    access_logs: s3.IBucket | None = None,
) -> s3.Bucket:
    """A bucket as every bucket of the platform is: private, TLS only, encrypted, retained.

    Its server access logs (if ``access_logs`` is given) go under a prefix named after
    ``construct_id``.
    """
    return s3.Bucket(
        scope,
        construct_id,
        block_public_access=s3.BlockPublicAccess.BLOCK_ALL,
        encryption=s3.BucketEncryption.S3_MANAGED,
        enforce_ssl=True,
        minimum_tls_version=1.2,
        object_ownership=s3.ObjectOwnership.BUCKET_OWNER_ENFORCED,
        versioned=versioned,
        lifecycle_rules=lifecycle_rules,
        server_access_logs_bucket=access_logs,
        # One prefix per source bucket keeps the logs of the two zones apart.
        server_access_logs_prefix=f"{construct_id.lower()}/" if access_logs else None,
        removal_policy=RemovalPolicy.RETAIN,
    )
