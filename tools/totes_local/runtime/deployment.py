"""Deploy the synthesised stack into the local AWS service, through the AWS APIs only.

:class:`LocalDeployment` does locally what CloudFormation does on ``cdk
deploy``: it creates the buckets, the watermark table, the topic, the lake's Glue
database, the layers, the functions and the state machine of the template under
local names, and on
the next run updates what changed (a function's code or configuration, the
definition) and keeps everything else, data included. ``destroy`` deletes it
all, data included (``totes run --fresh``).

Versions: a function with an alias in the template (which the state machine invokes)
gets a version published whenever its code or configuration changed, and the alias
moved to it; as CloudFormation does, the deployment waits until each such version is
``Active`` and fails if one is ``Failed``. SnapStart is not emulated (the stack turns it
off).

Layers: a layer whose zip holds compiled extensions built for Lambda's Python
(the dependencies layer) is not uploaded; the workers take third-party packages
from the local environment instead. The public Powertools layer is not an asset of the
assembly and is likewise taken from the local environment. What the local environment
holds for the local tooling alone, no function can import, as in Lambda (see
:data:`LOCAL_TOOLING_ONLY`). Athena has no local service: the lake is queried locally
with DuckDB (``totes lake query``).
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import time
import zipfile
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from totes.errors import TotesError
from totes_local.runtime.lambda_bootstrap import ABSENT_PACKAGES_VARIABLE
from totes_local.runtime.platform import LocalFunctionSpec, LocalLayer, LocalPlatform

_ROLE_TRUST = {
    "Version": "2012-10-17",
    "Statement": [
        {
            "Effect": "Allow",
            "Principal": {"Service": ["lambda.amazonaws.com", "states.amazonaws.com"]},
            "Action": "sts:AssumeRole",
        }
    ],
}
_FIXED_ZIP_TIME = (1980, 1, 1, 0, 0, 0)
#: Packages of the local environment that serve the local tooling (``totes lake``) and
#: that no layer of the stack ships: no function can import them, as in Lambda (pyarrow
#: would import numpy, and pandas on its first conversion of Python objects: 0.4 s of
#: each cold start, and memory, that Lambda does not spend).
LOCAL_TOOLING_ONLY = ("awswrangler", "pandas", "numpy")
_NOT_FOUND = ("ResourceNotFoundException", "NoSuchEntity", "404", "NoSuchBucket", "NotFound")
#: A bucket still written to while it is deleted is emptied again, this often, this far apart.
_BUCKET_DELETE_ATTEMPTS = 5
_BUCKET_DELETE_PAUSE_S = 0.5
#: How long a published version may stay ``Pending``: Lambda gives a snapshot's init
#: 130 seconds (or the function's timeout if longer, at most 15 minutes).
_VERSION_ACTIVE_WITHIN_S = 130.0
_VERSION_STATE_POLL_S = 0.05


class VersionNotActiveError(TotesError):
    """A published version did not become Active (its snapshot's init failed or hung)."""


def zip_folder(folder: Path) -> bytes:
    """A reproducible zip of a folder: sorted entries, fixed times (the same code, the same digest).

    Examples
    --------
    >>> zip_folder(Path("lambdas/ingest")) == zip_folder(Path("lambdas/ingest"))
    True
    """
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for path in sorted(folder.rglob("*")):
            if path.is_file() and "__pycache__" not in path.parts:
                info = zipfile.ZipInfo(str(path.relative_to(folder)), _FIXED_ZIP_TIME)
                info.external_attr = 0o644 << 16
                archive.writestr(info, path.read_bytes(), zipfile.ZIP_DEFLATED)
    return buffer.getvalue()


def runs_locally(layer_zip: Path) -> bool:
    """Whether a layer holds only what any Python can import (no compiled extensions).

    Examples
    --------
    >>> runs_locally(Path("build/layers/core.zip"))  # doctest: +SKIP
    True
    """
    with zipfile.ZipFile(layer_zip) as archive:
        return not any(name.endswith((".so", ".pyd")) for name in archive.namelist())


def _error_code(error: Exception) -> str:
    response = getattr(error, "response", None)
    return str((response or {}).get("Error", {}).get("Code", ""))


def _missing(error: Exception) -> bool:
    return _error_code(error) in _NOT_FOUND


@dataclass(frozen=True)
class DeployResult:
    """What a deployment found: earlier state to continue, or none."""

    continued: bool
    functions_updated: tuple[str, ...]


class LocalDeployment:
    """The stack of one :class:`~totes_local.runtime.platform.LocalPlatform` in the service.

    Parameters
    ----------
    platform
        The stack's resources under this deployment's names.
    clients
        ``service name -> boto3 client`` of the local service.
    function_environment
        Variables added to every function's own (the databases' DSNs, test limits).
    """

    def __init__(
        self,
        platform: LocalPlatform,
        clients: Any,
        function_environment: Mapping[str, Mapping[str, str]],
    ) -> None:
        self.platform = platform
        self.client = clients
        self.function_environment = function_environment
        self.role_arn = f"arn:aws:iam::{platform.account}:role/{platform.stack_name}-local"
        self.queue_url: str | None = None

    # -- deploying ------------------------------------------------------------------------

    def deploy(self) -> DeployResult:
        """Create what is missing, update what changed, keep the rest (and its data).

        Examples
        --------
        >>> LocalDeployment(platform, clients, {}).deploy().continued  # doctest: +SKIP
        True
        """
        continued = self._exists()
        self._role()
        for bucket in self.platform.buckets:
            self._bucket(bucket.name, versioned=bucket.versioned)
        for table in self.platform.tables:
            self._table(table.name, table.key_schema, table.attribute_definitions)
        self._topics()
        for database in self.platform.glue_databases:
            self._glue_database(database)
        layer_arns = {layer.logical_id: self._layer(layer) for layer in self.platform.layers}
        updated = tuple(
            function.name
            for function in self.platform.functions
            if self._function(function, layer_arns)
        )
        published = [
            (function, self._publish(function))
            for function in self.platform.functions
            if function.alias is not None
        ]
        # As CloudFormation: an alias moves only to a version that became Active.
        for function, version in published:
            self._await_active(function.name, version)
        for function, version in published:
            self._point_alias(function, version)
        self._state_machine()
        return DeployResult(continued=continued, functions_updated=updated)

    def _exists(self) -> bool:
        sfn, dynamodb = self.client("stepfunctions"), self.client("dynamodb")
        try:
            sfn.describe_state_machine(stateMachineArn=self.platform.state_machine.arn)
            for table in self.platform.tables:
                dynamodb.describe_table(TableName=table.name)
        except (
            sfn.exceptions.StateMachineDoesNotExist,
            dynamodb.exceptions.ResourceNotFoundException,
        ):
            return False
        return True

    @property
    def _queue_name(self) -> str:
        return f"{self.platform.stack_name}-notifications"

    def _role(self) -> None:
        iam = self.client("iam")
        with contextlib.suppress(iam.exceptions.EntityAlreadyExistsException):
            iam.create_role(
                RoleName=self.role_arn.rsplit("/", 1)[1],
                AssumeRolePolicyDocument=json.dumps(_ROLE_TRUST),
            )

    def _bucket(self, name: str, *, versioned: bool) -> None:
        s3 = self.client("s3")
        try:
            s3.head_bucket(Bucket=name)
        except Exception as exc:
            if not _missing(exc):
                raise
            s3.create_bucket(
                Bucket=name,
                CreateBucketConfiguration={"LocationConstraint": self.platform.region},
            )
        # On every deployment: a run stopped right after creating the bucket left it without.
        if versioned:
            s3.put_bucket_versioning(Bucket=name, VersioningConfiguration={"Status": "Enabled"})

    def _table(self, name: str, key_schema: Any, attributes: Any) -> None:
        dynamodb = self.client("dynamodb")
        try:
            dynamodb.describe_table(TableName=name)
        except dynamodb.exceptions.ResourceNotFoundException:
            dynamodb.create_table(
                TableName=name,
                KeySchema=key_schema,
                AttributeDefinitions=attributes,
                BillingMode="PAY_PER_REQUEST",
            )

    def _topics(self) -> None:
        if not self.platform.topics:
            return
        sns, sqs = self.client("sns"), self.client("sqs")
        queue_url = sqs.create_queue(QueueName=self._queue_name)["QueueUrl"]
        queue_arn = sqs.get_queue_attributes(QueueUrl=queue_url, AttributeNames=["QueueArn"])[
            "Attributes"
        ]["QueueArn"]
        self.queue_url = queue_url
        for topic in self.platform.topics:
            arn = sns.create_topic(Name=topic.name)["TopicArn"]
            if arn != topic.arn:
                raise RuntimeError(f"the local service named topic {topic.name} {arn}")
            subscribed = sns.list_subscriptions_by_topic(TopicArn=arn)["Subscriptions"]
            if not any(s["Endpoint"] == queue_arn for s in subscribed):
                sns.subscribe(TopicArn=arn, Protocol="sqs", Endpoint=queue_arn)

    def _glue_database(self, name: str) -> None:
        glue = self.client("glue")
        with contextlib.suppress(glue.exceptions.AlreadyExistsException):
            glue.create_database(
                DatabaseInput={
                    "Name": name,
                    "Description": f"The lake of {self.platform.stack_name}",
                }
            )

    def _layer(self, layer: LocalLayer) -> str | None:
        if not runs_locally(layer.zip_path):
            return None
        content = layer.zip_path.read_bytes()
        digest = _sha256_b64(content)
        lambda_ = self.client("lambda")
        versions = lambda_.list_layer_versions(LayerName=layer.name).get("LayerVersions", [])
        for version in versions:
            found = lambda_.get_layer_version(
                LayerName=layer.name, VersionNumber=version["Version"]
            )
            if found.get("Content", {}).get("CodeSha256") == digest:
                return str(version["LayerVersionArn"])
        published = lambda_.publish_layer_version(
            LayerName=layer.name, Content={"ZipFile": content}
        )
        return str(published["LayerVersionArn"])

    def _function(self, spec: LocalFunctionSpec, layer_arns: Mapping[str, str | None]) -> bool:
        lambda_ = self.client("lambda")
        code = zip_folder(spec.code)
        configuration: dict[str, Any] = {
            "Role": self.role_arn,
            "Handler": spec.handler,
            "Runtime": spec.runtime,
            "Timeout": spec.timeout_s,
            "MemorySize": spec.memory_mb,
            "Environment": {
                "Variables": {
                    **spec.environment,
                    **self.function_environment.get(spec.logical_id, {}),
                    ABSENT_PACKAGES_VARIABLE: ",".join(LOCAL_TOOLING_ONLY),
                }
            },
            "Layers": [arn for arn in (layer_arns.get(i) for i in spec.layers) if arn],
        }
        try:
            current = lambda_.get_function(FunctionName=spec.name)["Configuration"]
        except lambda_.exceptions.ResourceNotFoundException:
            lambda_.create_function(FunctionName=spec.name, Code={"ZipFile": code}, **configuration)
            return True
        changed = False
        if current.get("CodeSha256") != _sha256_b64(code):
            lambda_.update_function_code(FunctionName=spec.name, ZipFile=code)
            changed = True
        present = {
            "Role": current.get("Role"),
            "Handler": current.get("Handler"),
            "Runtime": current.get("Runtime"),
            "Timeout": current.get("Timeout"),
            "MemorySize": current.get("MemorySize"),
            "Environment": {"Variables": current.get("Environment", {}).get("Variables", {})},
            "Layers": [layer["Arn"] for layer in current.get("Layers", [])],
        }
        if present != configuration:
            lambda_.update_function_configuration(FunctionName=spec.name, **configuration)
            changed = True
        return changed

    def _publish(self, spec: LocalFunctionSpec) -> str:
        """Publish a version if the function changed since the last; its number."""
        return str(self.client("lambda").publish_version(FunctionName=spec.name)["Version"])

    def _point_alias(self, spec: LocalFunctionSpec, version: str) -> None:
        lambda_ = self.client("lambda")
        try:
            current = lambda_.get_alias(FunctionName=spec.name, Name=spec.alias)
        except lambda_.exceptions.ResourceNotFoundException:
            lambda_.create_alias(FunctionName=spec.name, Name=spec.alias, FunctionVersion=version)
        else:
            if current["FunctionVersion"] != version:
                lambda_.update_alias(
                    FunctionName=spec.name, Name=spec.alias, FunctionVersion=version
                )

    def _await_active(self, name: str, version: str) -> None:
        lambda_ = self.client("lambda")
        deadline = time.monotonic() + _VERSION_ACTIVE_WITHIN_S
        while True:
            state = lambda_.get_function_configuration(FunctionName=name, Qualifier=version)
            if state.get("State") == "Active":
                return
            if state.get("State") == "Failed" or time.monotonic() > deadline:
                raise VersionNotActiveError(
                    f"version {version} of {name} is {state.get('State')}: its init failed "
                    "while its snapshot was taken (the log file has the error); its alias "
                    "was left where it was"
                )
            time.sleep(_VERSION_STATE_POLL_S)

    def _state_machine(self) -> None:
        machine = self.platform.state_machine
        sfn = self.client("stepfunctions")
        try:
            current = sfn.describe_state_machine(stateMachineArn=machine.arn)
        except sfn.exceptions.StateMachineDoesNotExist:
            created = sfn.create_state_machine(
                name=machine.name,
                definition=machine.definition,
                roleArn=self.role_arn,
                type=machine.type,
            )
            if created["stateMachineArn"] != machine.arn:
                raise RuntimeError(
                    f"the local service named {machine.name} {created['stateMachineArn']}"
                ) from None
            return
        if current["definition"] != machine.definition:
            sfn.update_state_machine(stateMachineArn=machine.arn, definition=machine.definition)

    # -- destroying -----------------------------------------------------------------------

    def destroy(self) -> None:
        """Delete every resource of this deployment, and its data.

        Examples
        --------
        >>> LocalDeployment(platform, clients, {}).destroy()  # doctest: +SKIP
        """
        sfn = self.client("stepfunctions")
        with contextlib.suppress(sfn.exceptions.StateMachineDoesNotExist):
            sfn.delete_state_machine(stateMachineArn=self.platform.state_machine.arn)
        lambda_ = self.client("lambda")
        for function in self.platform.functions:
            with contextlib.suppress(lambda_.exceptions.ResourceNotFoundException):
                lambda_.delete_function(FunctionName=function.name)
        dynamodb = self.client("dynamodb")
        for table in self.platform.tables:
            with contextlib.suppress(dynamodb.exceptions.ResourceNotFoundException):
                dynamodb.delete_table(TableName=table.name)
        for bucket in self.platform.buckets:
            self._delete_bucket(bucket.name)
        glue = self.client("glue")
        for database in self.platform.glue_databases:
            with contextlib.suppress(glue.exceptions.EntityNotFoundException):
                glue.delete_database(Name=database)
        sns = self.client("sns")
        for topic in self.platform.topics:
            sns.delete_topic(TopicArn=topic.arn)
        sqs = self.client("sqs")
        with contextlib.suppress(sqs.exceptions.QueueDoesNotExist):
            url = sqs.get_queue_url(QueueName=self._queue_name)
            sqs.delete_queue(QueueUrl=url["QueueUrl"])

    def _delete_bucket(self, name: str) -> None:
        """Empty the bucket and delete it, emptying again while something still writes.

        An invocation of an execution that already ended (a Map item still running when
        its Map failed) may put an object between the emptying and the deletion.
        """
        s3 = self.client("s3")
        for attempt in range(1, _BUCKET_DELETE_ATTEMPTS + 1):
            try:
                self._empty_bucket(s3, name)
                s3.delete_bucket(Bucket=name)
                return
            except Exception as exc:
                if _missing(exc):
                    return
                if _error_code(exc) != "BucketNotEmpty" or attempt == _BUCKET_DELETE_ATTEMPTS:
                    raise
                time.sleep(_BUCKET_DELETE_PAUSE_S)

    @staticmethod
    def _empty_bucket(s3: Any, name: str) -> None:
        pages = s3.get_paginator("list_object_versions").paginate(Bucket=name)
        for page in pages:
            doomed = [
                {"Key": item["Key"], "VersionId": item["VersionId"]}
                for kind in ("Versions", "DeleteMarkers")
                for item in page.get(kind, [])
            ]
            if doomed:
                s3.delete_objects(Bucket=name, Delete={"Objects": doomed, "Quiet": True})


def _sha256_b64(content: bytes) -> str:
    import base64  # noqa: PLC0415

    return base64.b64encode(hashlib.sha256(content).digest()).decode()
