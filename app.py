"""CDK entry point of the totes data platform (``cdk synth``, ``cdk deploy``).

Settings come from the context in ``cdk.json`` and ``-c key=value`` options; the
target account and region come from the AWS profile the CDK CLI runs with.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

from aws_cdk import App, Environment


def _make_shared_names_importable() -> None:
    # `pip install -e .` makes `totes` importable; a fresh checkout without the
    # install can still synthesise, because the CDK side only needs the
    # dependency-free `totes.names`.
    try:
        import totes.names  # noqa: F401, PLC0415
    except ImportError:
        sys.path.insert(0, str(Path(__file__).resolve().parent / "layers" / "core"))


def _target_environment() -> Environment | None:
    account = os.environ.get("CDK_DEFAULT_ACCOUNT")
    region = os.environ.get("CDK_DEFAULT_REGION")
    if account is None and region is None:
        return None
    return Environment(account=account, region=region)


def main() -> None:
    """Synthesise the data platform into the cloud assembly (``cdk.out``)."""
    _make_shared_names_importable()
    from stacks.application import build_application  # noqa: PLC0415

    app = App()
    build_application(app, env=_target_environment())
    app.synth()


if __name__ == "__main__":
    main()
