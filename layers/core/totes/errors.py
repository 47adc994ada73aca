"""Named errors of the data platform.

Every error a user can meet has its own type, so callers (the CLI, the
handlers, Step Functions Retry/Catch rules) branch on the type, never on the
message text. Each carries a one-line message that names the problem and the
thing it concerns, and never a secret.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from totes.source.columns import SchemaDrift


class TotesError(Exception):
    """Base class of every error the platform raises on purpose."""


class DatabaseUnreachableError(TotesError):
    """Nothing accepts connections at the configured host and port."""


class DatabaseTransientError(TotesError):
    """A database fault that a retry a few seconds later absorbs: a connection dropped or
    refused mid-run, a server shutting down or starting, too many connections, a
    serialization failure or a deadlock. The connection it happened on is discarded."""


class AwsTransientError(TotesError):
    """An AWS call throttled, or failed by the service (5xx) or the network, on every one
    of botocore's own attempts."""


class DatabaseTlsError(TotesError):
    """The connection's TLS failed: the server offers none, its certificate is not signed by
    a trusted authority, or it is not for the host name connected to."""


class AuthenticationFailedError(TotesError):
    """The server is up but refused the user name or password."""


class DatabaseNotFoundError(TotesError):
    """The server accepted the credentials but has no database of that name."""


class SchemaAlreadyExistsError(TotesError):
    """The target database already holds tables that would be overwritten."""


class SourceSchemaMissingError(TotesError):
    """The database does not hold the totesys tables an operation needs."""


class SnapshotFormatError(TotesError):
    """A snapshot folder is missing a table file or holds a malformed record."""


class SecretNotFoundError(TotesError):
    """Secrets Manager has no secret of the configured name."""


class SecretFormatError(TotesError):
    """A credentials secret is not JSON or lacks a field a connection needs."""


class WatermarkConflictError(TotesError):
    """Another execution advanced the watermark since this one read it.

    Raised instead of overwriting: the batch this execution wrote stays in the raw
    zone (downstream is idempotent) and the next execution starts from the newer mark.
    """


class SourceTableMissingError(TotesError):
    """A table the pipeline extracts does not exist in the source database."""


class NullLastUpdatedError(TotesError):
    """Source rows have no last_updated, so no watermark can place them."""


class TimestampOutOfRangeError(TotesError):
    """Source rows hold a timestamp outside years 1 to 9999, which no later stage can read."""


class RawObjectExistsError(TotesError):
    """The raw zone already holds an object at a key this batch would write (never overwritten)."""


class InvalidEventError(TotesError):
    """A Lambda event lacks a field or holds a value of the wrong kind."""


class InvalidSettingError(TotesError):
    """A function's environment variable is missing or does not fit its setting."""


class ManifestFormatError(TotesError):
    """A raw-zone manifest is not a document this pipeline wrote."""


class RawPartCorruptError(TotesError):
    """A raw part's bytes do not match the checksum its manifest recorded."""


class WarehouseSchemaMissingError(TotesError):
    """The warehouse database lacks a star-schema table (or the load ledger) an operation needs."""


class GoldFileUnreadableError(TotesError):
    """A star-zone (gold) object is not a readable Parquet file."""


class GoldFileSchemaError(TotesError):
    """A star-zone (gold) file's columns, types or required values do not fit its table."""


class TransformStateConflictError(TotesError):
    """Another execution transformed the same warehouse table meanwhile; a retry continues."""


class StagedFileMissingError(TotesError):
    """A file that transform committed is neither staged nor published."""


class ReferencedRowDeletedError(TotesError):
    """A dimension row a fact file references was deleted while the file loaded.

    The file's transaction is rolled back and the file stays pending: the next load
    applies it, quarantining the rows whose dimension row is then missing.
    """


class SourceSchemaDriftError(TotesError):
    """A source column a transform needs is gone or changed type.

    Raised before anything is written: the watermark stays, so once the source is
    fixed the next run extracts from where this one stopped, and nothing is lost.
    ``drift`` (a :class:`totes.source.columns.SchemaDrift`) says which columns.
    """

    def __init__(self, message: str, drift: SchemaDrift) -> None:
        super().__init__(message)
        self.drift = drift


class LakeCommitError(TotesError):
    """A lake table's Iceberg commit failed: its files could not be read or written, or other
    writers kept committing first.

    The warehouse's commit stands; the lake's position is where it was, so a retry (or
    the next load) writes what the lake lacks, once. Retried by the state machine.
    """


class LakeMaintenanceError(TotesError):
    """Tables of the lake could not be compacted or cleaned.

    The warehouse and the lake are up to date; the next run maintains them again.
    """
