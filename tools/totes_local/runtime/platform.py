"""The stack's resources as the local runtime creates them, read from the synthesised template.

CloudFormation names resources at deploy time (``<stack>-<logical id>-<random>``)
and fills the template's tokens (``Ref``, ``Fn::GetAtt``, ``Fn::Join``,
``Fn::Sub``) with those names. :class:`LocalPlatform` does the same with
deterministic names in one local account and region, so that the state machine
definition and the functions' environment variables point at the buckets,
table, topic and functions that the local runtime creates.

The names start with an *instance name*: the stack's name, or the stack's name
and a suffix, as when the same app is deployed twice under two stack names. The
local service holds one instance per source and warehouse pair.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from totes.errors import TotesError
from totes_local.runtime.assembly import AssemblyFormatError, CloudAssembly

#: moto's default account: every local ARN names it.
LOCAL_ACCOUNT = "123456789012"
LOCAL_REGION = "eu-west-2"

_BUCKET = "AWS::S3::Bucket"
_TABLE = "AWS::DynamoDB::Table"
_TOPIC = "AWS::SNS::Topic"
_FUNCTION = "AWS::Lambda::Function"
_STATE_MACHINE = "AWS::StepFunctions::StateMachine"
_LOG_GROUP = "AWS::Logs::LogGroup"
_LAYER = "AWS::Lambda::LayerVersion"
_ALIAS = "AWS::Lambda::Alias"
_GLUE_DATABASE = "AWS::Glue::Database"
_WORKGROUP = "AWS::Athena::WorkGroup"
_SUB_VARIABLE = re.compile(r"\$\{([^}!][^}]*)\}")
_DEFAULT_MEMORY_MB = 128
_DEFAULT_TIMEOUT_S = 3


class UnresolvableTokenError(TotesError):
    """A template value uses an intrinsic function or reference the local runtime cannot fill."""


@dataclass(frozen=True)
class LocalBucket:
    """An S3 bucket of the stack; ``versioned`` when the template enables versioning."""

    logical_id: str
    name: str
    versioned: bool = False


@dataclass(frozen=True)
class LocalTable:
    """A DynamoDB table of the stack, with the key it is created with."""

    logical_id: str
    name: str
    key_schema: list[dict[str, str]]
    attribute_definitions: list[dict[str, str]]


@dataclass(frozen=True)
class LocalTopic:
    """An SNS topic of the stack."""

    logical_id: str
    name: str
    arn: str


@dataclass(frozen=True)
class LocalLayer:
    """A layer of the stack whose zip is an asset of the cloud assembly."""

    logical_id: str
    name: str
    zip_path: Path


@dataclass(frozen=True)
class LocalFunctionSpec:
    """A Lambda function of the stack: where its code is and what it runs with.

    Attributes
    ----------
    handler : str
        ``<module>.<function>``, as in the template (``handler.handler``).
    code : pathlib.Path
        The function's code folder inside the cloud assembly.
    environment : dict of str to str
        The function's environment variables, tokens resolved to local names.
    """

    logical_id: str
    name: str
    arn: str
    handler: str
    code: Path
    environment: dict[str, str]
    memory_mb: int
    timeout_s: int
    log_group: str
    #: Logical ids of the stack's layers the function uses, in the template's order.
    layers: tuple[str, ...] = ()
    runtime: str = "python3.12"
    #: The alias pointing at the function's current version, which the template invokes
    #: (each deployment publishes a version when the function changed and moves it).
    alias: str | None = None
    #: Every statement of its role's policies, tokens resolved to local names and ARNs.
    role_statements: tuple[dict[str, Any], ...] = ()

    @property
    def invoked_arn(self) -> str:
        """What the state machine invokes: the alias's ARN, or the function's without one."""
        return f"{self.arn}:{self.alias}" if self.alias else self.arn


@dataclass(frozen=True)
class LocalStateMachine:
    """The stack's state machine, its definition resolved to local ARNs."""

    logical_id: str
    name: str
    arn: str
    definition: str
    type: str
    role_arn: str

    @property
    def definition_json(self) -> dict[str, Any]:
        """The definition, parsed."""
        parsed: dict[str, Any] = json.loads(self.definition)
        return parsed


@dataclass(frozen=True)
class LocalPlatform:
    """Every resource of the stack that the local runtime creates, with local names.

    Build it with :meth:`from_assembly`.
    """

    stack_name: str
    account: str
    region: str
    buckets: tuple[LocalBucket, ...]
    tables: tuple[LocalTable, ...]
    topics: tuple[LocalTopic, ...]
    functions: tuple[LocalFunctionSpec, ...]
    state_machine: LocalStateMachine
    layers: tuple[LocalLayer, ...] = ()
    #: Glue databases of the stack, under names of this instance (the lake's catalog).
    glue_databases: tuple[str, ...] = ()
    #: The stack's outputs, by name, with local values (those the runtime can fill).
    outputs: dict[str, str] = field(default_factory=dict)

    @classmethod
    def from_assembly(
        cls,
        assembly: CloudAssembly,
        *,
        account: str = LOCAL_ACCOUNT,
        region: str = LOCAL_REGION,
        instance_name: str | None = None,
    ) -> LocalPlatform:
        """Name every resource of the assembly's stack locally and resolve the tokens.

        ``instance_name`` (default: the stack's name) starts every generated name.

        Raises
        ------
        AssemblyFormatError
            The template holds no state machine, or several.
        UnresolvableTokenError
            The definition or an environment variable uses a token that cannot be filled.

        Examples
        --------
        >>> platform = LocalPlatform.from_assembly(CloudAssembly.read(Path("cdk.out")))
        ... # doctest: +SKIP
        >>> platform.state_machine.type  # doctest: +SKIP
        'EXPRESS'
        """
        return _Resolver(
            assembly, account=account, region=region, instance_name=instance_name
        ).platform()


def _bounded(name: str, limit: int) -> str:
    """``name`` cut to ``limit`` characters; a cut name ends in a digest of the whole, so it
    stays unique, as CloudFormation's generated names do."""
    if len(name) <= limit:
        return name
    digest = hashlib.sha256(name.encode()).hexdigest()[:8]
    return f"{name[: limit - 9].rstrip('-.')}-{digest}"


class _Resolver:
    def __init__(
        self, assembly: CloudAssembly, *, account: str, region: str, instance_name: str | None
    ) -> None:
        self.assembly = assembly
        self.account = account
        self.region = region
        self.stack = instance_name or assembly.stack_name
        self.resources: dict[str, dict[str, Any]] = assembly.template["Resources"]

    def platform(self) -> LocalPlatform:
        machines = self._of_type(_STATE_MACHINE)
        if len(machines) != 1:
            raise AssemblyFormatError(
                f"stack {self.stack} holds {len(machines)} state machines; the local runtime "
                "runs exactly one"
            )
        (machine_id,) = machines
        return LocalPlatform(
            stack_name=self.stack,
            account=self.account,
            region=self.region,
            buckets=tuple(self._bucket(i) for i in self._of_type(_BUCKET)),
            tables=tuple(self._table(i) for i in self._of_type(_TABLE)),
            topics=tuple(LocalTopic(i, self._name(i), self._ref(i)) for i in self._of_type(_TOPIC)),
            functions=tuple(self._function(i) for i in self._of_type(_FUNCTION)),
            state_machine=self._state_machine(machine_id),
            layers=tuple(self._layer(i) for i in self._of_type(_LAYER)),
            glue_databases=tuple(self._name(i) for i in self._of_type(_GLUE_DATABASE)),
            outputs=self._outputs(),
        )

    def _outputs(self) -> dict[str, str]:
        outputs = {}
        for name, output in self.assembly.template.get("Outputs", {}).items():
            # An output of a resource the local runtime does not create has no local value.
            with contextlib.suppress(UnresolvableTokenError):
                outputs[name] = str(self.resolve(output["Value"]))
        return outputs

    def _of_type(self, resource_type: str) -> list[str]:
        return [
            logical_id
            for logical_id, resource in self.resources.items()
            if resource.get("Type") == resource_type
        ]

    def _properties(self, logical_id: str) -> dict[str, Any]:
        properties: dict[str, Any] = self.resources[logical_id].get("Properties", {})
        return properties

    # -- names and ARNs -------------------------------------------------------------------

    def _name(self, logical_id: str) -> str:
        resource_type = self.resources[logical_id]["Type"]
        explicit = {
            _BUCKET: "BucketName",
            _TABLE: "TableName",
            _TOPIC: "TopicName",
            _FUNCTION: "FunctionName",
            _STATE_MACHINE: "StateMachineName",
            _LOG_GROUP: "LogGroupName",
            _LAYER: "LayerName",
            _WORKGROUP: "Name",
        }.get(resource_type)
        properties = self._properties(logical_id)
        if resource_type == _GLUE_DATABASE:
            # Its name is explicit in the template, but one local service holds a deployment
            # per source and warehouse pair: each gets a database of its own.
            return _bounded(f"{self.stack}_lake".lower().replace("-", "_"), 255)
        if explicit and explicit in properties:
            return str(self.resolve(properties[explicit]))
        generated = f"{self.stack}-{logical_id}"
        if resource_type == _BUCKET:
            return _bounded(generated.lower(), 63)
        if resource_type == _FUNCTION:
            return _bounded(generated, 64)
        if resource_type == _LOG_GROUP:
            return f"/local/{generated}"
        return generated

    def _arn(self, logical_id: str) -> str:
        resource_type = self.resources[logical_id]["Type"]
        if resource_type == _ALIAS:  # the function's ARN qualified by the alias's name
            properties = self._properties(logical_id)
            function = properties.get("FunctionName")
            if not isinstance(function, dict) or function.get("Ref") not in self.resources:
                raise UnresolvableTokenError(
                    f"alias {logical_id} is not of a function of the stack"
                )
            return f"{self._arn(str(function['Ref']))}:{properties['Name']}"
        name = self._name(logical_id)
        prefix = f"arn:aws:{{}}:{self.region}:{self.account}"
        arns = {
            _BUCKET: f"arn:aws:s3:::{name}",
            _TABLE: prefix.format("dynamodb") + f":table/{name}",
            _TOPIC: prefix.format("sns") + f":{name}",
            _FUNCTION: prefix.format("lambda") + f":function:{name}",
            _STATE_MACHINE: prefix.format("states") + f":stateMachine:{name}",
            _LOG_GROUP: prefix.format("logs") + f":log-group:{name}:*",
            _LAYER: prefix.format("lambda") + f":layer:{name}:1",
            "AWS::IAM::Role": f"arn:aws:iam::{self.account}:role/{name}",
        }
        if resource_type not in arns:
            raise UnresolvableTokenError(
                f"the local runtime gives no ARN to {logical_id} ({resource_type})"
            )
        return arns[resource_type]

    def _ref(self, name: str) -> str:
        pseudo = {
            "AWS::Partition": "aws",
            "AWS::Region": self.region,
            "AWS::AccountId": self.account,
            "AWS::StackName": self.stack,
            "AWS::URLSuffix": "amazonaws.com",
        }
        if name in pseudo:
            return pseudo[name]
        if name not in self.resources:
            raise UnresolvableTokenError(f"Ref to {name}, which is not a resource of {self.stack}")
        resource_type = self.resources[name]["Type"]
        if resource_type in (_TOPIC, _STATE_MACHINE, _LAYER, _ALIAS):
            return self._arn(name)
        if resource_type in (_BUCKET, _TABLE, _FUNCTION, _LOG_GROUP, _GLUE_DATABASE, _WORKGROUP):
            return self._name(name)
        raise UnresolvableTokenError(f"Ref to {name} ({resource_type}) has no local value")

    def _get_att(self, logical_id: str, attribute: str) -> str:
        if logical_id not in self.resources:
            raise UnresolvableTokenError(f"Fn::GetAtt of {logical_id}, which is not a resource")
        if attribute in ("Arn", "TopicArn"):
            return self._arn(logical_id)
        if attribute in ("TopicName", "Name"):
            return self._name(logical_id)
        raise UnresolvableTokenError(f"Fn::GetAtt {logical_id}.{attribute} has no local value")

    # -- intrinsic functions --------------------------------------------------------------

    def resolve(self, value: Any) -> Any:
        """Fill every token inside ``value`` (a template fragment)."""
        if isinstance(value, list):
            return [self.resolve(item) for item in value]
        if not isinstance(value, dict):
            return value
        if len(value) == 1:
            ((key, argument),) = value.items()
            if key == "Ref" or key.startswith("Fn::"):
                return self._intrinsic(key, argument)
        return {key: self.resolve(item) for key, item in value.items()}

    def _intrinsic(self, key: str, argument: Any) -> str:
        if key == "Ref":
            return self._ref(str(argument))
        if key == "Fn::GetAtt":
            logical_id, attribute = (
                argument.split(".", 1) if isinstance(argument, str) else argument
            )
            return self._get_att(logical_id, attribute)
        if key == "Fn::Join":
            separator, parts = argument
            return str(separator).join(str(self.resolve(part)) for part in parts)
        if key == "Fn::Sub":
            return self._sub(argument)
        raise UnresolvableTokenError(f"the local runtime does not evaluate {key}")

    def _sub(self, argument: Any) -> str:
        text, variables = (argument, {}) if isinstance(argument, str) else argument
        values: Mapping[str, Any] = {key: self.resolve(item) for key, item in variables.items()}

        def fill(match: re.Match[str]) -> str:
            name = match.group(1)
            if name in values:
                return str(values[name])
            if "." in name:
                logical_id, attribute = name.split(".", 1)
                return self._get_att(logical_id, attribute)
            return self._ref(name)

        return _SUB_VARIABLE.sub(fill, str(text))

    # -- resources ------------------------------------------------------------------------

    def _bucket(self, logical_id: str) -> LocalBucket:
        versioning = self._properties(logical_id).get("VersioningConfiguration", {})
        return LocalBucket(
            logical_id, self._name(logical_id), versioned=versioning.get("Status") == "Enabled"
        )

    def _table(self, logical_id: str) -> LocalTable:
        properties = self._properties(logical_id)
        return LocalTable(
            logical_id=logical_id,
            name=self._name(logical_id),
            key_schema=self.resolve(properties["KeySchema"]),
            attribute_definitions=self.resolve(properties["AttributeDefinitions"]),
        )

    def _function(self, logical_id: str) -> LocalFunctionSpec:
        properties = self._properties(logical_id)
        code = properties.get("Code", {})
        object_key = code.get("S3Key")
        if not isinstance(object_key, str):
            raise AssemblyFormatError(
                f"function {logical_id} has no code asset the local runtime can find"
            )
        variables = properties.get("Environment", {}).get("Variables", {})
        layers = tuple(
            layer["Ref"]
            for layer in properties.get("Layers", [])
            if isinstance(layer, dict)
            and self.resources.get(str(layer.get("Ref")), {}).get("Type") == _LAYER
        )
        log_group = properties.get("LoggingConfig", {}).get("LogGroup")
        name = self._name(logical_id)
        aliases = [
            str(self._properties(alias)["Name"])
            for alias in self._of_type(_ALIAS)
            if self._properties(alias).get("FunctionName") == {"Ref": logical_id}
        ]
        if len(aliases) > 1:
            raise AssemblyFormatError(
                f"function {logical_id} has {len(aliases)} aliases; the local runtime keeps one"
            )
        return LocalFunctionSpec(
            logical_id=logical_id,
            name=name,
            arn=self._arn(logical_id),
            handler=str(properties.get("Handler", "handler.handler")),
            code=self.assembly.asset_path(object_key),
            environment={key: str(self.resolve(item)) for key, item in variables.items()},
            memory_mb=int(properties.get("MemorySize", _DEFAULT_MEMORY_MB)),
            timeout_s=int(properties.get("Timeout", _DEFAULT_TIMEOUT_S)),
            log_group=str(self.resolve(log_group)) if log_group else f"/aws/lambda/{name}",
            layers=layers,
            runtime=str(properties.get("Runtime", "python3.12")),
            alias=aliases[0] if aliases else None,
            role_statements=self._role_statements(properties.get("Role")),
        )

    def _role_statements(self, role: Any) -> tuple[dict[str, Any], ...]:
        """The statements of the role's inline policies and of the policies attached to it."""
        if not (isinstance(role, dict) and isinstance(role.get("Fn::GetAtt"), list)):
            return ()
        role_id = role["Fn::GetAtt"][0]
        documents = [
            policy["PolicyDocument"] for policy in self._properties(role_id).get("Policies", [])
        ] + [
            self._properties(policy_id)["PolicyDocument"]
            for policy_id in self._of_type("AWS::IAM::Policy")
            if {"Ref": role_id} in self._properties(policy_id).get("Roles", [])
        ]
        if self._properties(role_id).get("ManagedPolicyArns"):
            raise AssemblyFormatError(
                f"role {role_id} has managed policies, whose statements the template lacks"
            )
        return tuple(
            self.resolve(statement) for document in documents for statement in document["Statement"]
        )

    def _layer(self, logical_id: str) -> LocalLayer:
        content = self._properties(logical_id).get("Content", {})
        object_key = content.get("S3Key")
        if not isinstance(object_key, str):
            raise AssemblyFormatError(f"layer {logical_id} has no asset the local runtime can find")
        return LocalLayer(logical_id, self._name(logical_id), self.assembly.asset_path(object_key))

    def _state_machine(self, logical_id: str) -> LocalStateMachine:
        properties = self._properties(logical_id)
        definition = properties.get("DefinitionString")
        if definition is None and "Definition" in properties:
            definition = json.dumps(self.resolve(properties["Definition"]))
        if definition is None:
            raise AssemblyFormatError(f"state machine {logical_id} has no definition")
        role = properties.get("RoleArn")
        return LocalStateMachine(
            logical_id=logical_id,
            name=self._name(logical_id),
            arn=self._arn(logical_id),
            definition=str(self.resolve(definition)),
            type=str(properties.get("StateMachineType", "STANDARD")),
            role_arn=(
                str(self.resolve(role))
                if role
                else f"arn:aws:iam::{self.account}:role/{self.stack}-states"
            ),
        )
