"""Reading a synthesised template the way the services read it.

Plain functions (not fixtures) shared by the infrastructure tests.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from aws_cdk.assertions import Template


def logical_id(construct: Any) -> str:
    """Logical id of the CloudFormation resource behind an L2 construct."""
    return str(construct.stack.get_logical_id(construct.node.default_child))


def _placeholder(token: Mapping[str, Any]) -> str:
    """A readable stand-in for an intrinsic function inside a joined string."""
    if "Ref" in token:
        return f"<{token['Ref']}>"
    if "Fn::GetAtt" in token:
        resource, attribute = token["Fn::GetAtt"]
        return f"<{resource}.{attribute}>"
    return f"<{json.dumps(token, sort_keys=True)}>"


def resolve_join(value: Any) -> str:
    """Render an ``Fn::Join`` (or plain string) with placeholders for its tokens.

    ``{"Fn::Join": ["", ["arn:", {"Ref": "AWS::Partition"}, ":s3"]]}`` becomes
    ``"arn:<AWS::Partition>:s3"``.
    """
    if isinstance(value, str):
        return value
    separator, parts = value["Fn::Join"]
    return str(separator).join(
        part if isinstance(part, str) else _placeholder(part) for part in parts
    )


def state_machine_definition(template: Template) -> dict[str, Any]:
    """The definition of the template's one state machine, parsed from its JSON string."""
    (state_machine,) = template.find_resources("AWS::StepFunctions::StateMachine").values()
    definition: dict[str, Any] = json.loads(
        resolve_join(state_machine["Properties"]["DefinitionString"])
    )
    return definition


def role_statements(template: Template, role: Any) -> list[dict[str, Any]]:
    """Every statement of the inline policies attached to ``role``, resources rendered."""
    role_reference = {"Ref": logical_id(role)}
    statements = []
    for policy in template.find_resources("AWS::IAM::Policy").values():
        if role_reference not in policy["Properties"]["Roles"]:
            continue
        for statement in policy["Properties"]["PolicyDocument"]["Statement"]:
            resources = statement["Resource"]
            statements.append(
                {
                    **statement,
                    "Action": _as_list(statement["Action"]),
                    "Resource": [_render(resource) for resource in _as_list(resources)],
                }
            )
    return statements


def _as_list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [value]


def _render(resource: Any) -> str:
    if isinstance(resource, str):
        return resource
    if "Fn::Join" in resource:
        return resolve_join(resource)
    return _placeholder(resource)


def allowed_actions(statements: list[dict[str, Any]]) -> dict[str, set[str]]:
    """For each allowed action, the set of resources it is allowed on."""
    allowed: dict[str, set[str]] = {}
    for statement in statements:
        if statement["Effect"] != "Allow":
            continue
        for action in statement["Action"]:
            allowed.setdefault(action, set()).update(statement["Resource"])
    return allowed
