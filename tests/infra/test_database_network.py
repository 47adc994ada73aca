"""The optional VPC: with context, the functions that reach a database run in the client's
private subnets, admitted by the databases' security groups, and reach AWS through VPC
endpoints; without it, the stack has no network resources at all."""

from __future__ import annotations

from typing import Any

import pytest
from syrupy.extensions.json import JSONSnapshotExtension

from stacks.settings import InvalidSettingError
from tests.infra.template_reading import allowed_actions, logical_id, role_statements

pytestmark = pytest.mark.infra

NETWORK = {
    "vpc_id": "vpc-0a1b2c3d4e5f60718",
    "subnet_ids": "subnet-0aaaaaaaaaaaaaaa1,subnet-0bbbbbbbbbbbbbbb2",
    "route_table_ids": ["rtb-0ccccccccccccccc3", "rtb-0ddddddddddddddd4"],
    "database_security_group_ids": "sg-0eeeeeeeeeeeeeee5,sg-0fffffffffffffff6",
}


@pytest.fixture(scope="module")
def vpc_platform(tmp_path_factory: pytest.TempPathFactory) -> Any:
    from tests.infra.conftest import _synthesise  # noqa: PLC0415 (one synthesis, module-wide)

    return _synthesise(tmp_path_factory.mktemp("vpc-cdk.out"), **NETWORK)


def _of_type(template: Any, kind: str) -> dict[str, Any]:
    return template.find_resources(kind)


def test_the_functions_that_reach_a_database_run_in_the_private_subnets(vpc_platform: Any) -> None:
    # Given the platform synthesised with a VPC
    template, functions = vpc_platform.template, vpc_platform.stack.functions
    (group_id,) = _of_type(template, "AWS::EC2::SecurityGroup").keys() - {
        key for key in _of_type(template, "AWS::EC2::SecurityGroup") if "Endpoints" in key
    }
    lambdas = _of_type(template, "AWS::Lambda::Function")

    # Then ingest, load and the credentials check run in the given subnets with the
    # functions' own security group; the stages that reach no database stay outside
    for function in (functions.ingest, functions.load, functions.credentials_check):
        assert lambdas[logical_id(function)]["Properties"]["VpcConfig"] == {
            "SecurityGroupIds": [{"Fn::GetAtt": [group_id, "GroupId"]}],
            "SubnetIds": ["subnet-0aaaaaaaaaaaaaaa1", "subnet-0bbbbbbbbbbbbbbb2"],
        }
        allowed = allowed_actions(role_statements(template, function.role))
        assert "ec2:CreateNetworkInterface" in allowed
    for function in (functions.transform, functions.progress, functions.lake_maintenance):
        assert "VpcConfig" not in lambdas[logical_id(function)]["Properties"]


def test_each_database_admits_the_functions_on_its_port_and_nothing_else_is_opened(
    vpc_platform: Any,
) -> None:
    template = vpc_platform.template
    ingress = list(_of_type(template, "AWS::EC2::SecurityGroupIngress").values())
    # Then each database group admits the functions' group on 5432, and only that
    assert sorted(rule["Properties"]["GroupId"] for rule in ingress) == [
        "sg-0eeeeeeeeeeeeeee5",
        "sg-0fffffffffffffff6",
    ]
    for rule in ingress:
        properties = rule["Properties"]
        assert (properties["IpProtocol"], properties["FromPort"], properties["ToPort"]) == (
            "tcp",
            5432,
            5432,
        )
        assert "SourceSecurityGroupId" in properties
        assert "CidrIp" not in properties


def test_aws_is_reached_through_endpoints_gateway_where_aws_has_them(vpc_platform: Any) -> None:
    endpoints = {
        properties["ServiceName"].removeprefix("com.amazonaws.eu-west-2."): properties
        for properties in (
            resource["Properties"]
            for resource in _of_type(vpc_platform.template, "AWS::EC2::VPCEndpoint").values()
        )
    }
    # Then S3 and DynamoDB are gateway endpoints on the subnets' route tables, and Secrets
    # Manager and Glue (load, in the VPC, commits to the lake's tables) interface endpoints
    # in the subnets, with private DNS
    assert sorted(endpoints) == ["dynamodb", "glue", "s3", "secretsmanager"]
    for service in ("s3", "dynamodb"):
        assert endpoints[service]["VpcEndpointType"] == "Gateway"
        assert endpoints[service]["RouteTableIds"] == NETWORK["route_table_ids"]
    for service in ("secretsmanager", "glue"):
        assert endpoints[service]["VpcEndpointType"] == "Interface"
        assert endpoints[service]["PrivateDnsEnabled"] is True


def test_without_a_vpc_the_stack_has_no_network_resources(template: Any) -> None:
    for kind in ("AWS::EC2::SecurityGroup", "AWS::EC2::VPCEndpoint"):
        assert _of_type(template, kind) == {}
    for resource in _of_type(template, "AWS::Lambda::Function").values():
        assert "VpcConfig" not in resource["Properties"]


def test_the_vpc_shape_matches_the_reviewed_snapshot(
    vpc_platform: Any, mask_machine_dependent: Any, snapshot: Any
) -> None:
    network = {
        key: value
        for key, value in vpc_platform.template.to_json()["Resources"].items()
        if value["Type"].startswith("AWS::EC2::")
    }
    assert mask_machine_dependent(network) == snapshot.use_extension(JSONSnapshotExtension)


@pytest.mark.parametrize(
    ("context", "message"),
    [
        ({"subnet_ids": "subnet-0aaaaaaaaaaaaaaa1"}, "subnet_ids need vpc_id"),
        ({**NETWORK, "route_table_ids": ""}, "route_table_ids is needed with vpc_id"),
        ({**NETWORK, "subnet_ids": "subnet-1"}, "'subnet-1' is not a"),
    ],
)
def test_an_incomplete_or_malformed_network_stops_synthesis_naming_it(
    synthesise_platform: Any, context: dict[str, Any], message: str
) -> None:
    with pytest.raises(InvalidSettingError, match=message):
        synthesise_platform(**context)


def test_the_functions_in_the_vpc_are_created_after_the_endpoints_they_need(
    vpc_platform: Any,
) -> None:
    template = vpc_platform.template
    endpoints = set(_of_type(template, "AWS::EC2::VPCEndpoint"))
    lambdas = _of_type(template, "AWS::Lambda::Function")
    check = vpc_platform.stack.functions.credentials_check
    # Then the credentials check (run while the stack is created) waits for the endpoints
    assert endpoints <= set(lambdas[logical_id(check)]["DependsOn"])


def test_endpoints_the_vpc_already_has_can_be_left_out(synthesise_platform: Any) -> None:
    # Given a VPC that already has its S3 and DynamoDB gateway endpoints
    platform = synthesise_platform(**NETWORK, vpc_endpoints="secretsmanager")

    # Then only the Secrets Manager endpoint is created
    (endpoint,) = _of_type(platform.template, "AWS::EC2::VPCEndpoint").values()
    assert endpoint["Properties"]["VpcEndpointType"] == "Interface"
