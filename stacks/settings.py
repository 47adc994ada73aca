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

from totes.names import SOURCE_SECRET_NAME, WAREHOUSE_SECRET_NAME

DEFAULT_STACK_NAME = "TotesDataPlatform"

# CloudFormation's own rule for stack names.
_STACK_NAME_PATTERN = re.compile(r"[A-Za-z][A-Za-z0-9-]{0,127}")
# Deliberately loose: SNS confirms the address by mail; this only catches typos
# such as a missing "@" before a deployment is attempted.
_EMAIL_PATTERN = re.compile(r"[^@\s]+@[^@\s]+\.[^@\s]+")


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
    """

    stack_name: str = DEFAULT_STACK_NAME
    alarm_email: str | None = None
    schedule_rate_minutes: int = 5
    source_secret_name: str = SOURCE_SECRET_NAME
    warehouse_secret_name: str = WAREHOUSE_SECRET_NAME
    raw_retention_days: int = 90
    access_log_retention_days: int = 365

    def __post_init__(self) -> None:
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
        for name in ("schedule_rate_minutes", "raw_retention_days", "access_log_retention_days"):
            if getattr(self, name) < 1:
                raise InvalidSettingError(f"{name} must be at least 1, got {getattr(self, name)}")

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
