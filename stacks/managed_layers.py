"""The AWS-published layer the functions use: its pinned release, and its size.

Lambda refuses a function (and so fails the deployment) whose code and layers exceed
262,144,000 bytes unzipped. Our own layers are measured
where they are built; the public Powertools layer cannot be downloaded without an AWS
account, so its unzipped size is recorded here, with how the figure was obtained, and
``tests/infra/test_lambda_packaging.py`` adds it up with ours per function.

Move a release together with ``requirements.txt`` (the tests check that both name the
same one) and record the new size in the same change: see the README's "Upgrading
dependencies".
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final


@dataclass(frozen=True)
class ManagedLayer:
    """A layer AWS publishes per release, at the release this project pins."""

    package: str
    version: str
    unzipped_bytes: int
    #: How ``unzipped_bytes`` was measured, so the next upgrade measures it the same way.
    measured: str


POWERTOOLS: Final = ManagedLayer(
    package="aws-lambda-powertools",
    version="3.37.0",
    unzipped_bytes=31_293_921,
    measured=(
        "pip install --target L --platform manylinux2014_x86_64 --platform "
        "manylinux_2_28_x86_64 --python-version 3.12 --only-binary=:all: "
        "'aws-lambda-powertools[all]==3.37.0', then boto3, botocore, s3transfer, urllib3 "
        "and bin/ removed (what the public layer leaves to the runtime): du -sb L"
    ),
)
