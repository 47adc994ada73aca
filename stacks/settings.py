"""Product settings of the data platform, read from CDK context.

Every setting can be overridden per deployment, either in ``cdk.json`` or on the
command line (``cdk synth -c raw_retention_days=30``). Values from the command
line arrive as strings, so numbers are parsed rather than trusted.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from constructs import Construct

from stacks.managed_layers import POWERTOOLS
from totes.names import (
    DEFAULT_CATCH_UP_BUDGET_SECONDS,
    DEFAULT_INGEST_MAX_ROWS,
    DEFAULT_LOAD_MAX_FILES,
    DEFAULT_TRANSFORM_MAX_ROWS,
    SOURCE_SECRET_NAME,
    WAREHOUSE_SECRET_NAME,
)

DEFAULT_STACK_NAME = "TotesDataPlatform"

# CloudFormation's own rule for stack names.
_STACK_NAME_PATTERN = re.compile(r"[A-Za-z][A-Za-z0-9-]{0,127}")
# Deliberately loose: SNS confirms the address by mail; this only catches typos
# such as a missing "@" before a deployment is attempted.
_EMAIL_PATTERN = re.compile(r"[^@\s]+@[^@\s]+\.[^@\s]+")
# "latest" or a release of Powertools v3: the public layer is published per major
# version (AWSLambdaPowertoolsPythonV3-...), and the handlers are written for v3.
_POWERTOOLS_VERSION_PATTERN = re.compile(r"latest|3\.\d+\.\d+")
# Glue's rule for database names (lower case, as Athena folds them), and Athena's for
# workgroup names.
_GLUE_DATABASE_PATTERN = re.compile(r"[a-z0-9_]{1,255}")
_WORKGROUP_PATTERN = re.compile(r"[A-Za-z0-9._-]{1,128}")

#: Retention periods CloudWatch Logs accepts, in days.
LOG_RETENTION_DAYS_ALLOWED: tuple[int, ...] = (
    1, 3, 5, 7, 14, 30, 60, 90, 120, 150, 180, 365, 400, 545, 731,
    1096, 1827, 2192, 2557, 2922, 3288, 3653,
)  # fmt: skip

#: An inline Map state runs at most 40 iterations at once, whatever is asked for.
MAP_CONCURRENCY_LIMIT = 40
#: An Express execution is stopped after five minutes.
EXPRESS_LIMIT_SECONDS = 300
#: The lake maintenance step runs after the last pass, within the same five minutes.
LAKE_MAINTENANCE_TIMEOUT_SECONDS = 60

_TRUE_WORDS = frozenset({"true", "yes", "on", "1"})
_FALSE_WORDS = frozenset({"false", "no", "off", "0"})


class InvalidSettingError(ValueError):
    """A context value that the platform cannot be deployed with."""


@dataclass(frozen=True)
class PlatformSettings:
    """What an operator may choose per deployment.

    Attributes
    ----------
    stack_name : str
        CloudFormation stack name (and construct id of the stack).
    alarm_email : str or None
        Address subscribed to the alarm topic; ``None`` deploys no subscription.
    schedule_rate_minutes : int
        Minutes between two pipeline runs.
    source_secret_name : str
        Secrets Manager name of the totesys credentials.
    warehouse_secret_name : str
        Secrets Manager name of the warehouse credentials.
    raw_retention_days : int
        Days a raw object stays in S3 Standard before it moves to Glacier
        Instant Retrieval. Raw data is never deleted: it is the record that
        every later zone can be rebuilt from.
    access_log_retention_days : int
        Days S3 server access logs are kept before they expire.
    processed_version_retention_days : int
        Days an overwritten or deleted object of the processed bucket (transform state,
        mirrors, the lake, quarantined rows) can still be restored from its previous
        version before that version expires.
    schedule_enabled : bool
        Whether the schedule starts the pipeline. ``False`` deploys everything
        but leaves the schedule disabled (for a first deployment before the
        secrets exist, or to pause the pipeline); executions can still be
        started by hand.
    ingest_max_concurrency : int
        Source tables extracted at the same time, i.e. the most connections one
        execution opens to the operational database. Between 1 and 40.
    log_retention_days : int
        Days the logs of the functions and of the state machine are kept; one
        of the periods CloudWatch Logs accepts.
    powertools_version : str
        Release of the public Powertools for AWS Lambda (Python) v3 layer the
        functions use; by default the release ``requirements.txt`` locks
        (:data:`stacks.managed_layers.POWERTOOLS`). ``"latest"`` follows every new
        release, unchecked against Lambda's size limit. Resolved through the public
        SSM parameter of the deployment region when CloudFormation deploys.
    ingest_max_rows : int
        Source rows one ingest invocation extracts from one table.
    transform_max_rows : int
        Raw rows one transform invocation consumes for one warehouse table; at
        least ``ingest_max_rows``, since a raw batch is never split.
    load_max_files : int
        Gold files one load invocation applies to one warehouse table.
    catch_up_budget_seconds : int
        While work remains, an execution starts another pass (ingest, transform,
        load) if the pass just done, repeated, would end within this many seconds
        of the execution's start; otherwise it ends and the next one continues.
        Below the 300-second Express limit: the difference is the headroom for a
        pass slower than the one before it.
    lake_database_name : str
        The Glue database of the lake; by default the stack's name in lower case with
        ``_lake`` (``totesdataplatform_lake``).
    athena_workgroup_name : str
        The Athena workgroup that queries the lake; by default ``<stack>-lake``.
    athena_results_retention_days : int
        Days Athena query results are kept.
    lake_maintain_every_commits : int
        The lake maintenance step compacts a table once this many commits have piled up
        on it since it last did: at the five-minute schedule, about hourly for a table
        that changes every run.
    lake_snapshot_retention_hours : int
        Hours a lake table keeps its older snapshots: how far back a query ``as of`` an
        earlier run reaches. Older ones are expired when the table is next maintained.
    lake_target_file_mb : int
        Size, in megabytes, of the files compaction writes.
    network : DatabaseNetworkSettings or None
        Where the functions that reach a database run: private subnets of a VPC of the
        client's, or (None) outside any VPC, as Lambda functions run by default.
    """

    stack_name: str = DEFAULT_STACK_NAME
    alarm_email: str | None = None
    schedule_rate_minutes: int = 5
    source_secret_name: str = SOURCE_SECRET_NAME
    warehouse_secret_name: str = WAREHOUSE_SECRET_NAME
    raw_retention_days: int = 90
    access_log_retention_days: int = 365
    processed_version_retention_days: int = 30
    schedule_enabled: bool = True
    ingest_max_concurrency: int = 3
    log_retention_days: int = 30
    powertools_version: str = POWERTOOLS.version
    ingest_max_rows: int = DEFAULT_INGEST_MAX_ROWS
    transform_max_rows: int = DEFAULT_TRANSFORM_MAX_ROWS
    load_max_files: int = DEFAULT_LOAD_MAX_FILES
    catch_up_budget_seconds: int = DEFAULT_CATCH_UP_BUDGET_SECONDS
    lake_database_name: str = ""
    athena_workgroup_name: str = ""
    athena_results_retention_days: int = 30
    # The defaults of totes.lake.maintenance.MaintenanceSettings (a test keeps them equal).
    lake_maintain_every_commits: int = 12
    lake_snapshot_retention_hours: int = 24
    lake_target_file_mb: int = 128
    network: DatabaseNetworkSettings | None = None

    def __post_init__(self) -> None:  # noqa: PLR0912 (one check per setting, in order)
        if not _STACK_NAME_PATTERN.fullmatch(self.stack_name):
            raise InvalidSettingError(
                f"stack_name {self.stack_name!r} is not a valid CloudFormation stack name: "
                "start with a letter, then letters, digits or hyphens (at most 128)"
            )
        if self.alarm_email is not None and not _EMAIL_PATTERN.fullmatch(self.alarm_email):
            raise InvalidSettingError(f"alarm_email {self.alarm_email!r} is not an email address")
        for name in ("source_secret_name", "warehouse_secret_name"):
            if not getattr(self, name):
                raise InvalidSettingError(f"{name} must not be empty")
        for name in (
            "schedule_rate_minutes",
            "raw_retention_days",
            "access_log_retention_days",
            "processed_version_retention_days",
            "ingest_max_rows",
            "transform_max_rows",
            "load_max_files",
            "catch_up_budget_seconds",
            "athena_results_retention_days",
            "lake_maintain_every_commits",
            "lake_snapshot_retention_hours",
            "lake_target_file_mb",
        ):
            if getattr(self, name) < 1:
                raise InvalidSettingError(f"{name} must be at least 1, got {getattr(self, name)}")
        if self.transform_max_rows < self.ingest_max_rows:
            raise InvalidSettingError(
                f"transform_max_rows ({self.transform_max_rows}) must be at least "
                f"ingest_max_rows ({self.ingest_max_rows}): a raw batch is never split, so a "
                "smaller transform bite would not bound its memory"
            )
        latest_budget = EXPRESS_LIMIT_SECONDS - LAKE_MAINTENANCE_TIMEOUT_SECONDS
        if self.catch_up_budget_seconds > latest_budget:
            raise InvalidSettingError(
                f"catch_up_budget_seconds must leave the lake maintenance step's "
                f"{LAKE_MAINTENANCE_TIMEOUT_SECONDS} seconds within the "
                f"{EXPRESS_LIMIT_SECONDS}-second Express limit: at most {latest_budget}, "
                f"got {self.catch_up_budget_seconds}"
            )
        if not 1 <= self.ingest_max_concurrency <= MAP_CONCURRENCY_LIMIT:
            # 0 would mean "unlimited" to Step Functions: the opposite of protecting the source.
            raise InvalidSettingError(
                f"ingest_max_concurrency must be between 1 and {MAP_CONCURRENCY_LIMIT}, "
                f"got {self.ingest_max_concurrency}"
            )
        if self.log_retention_days not in LOG_RETENTION_DAYS_ALLOWED:
            accepted = ", ".join(map(str, LOG_RETENTION_DAYS_ALLOWED))
            raise InvalidSettingError(
                f"log_retention_days must be one of {accepted} (what CloudWatch Logs accepts), "
                f"got {self.log_retention_days}"
            )
        if not _POWERTOOLS_VERSION_PATTERN.fullmatch(self.powertools_version):
            raise InvalidSettingError(
                f"powertools_version must be 'latest' or a 3.x.y release, "
                f"got {self.powertools_version!r}"
            )
        if not _GLUE_DATABASE_PATTERN.fullmatch(self.lake_database):
            raise InvalidSettingError(
                f"lake_database_name {self.lake_database!r} is not a Glue database name: "
                "lower-case letters, digits and underscores (at most 255)"
            )
        if not _WORKGROUP_PATTERN.fullmatch(self.athena_workgroup):
            raise InvalidSettingError(
                f"athena_workgroup_name {self.athena_workgroup!r} is not an Athena workgroup "
                "name: letters, digits, '.', '_' and '-' (at most 128)"
            )

    @property
    def lake_database(self) -> str:
        """The Glue database of the lake: as set, or derived from the stack's name.

        Examples
        --------
        >>> PlatformSettings(stack_name="Totes-Prod").lake_database
        'totes_prod_lake'
        """
        return self.lake_database_name or f"{self.stack_name.lower().replace('-', '_')}_lake"

    @property
    def athena_workgroup(self) -> str:
        """The Athena workgroup of the lake: as set, or derived from the stack's name.

        Examples
        --------
        >>> PlatformSettings(stack_name="Totes-Prod").athena_workgroup
        'Totes-Prod-lake'
        """
        return self.athena_workgroup_name or f"{self.stack_name}-lake"

    @classmethod
    def from_context(cls, scope: Construct) -> PlatformSettings:
        """Read the settings from the CDK context visible at ``scope``.

        Parameters
        ----------
        scope : constructs.Construct
            Usually the ``App``; keys that are absent keep their defaults.

        Returns
        -------
        PlatformSettings

        Raises
        ------
        InvalidSettingError
            When a value is present but unusable.
        """
        defaults = cls()

        def text(key: str, default: str) -> str:
            value = scope.node.try_get_context(key)
            return default if value is None else str(value).strip()

        def whole_number(key: str, default: int) -> int:
            return _parse_whole_number(key, scope.node.try_get_context(key), default)

        return cls(
            stack_name=text("stack_name", defaults.stack_name),
            alarm_email=text("alarm_email", "") or None,
            schedule_rate_minutes=whole_number(
                "schedule_rate_minutes", defaults.schedule_rate_minutes
            ),
            source_secret_name=text("source_secret_name", defaults.source_secret_name),
            warehouse_secret_name=text("warehouse_secret_name", defaults.warehouse_secret_name),
            raw_retention_days=whole_number("raw_retention_days", defaults.raw_retention_days),
            access_log_retention_days=whole_number(
                "access_log_retention_days", defaults.access_log_retention_days
            ),
            processed_version_retention_days=whole_number(
                "processed_version_retention_days", defaults.processed_version_retention_days
            ),
            schedule_enabled=_parse_switch(
                "schedule_enabled",
                scope.node.try_get_context("schedule_enabled"),
                defaults.schedule_enabled,
            ),
            ingest_max_concurrency=whole_number(
                "ingest_max_concurrency", defaults.ingest_max_concurrency
            ),
            log_retention_days=whole_number("log_retention_days", defaults.log_retention_days),
            powertools_version=text("powertools_version", defaults.powertools_version),
            ingest_max_rows=whole_number("ingest_max_rows", defaults.ingest_max_rows),
            transform_max_rows=whole_number("transform_max_rows", defaults.transform_max_rows),
            load_max_files=whole_number("load_max_files", defaults.load_max_files),
            catch_up_budget_seconds=whole_number(
                "catch_up_budget_seconds", defaults.catch_up_budget_seconds
            ),
            lake_database_name=text("lake_database_name", defaults.lake_database_name),
            athena_workgroup_name=text("athena_workgroup_name", defaults.athena_workgroup_name),
            athena_results_retention_days=whole_number(
                "athena_results_retention_days", defaults.athena_results_retention_days
            ),
            lake_maintain_every_commits=whole_number(
                "lake_maintain_every_commits", defaults.lake_maintain_every_commits
            ),
            lake_snapshot_retention_hours=whole_number(
                "lake_snapshot_retention_hours", defaults.lake_snapshot_retention_hours
            ),
            lake_target_file_mb=whole_number("lake_target_file_mb", defaults.lake_target_file_mb),
            network=DatabaseNetworkSettings.from_context(scope),
        )


#: The AWS services the functions in a VPC reach, each through an endpoint of its own.
VPC_ENDPOINT_SERVICES = ("s3", "dynamodb", "secretsmanager", "glue")
_RESOURCE_ID = {
    "vpc_id": re.compile(r"vpc-[0-9a-f]{8,17}"),
    "subnet_ids": re.compile(r"subnet-[0-9a-f]{8,17}"),
    "route_table_ids": re.compile(r"rtb-[0-9a-f]{8,17}"),
    "database_security_group_ids": re.compile(r"sg-[0-9a-f]{8,17}"),
}


@dataclass(frozen=True)
class DatabaseNetworkSettings:
    """A VPC of the client's for the functions that reach a database (context values).

    No look-up runs at synthesis: every id is given. Both databases are then reached
    inside the VPC, and AWS through VPC endpoints (ADR 18).

    Attributes
    ----------
    vpc_id : str
        The VPC the databases are in.
    subnet_ids : tuple of str
        Private subnets the functions run in (two or more, in different zones, for
        Lambda's availability).
    route_table_ids : tuple of str
        The route tables of those subnets, which the S3 and DynamoDB gateway endpoints
        join.
    database_security_group_ids : tuple of str
        The security groups of the databases; each admits the functions on
        ``database_port``.
    database_port : int
        The databases' port.
    endpoints : tuple of str
        The VPC endpoints to create (``s3``, ``dynamodb``, ``secretsmanager``, ``glue``):
        all by default; leave out those the VPC already has (a route table takes one
        gateway endpoint per service, and private DNS one interface endpoint).
    """

    vpc_id: str
    subnet_ids: tuple[str, ...]
    route_table_ids: tuple[str, ...]
    database_security_group_ids: tuple[str, ...]
    database_port: int = 5432
    endpoints: tuple[str, ...] = VPC_ENDPOINT_SERVICES

    def __post_init__(self) -> None:
        for key, pattern in _RESOURCE_ID.items():
            value = getattr(self, key)
            values = (value,) if isinstance(value, str) else value
            if not values:
                raise InvalidSettingError(f"{key} is needed with vpc_id (none given)")
            for one in values:
                if not pattern.fullmatch(one):
                    raise InvalidSettingError(f"{key}: {one!r} is not a {pattern.pattern} id")
        unknown = set(self.endpoints) - set(VPC_ENDPOINT_SERVICES)
        if unknown:
            raise InvalidSettingError(
                f"vpc_endpoints: {', '.join(sorted(unknown))} not among "
                f"{', '.join(VPC_ENDPOINT_SERVICES)}"
            )
        if not 1 <= self.database_port <= 65535:
            raise InvalidSettingError(f"database_port must be a TCP port, got {self.database_port}")

    @classmethod
    def from_context(cls, scope: Construct) -> DatabaseNetworkSettings | None:
        """The network from context, or None when ``vpc_id`` is not set.

        Raises
        ------
        InvalidSettingError
            A network setting is given without ``vpc_id``, or an id is malformed.
        """

        def ids(key: str) -> tuple[str, ...]:
            value = scope.node.try_get_context(key)
            if value is None:
                return ()
            parts = value if isinstance(value, list) else str(value).split(",")
            return tuple(str(part).strip() for part in parts if str(part).strip())

        vpc_id = str(scope.node.try_get_context("vpc_id") or "").strip()
        given = {key: ids(key) for key in _RESOURCE_ID if key != "vpc_id"}
        if not vpc_id:
            stray = [key for key, value in given.items() if value]
            if stray:
                raise InvalidSettingError(f"{', '.join(stray)} need vpc_id")
            return None
        return cls(
            vpc_id=vpc_id,
            subnet_ids=given["subnet_ids"],
            route_table_ids=given["route_table_ids"],
            database_security_group_ids=given["database_security_group_ids"],
            database_port=_parse_whole_number(
                "database_port", scope.node.try_get_context("database_port"), 5432
            ),
            endpoints=(
                VPC_ENDPOINT_SERVICES
                if scope.node.try_get_context("vpc_endpoints") is None
                else ids("vpc_endpoints")
            ),
        )


def _parse_whole_number(key: str, value: Any, default: int) -> int:
    if value is None:
        return default
    # bool is an int subclass; `true` in cdk.json is a mistake, not the number 1.
    if isinstance(value, bool):
        raise InvalidSettingError(f"{key} must be a whole number, got {value!r}")
    if isinstance(value, int):
        return value
    if isinstance(value, str) and value.strip().isdecimal():
        return int(value.strip())
    raise InvalidSettingError(f"{key} must be a whole number, got {value!r}")


def _parse_switch(key: str, value: Any, default: bool) -> bool:
    if value is None:
        return default
    if isinstance(value, bool):
        return value
    # `-c schedule_enabled=false` arrives as the text "false", which is truthy.
    if isinstance(value, str) and value.strip().lower() in _TRUE_WORDS | _FALSE_WORDS:
        return value.strip().lower() in _TRUE_WORDS
    raise InvalidSettingError(f"{key} must be true or false, got {value!r}")
