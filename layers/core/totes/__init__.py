"""Core library of the totesys data platform.

Everything the Lambda functions and the ``totes`` command share lives here. The
CDK application (``stacks/``) never imports this package, except
:mod:`totes.names`, the dependency-free module of names both sides agree on.
"""

__version__ = "0.1.0"
