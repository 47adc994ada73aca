"""The lake's Iceberg tables in the Glue Data Catalog: opened, made, and committed to.

Every table of the lake is an Apache Iceberg table registered in the lake's Glue
database (pyiceberg's Glue catalog; data and metadata through pyarrow's S3 file
system). What a table holds of the warehouse is written in its own metadata, in the
commit that writes the rows, so the two can never disagree:

- table properties (:data:`EXPORTED_THROUGH`, :data:`LOADED_THROUGH`,
  :data:`DATE_ROWS`): how far the table holds the warehouse; Glue mirrors them in the
  table's parameters;
- :data:`COMMITS_SINCE_MAINTENANCE`: commits since the table was last compacted, which
  the maintenance step reads from Glue alone to know which tables need it;
- snapshot summary properties (:data:`RUN`): the run that made each snapshot, which
  ``totes lake query --as-of RUN_ID`` looks for.
"""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any, Final, TypeVar

from botocore.exceptions import ClientError
from pydantic import BaseModel, ConfigDict, Field

from totes.aws import client
from totes.contracts import NonEmptyText, settings_from_environment
from totes.errors import LakeCommitError
from totes.lake import pyiceberg_patches
from totes.lake.layout import (
    earlier_layout_keys,
    lake_schema,
    table_location,
    table_prefix,
)
from totes.names import EnvironmentVariable
from totes.tables import WAREHOUSE, Kind

if TYPE_CHECKING:
    from pyiceberg.catalog.glue import GlueCatalog
    from pyiceberg.table import Table, Transaction

#: Table property: the last surrogate key of a fact the table holds.
EXPORTED_THROUGH: Final = "totes.exported-through"
#: Table property: the ledger time of the last gold file a dimension holds (ISO 8601).
LOADED_THROUGH: Final = "totes.loaded-through"
#: Table property: the rows of dim_date the table holds (dim_date only grows).
DATE_ROWS: Final = "totes.date-rows"
#: Table property: commits since the table was last compacted.
COMMITS_SINCE_MAINTENANCE: Final = "totes.commits-since-maintenance"
#: Snapshot summary property: the run that made the snapshot.
RUN: Final = "totes.run"
#: Snapshot summary property: why a snapshot that adds no rows was made.
MAINTENANCE: Final = "totes.maintenance"

#: Properties every lake table is kept to: made with them, and given them again by each
#: compaction (so a table an earlier release made takes up what changed). Manifests are
#: merged as appends pile up (a scan then reads a few manifests, not one per commit).
#: The metadata log names a table's last ten metadata files; the older ones are left to
#: maintenance's daily orphan search, which deletes them a thousand to a request, where
#: deleting the oldest after each commit cost that commit a ``HeadObject``, a
#: ``DeleteObject`` and, from pyarrow, a ``PutObject`` of a folder marker.
WRITE_PROPERTIES: Final[Mapping[str, str]] = {
    "write.parquet.compression-codec": "zstd",
    "commit.manifest-merge.enabled": "true",
    "write.metadata.delete-after-commit.enabled": "false",
    "write.metadata.previous-versions-max": "10",
    # pyiceberg would rebuild a commit that lost its race on the new head with what it had
    # read before (the counts of commits, the positions); :meth:`Lake.write` and
    # :meth:`Lake.commit` retry instead, deciding again from the table as it then stands.
    "commit.retry.num-retries": "0",
}
#: Properties every lake table is made with.
TABLE_PROPERTIES: Final[Mapping[str, str]] = {
    "format-version": "2",
    **WRITE_PROPERTIES,
    COMMITS_SINCE_MAINTENANCE: "0",
}
#: Times a commit that lost a race with another writer's is made again.
COMMIT_ATTEMPTS: Final = 5

_Result = TypeVar("_Result")


class LakeSettings(BaseModel):
    """The processed bucket and the lake's Glue database (environment variables in Lambda).

    Examples
    --------
    >>> LakeSettings.from_environment({"PROCESSED_BUCKET": "p", "LAKE_DATABASE": "lake"})
    LakeSettings(bucket='p', database='lake')
    """

    model_config = ConfigDict(frozen=True, populate_by_name=True)

    bucket: NonEmptyText = Field(alias=EnvironmentVariable.PROCESSED_BUCKET)
    database: NonEmptyText = Field(alias=EnvironmentVariable.LAKE_DATABASE)

    @classmethod
    def from_environment(cls, environment: Mapping[str, str] | None = None) -> LakeSettings:
        """Read ``PROCESSED_BUCKET`` and ``LAKE_DATABASE``.

        Raises
        ------
        InvalidSettingError
            One of them is not set.
        """
        return settings_from_environment(cls, environment)


def file_io_properties(environment: Mapping[str, str] | None = None) -> dict[str, str]:
    """pyiceberg's S3 settings from the AWS environment variables of the process.

    pyarrow's S3 file system does not read ``AWS_ENDPOINT_URL`` (boto3 does): where it is
    set (the local AWS service), it is passed on, so both reach the same endpoint.

    Examples
    --------
    >>> file_io_properties({"AWS_REGION": "eu-west-2", "AWS_ENDPOINT_URL": "http://127.0.0.1:9"})
    {'s3.region': 'eu-west-2', 's3.endpoint': 'http://127.0.0.1:9'}
    """
    environment = os.environ if environment is None else environment
    region = environment.get("AWS_REGION") or environment.get("AWS_DEFAULT_REGION")
    properties = {"s3.region": region} if region else {}
    if endpoint := environment.get("AWS_ENDPOINT_URL"):
        properties["s3.endpoint"] = endpoint
    return properties


class Lake:
    """The lake's Iceberg tables: one per warehouse table, in one Glue database.

    Parameters
    ----------
    settings : LakeSettings
        The processed bucket (where the tables live) and the Glue database.
    glue, s3 : botocore clients, optional
        The handlers' clients (by default, :func:`totes.aws.client`'s).
    file_io : mapping of str to str, optional
        pyiceberg's S3 settings (by default, :func:`file_io_properties` of the process).
    """

    def __init__(
        self,
        settings: LakeSettings,
        *,
        glue: Any = None,
        s3: Any = None,
        file_io: Mapping[str, str] | None = None,
    ) -> None:
        self.settings = settings
        self._glue = glue
        self._s3 = s3
        self._file_io = file_io
        self._catalog: GlueCatalog | None = None

    @property
    def catalog(self) -> GlueCatalog:
        """pyiceberg's Glue catalog, made on first use (its import takes about 0.5 s).

        Every table is opened through it: pyiceberg is imported, and changed
        (:mod:`totes.lake.pyiceberg_patches`), here first.
        """
        if self._catalog is None:
            from pyiceberg.catalog.glue import GlueCatalog  # noqa: PLC0415

            pyiceberg_patches.apply()

            file_io = file_io_properties() if self._file_io is None else self._file_io
            self._catalog = GlueCatalog("totes", client=self.glue, **file_io)
        return self._catalog

    @property
    def glue(self) -> Any:
        """The Glue client the catalog uses."""
        return self._glue or client("glue")

    @property
    def s3(self) -> Any:
        """The S3 client that removes what a table made afresh replaces."""
        return self._s3 or client("s3")

    def identifier(self, table: str) -> tuple[str, str]:
        """The table's identifier in the catalog: (database, table)."""
        return (self.settings.database, table)

    def properties(self, table: str) -> Mapping[str, str] | None:
        """The table's properties as Glue mirrors them, without reading its metadata; None
        if the catalog has no Iceberg table of that name, or its metadata file is gone.

        Two requests (Glue's GetTable, S3's HeadObject), where reading the table reads
        its whole metadata file (which grows with its snapshots): enough to tell a table
        that holds what it should from one that does not.
        """
        glue = self.glue
        try:
            described = glue.get_table(DatabaseName=self.settings.database, Name=table)["Table"]
        except glue.exceptions.EntityNotFoundException:
            return None
        parameters: dict[str, str] = described.get("Parameters", {})
        location = parameters.get("metadata_location", "")
        if parameters.get("table_type", "").upper() != "ICEBERG" or not location:
            return None
        bucket, _, key = location.removeprefix("s3://").partition("/")
        try:
            self.s3.head_object(Bucket=bucket, Key=key)
        except ClientError as exc:
            if exc.response["Error"]["Code"] in ("404", "NoSuchKey", "NotFound"):
                return None
            raise
        return parameters

    def table(self, table: str) -> Table | None:
        """The lake's table, or None if the catalog has no Iceberg table of that name.

        A Glue entry that is not an Iceberg table (an earlier release's Parquet table),
        or whose metadata is gone, counts as no table: the next export makes it afresh.
        """
        from pyiceberg.exceptions import NoSuchPropertyException, NoSuchTableError  # noqa: PLC0415

        try:
            return self.catalog.load_table(self.identifier(table))
        except (NoSuchTableError, NoSuchPropertyException, FileNotFoundError):
            return None

    def afresh(self, table: str) -> Transaction:
        """Remove whatever the lake holds of the table, and return the transaction that
        makes it again, empty but for what is staged in it, when it commits.

        Its folder (data and metadata of an earlier table, or an earlier release's
        files), that release's state and change files, and its Glue entry go now; the
        processed bucket is versioned, so nothing removed is lost. Until the transaction
        commits, the catalog has no such table (the next export makes it, if this one
        fails). Facts are partitioned by month; every table is identified by its key.
        Rows staged in the transaction are written by the commit that makes the table:
        one metadata file and Glue's ``CreateTable``, where making the table empty and
        then writing to it took a second metadata file and a ``GetTable``,
        ``GetDatabase`` and ``UpdateTable`` more.
        """
        from pyiceberg.exceptions import NoSuchTableError  # noqa: PLC0415

        for prefix in (table_prefix(table), *earlier_layout_keys(table)):
            self._remove(prefix)
        with contextlib.suppress(NoSuchTableError):
            self.catalog.drop_table(self.identifier(table))
        transaction = self.catalog.create_table_transaction(
            self.identifier(table),
            schema=lake_schema(table),
            location=table_location(self.settings.bucket, table),
            properties={**TABLE_PROPERTIES, "Description": _description(table)},
        )
        with transaction.update_schema() as schema:
            schema.set_identifier_fields(WAREHOUSE[table].lake_key)
        if partition := WAREHOUSE[table].lake_partition:
            with transaction.update_spec() as spec:
                spec.add_identity(partition)
        return transaction

    def write(self, table: str, change: Callable[[Transaction], _Result]) -> _Result:
        """Stage ``change`` in a transaction on the table as it stands, commit it, and
        return what ``change`` returns.

        A table the lake lacks is made afresh by the same commit (:meth:`afresh`), and
        so is one whose data or manifest files ``change`` finds gone (removed by hand: it
        cannot hold what its metadata says), so ``change`` must decide from the
        transaction's metadata what to write. When another writer committed first (a
        maintenance step beside an export), ``change`` is staged again on the table as
        it then stands.

        Raises
        ------
        LakeCommitError
            Every attempt lost its race, or the table's files could not be read or
            written (pyarrow's S3 faults, after its own retries).
        """

        def once(remake: bool) -> _Result:
            current = None if remake else self.table(table)
            transaction = self.afresh(table) if current is None else current.transaction()
            result = change(transaction)
            transaction.commit_transaction()
            return result

        return self._attempts(table, once, remake_lost=True)

    def commit(self, table: str, change: Callable[[Table], _Result]) -> _Result:
        """Run ``change`` on the table as it stands and return what it returns.

        ``change`` commits; when another writer committed first (an export beside a
        maintenance step), the table is read again and ``change`` runs again on it, so it
        must decide from the table what to write.

        Raises
        ------
        LakeCommitError
            Every attempt lost its race, or the table's files could not be read or
            written (pyarrow's S3 faults, after its own retries).
        pyiceberg.exceptions.NoSuchTableError
            The lake lacks the table, or files its metadata references.
        """
        from pyiceberg.exceptions import NoSuchTableError  # noqa: PLC0415

        def once(_: bool) -> _Result:
            current = self.table(table)
            if current is None:
                raise NoSuchTableError(f"the lake has no table {table}")
            return change(current)

        return self._attempts(table, once, remake_lost=False)

    def _attempts(
        self, table: str, once: Callable[[bool], _Result], *, remake_lost: bool
    ) -> _Result:
        """``once(remake)`` until it neither loses a race nor finds files gone;
        ``remake``: the last attempt found files gone (with ``remake_lost``)."""
        from pyiceberg.exceptions import (  # noqa: PLC0415
            CommitFailedException,
            NoSuchTableError,
            ValidationException,
        )

        remake = False
        for attempt in range(1, COMMIT_ATTEMPTS + 1):
            try:
                return once(remake)
            except FileNotFoundError as exc:
                if not remake_lost:
                    raise NoSuchTableError(f"lake table {table} lost files: {exc}") from exc
                if attempt == COMMIT_ATTEMPTS:
                    raise LakeCommitError(
                        f"lake table {table}: files its metadata names are gone: {exc}"
                    ) from exc
                remake = True
            # A lost race: another writer's commit came first (ValidationException: one
            # that conflicts with what this one read).
            except (CommitFailedException, ValidationException) as exc:
                if attempt == COMMIT_ATTEMPTS:
                    raise LakeCommitError(
                        f"lake table {table}: other writers committed first {COMMIT_ATTEMPTS} times"
                    ) from exc
                remake = False
                time.sleep(0.05 * 2**attempt)
            except OSError as exc:
                raise LakeCommitError(
                    f"lake table {table}: its files could not be read or written: {exc}"
                ) from exc
        raise AssertionError("unreachable")  # pragma: no cover

    def _remove(self, prefix: str) -> None:
        bucket = self.settings.bucket
        paginator = self.s3.get_paginator("list_objects_v2")
        for page in paginator.paginate(Bucket=bucket, Prefix=prefix):
            keys = [{"Key": item["Key"]} for item in page.get("Contents", [])]
            if keys:
                self.s3.delete_objects(Bucket=bucket, Delete={"Objects": keys, "Quiet": True})


def _description(table: str) -> str:
    if WAREHOUSE[table].kind is Kind.FACT:
        return f"{table}: every version the warehouse holds, partitioned by month of last_updated"
    return f"{table}: the current rows the warehouse holds"
