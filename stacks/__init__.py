"""Infrastructure of the totes data platform, as AWS CDK constructs.

One construct per concern; :class:`~stacks.data_platform_stack.DataPlatformStack`
composes them. Nothing here imports runtime code: the only shared module is the
dependency-free :mod:`totes.names`.
"""
