"""The optional VPC placement of the functions that reach a database (context ``vpc_id``)."""

from __future__ import annotations

from aws_cdk import Acknowledgment, Stack, Validations
from aws_cdk import aws_ec2 as ec2
from aws_cdk import aws_iam as iam
from aws_cdk import aws_lambda as lambda_
from constructs import Construct

from stacks.settings import DatabaseNetworkSettings

#: AWS services the functions in the VPC call: S3 and DynamoDB through gateway endpoints
#: (free), Secrets Manager and Glue (load commits to the lake's tables) through interface
#: endpoints (billed per hour and zone), each by the construct id given here.
#: Logs, metrics (EMF, in the logs) and traces leave through the Lambda service itself.
_GATEWAY_SERVICES = ("s3", "dynamodb")
_INTERFACE_SERVICES = {"secretsmanager": "SecretsManagerEndpoint", "glue": "GlueEndpoint"}
_HTTPS = 443
#: What Lambda needs to attach a function to the subnets (its network interfaces).
_ENI_ACTIONS = [
    "ec2:CreateNetworkInterface",
    "ec2:DescribeNetworkInterfaces",
    "ec2:DescribeSubnets",
    "ec2:DeleteNetworkInterface",
    "ec2:AssignPrivateIpAddresses",
    "ec2:UnassignPrivateIpAddresses",
]


class DatabaseNetwork(Construct):
    """Private subnets for the functions that reach a database, and the way out to AWS.

    The functions get a security group of their own, which each database's group admits
    on the database port; they reach S3 and DynamoDB through gateway endpoints on the
    subnets' route tables, and Secrets Manager and Glue through interface endpoints with
    private DNS. With no NAT gateway, nothing else is reachable from those subnets.

    Parameters
    ----------
    scope : constructs.Construct
        Parent construct.
    construct_id : str
        Id of this construct within ``scope``.
    settings : stacks.settings.DatabaseNetworkSettings
        The VPC, subnets, route tables and database security groups (context).
    """

    def __init__(
        self, scope: Construct, construct_id: str, *, settings: DatabaseNetworkSettings
    ) -> None:
        super().__init__(scope, construct_id)
        self.settings = settings
        region = Stack.of(self).region
        self.functions_group = ec2.CfnSecurityGroup(
            self,
            "FunctionsSecurityGroup",
            group_description="totes functions that reach a database",
            vpc_id=settings.vpc_id,
            security_group_egress=[
                ec2.CfnSecurityGroup.EgressProperty(
                    ip_protocol="tcp",
                    from_port=_HTTPS,
                    to_port=_HTTPS,
                    cidr_ip="0.0.0.0/0",
                    description="AWS APIs, through the VPC endpoints (no NAT: nothing else)",
                )
            ],
        )
        port = settings.database_port
        for number, database_group in enumerate(settings.database_security_group_ids):
            ec2.CfnSecurityGroupEgress(
                self,
                f"ToDatabase{number}",
                group_id=self.functions_group.attr_group_id,
                ip_protocol="tcp",
                from_port=port,
                to_port=port,
                destination_security_group_id=database_group,
                description="PostgreSQL",
            )
            ec2.CfnSecurityGroupIngress(
                self,
                f"DatabaseAdmitsFunctions{number}",
                group_id=database_group,
                ip_protocol="tcp",
                from_port=port,
                to_port=port,
                source_security_group_id=self.functions_group.attr_group_id,
                description="totes functions",
            )
        endpoints_group = ec2.CfnSecurityGroup(
            self,
            "EndpointsSecurityGroup",
            group_description="totes VPC endpoints: HTTPS from the totes functions",
            vpc_id=settings.vpc_id,
            security_group_ingress=[
                ec2.CfnSecurityGroup.IngressProperty(
                    ip_protocol="tcp",
                    from_port=_HTTPS,
                    to_port=_HTTPS,
                    source_security_group_id=self.functions_group.attr_group_id,
                    description="totes functions",
                )
            ],
        )
        self.endpoints: list[ec2.CfnVPCEndpoint] = []
        for service in (s for s in _GATEWAY_SERVICES if s in settings.endpoints):
            endpoint = ec2.CfnVPCEndpoint(
                self,
                f"{service.title()}Endpoint",
                vpc_id=settings.vpc_id,
                service_name=f"com.amazonaws.{region}.{service}",
                vpc_endpoint_type="Gateway",
                route_table_ids=list(settings.route_table_ids),
            )
            self.endpoints.append(endpoint)
        for service, endpoint_id in _INTERFACE_SERVICES.items():
            if service not in settings.endpoints:
                continue
            endpoint = ec2.CfnVPCEndpoint(
                self,
                endpoint_id,
                vpc_id=settings.vpc_id,
                service_name=f"com.amazonaws.{region}.{service}",
                vpc_endpoint_type="Interface",
                subnet_ids=list(settings.subnet_ids),
                security_group_ids=[endpoints_group.attr_group_id],
                private_dns_enabled=True,
            )
            self.endpoints.append(endpoint)

    def place(self, function: lambda_.Function) -> None:
        """Run ``function`` in the private subnets, with the functions' security group."""
        cfn_function = function.node.default_child
        if not isinstance(cfn_function, lambda_.CfnFunction):  # pragma: no cover - an L2 has one
            raise TypeError(f"{function.node.path} has no CloudFormation function")
        # Created after the endpoints (and so deleted before them): the credentials check
        # runs while the stack is created and must reach Secrets Manager.
        for endpoint in self.endpoints:
            function.node.add_dependency(endpoint)
        cfn_function.vpc_config = lambda_.CfnFunction.VpcConfigProperty(
            security_group_ids=[self.functions_group.attr_group_id],
            subnet_ids=list(self.settings.subnet_ids),
        )
        role = function.role
        if role is None:  # pragma: no cover - every function here is given its own role
            raise ValueError(f"{function.node.path} has no role")
        role.add_to_principal_policy(iam.PolicyStatement(actions=_ENI_ACTIONS, resources=["*"]))
        Validations.of(role).acknowledge(
            Acknowledgment(
                id="AwsSolutions-IAM5[Resource::*]",
                reason=(
                    "Lambda attaches a function to its subnets with network interfaces it "
                    "creates and describes on the function's behalf: EC2 grants these "
                    "actions on no narrower resource than *. X-Ray's two actions, likewise."
                ),
            )
        )
