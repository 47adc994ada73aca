"""The deployment's check of the credentials secrets, before anything is scheduled."""

from __future__ import annotations

from collections.abc import Sequence

from aws_cdk import CustomResource, Duration
from aws_cdk import aws_lambda as lambda_
from constructs import Construct

#: How long CloudFormation waits for the check's answer before it fails the resource
#: (its default is an hour: a check that crashed would hold the deployment that long).
_ANSWER_WITHIN = Duration.minutes(2)


class CredentialsCheck(Construct):
    """A custom resource whose creation succeeds only when every secret is usable.

    The schedule depends on it, so a first deployment without the secrets stops with a
    message naming the missing or incomplete secret, instead of starting executions that
    fail and mail the alert topic every few minutes. It checks again whenever the secret
    names change; deleting it checks nothing.

    Parameters
    ----------
    scope : constructs.Construct
        Parent construct.
    construct_id : str
        Id of this construct within ``scope``.
    function : aws_cdk.aws_lambda.IFunction
        The function that answers (``lambdas/credentials_check``), allowed to read the
        secrets.
    secret_names : Sequence[str]
        The secrets the pipeline's functions read.
    """

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        function: lambda_.IFunction,
        secret_names: Sequence[str],
    ) -> None:
        super().__init__(scope, construct_id)
        self.resource = CustomResource(
            self,
            "SecretsReadable",
            service_token=function.function_arn,
            resource_type="Custom::CredentialsReadable",
            properties={"SecretNames": list(secret_names)},
            service_timeout=_ANSWER_WITHIN,
        )
