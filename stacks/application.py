"""Builds the CDK application: the stack plus the checks every synthesis runs.

``app.py`` and the infrastructure tests both go through :func:`build_application`,
so the tests synthesise exactly what ``cdk synth`` does.
"""

from __future__ import annotations

from aws_cdk import App, Environment, Validations
from cdk_nag import AwsSolutionsChecks

from stacks.data_platform_stack import DataPlatformStack
from stacks.packaging import PipelinePackaging
from stacks.settings import PlatformSettings


def build_application(
    app: App,
    *,
    env: Environment | None = None,
    packaging: PipelinePackaging | None = None,
) -> DataPlatformStack:
    """Add the data platform stack to ``app`` and register cdk-nag's AwsSolutions pack.

    Any unacknowledged AwsSolutions finding fails synthesis. Acknowledgements
    are copied into the template's resource metadata (``cdk_nag``) so that each
    one, with its reason, is visible wherever the template is reviewed.

    Parameters
    ----------
    app : aws_cdk.App
        The application; its context supplies the :class:`PlatformSettings`.
    env : aws_cdk.Environment or None
        Target account and region of the stack.
    packaging : PipelinePackaging or None
        Where the handlers and built layers are; ``None`` for the repository's
        ``lambdas/`` and ``build/layers/`` (what ``cdk synth`` uses).

    Returns
    -------
    DataPlatformStack
    """
    settings = PlatformSettings.from_context(app)
    stack = DataPlatformStack(
        app, settings.stack_name, settings=settings, env=env, packaging=packaging
    )
    Validations.of(app).add_plugins(
        AwsSolutionsChecks(app, write_suppressions_to_cloud_formation=True)
    )
    return stack
