"""Where a deployment of the platform is: its outputs and the clients that reach it.

Commands that read what a deployment keeps (``totes rejects``, ``totes lake``) work
the same on the local AWS service and on AWS: they read the stack's outputs (bucket
names, the lake's database) and use clients of wherever the stack runs.

- A deployed stack: its CloudFormation outputs, with the caller's AWS credentials.
- The local service: ``totes run`` records, in the data folder, the outputs of each
  deployment it made into the service (one per source and warehouse pair); the
  latest one is used unless another is named.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from totes.errors import TotesError
from totes_local.runtime.service import LOCAL_CREDENTIALS, find_service, service_folder

#: The deployment ``totes run`` used last, in ``<data dir>/local-aws/stacks/``.
_LATEST = "latest"


class StackNotFoundError(TotesError):
    """No deployment of that name exists (locally: no service, or no run of that pair)."""


@dataclass(frozen=True)
class StackOutputs:
    """A deployment's outputs and how to reach its resources.

    Attributes
    ----------
    name : str
        The stack's name (locally, the deployment's instance name).
    outputs : dict of str to str
        The stack's outputs (``ProcessedBucketName``, ...).
    region : str or None
        The region of its resources (None: the caller's default).
    endpoint_url : str or None
        The local service's endpoint; None on AWS.
    """

    name: str
    outputs: dict[str, str]
    region: str | None = None
    endpoint_url: str | None = None

    @property
    def local(self) -> bool:
        """Whether the stack is a deployment in the local AWS service."""
        return self.endpoint_url is not None

    def output(self, key: str) -> str:
        """One output's value.

        Raises
        ------
        StackNotFoundError
            The stack has no such output (deployed before it existed).
        """
        if key not in self.outputs:
            raise StackNotFoundError(
                f"stack {self.name} has no output {key}: deploy the current version first"
            )
        return self.outputs[key]

    def client(self, service: str) -> Any:
        """A boto3 client of the service the stack's resources live in."""
        import boto3  # noqa: PLC0415

        if self.endpoint_url is None:
            return boto3.client(service, region_name=self.region)
        return boto3.client(
            service,
            region_name=self.region,
            endpoint_url=self.endpoint_url,
            aws_access_key_id=LOCAL_CREDENTIALS["AWS_ACCESS_KEY_ID"],
            aws_secret_access_key=LOCAL_CREDENTIALS["AWS_SECRET_ACCESS_KEY"],
        )


def _records(data_dir: Path) -> Path:
    return service_folder(data_dir) / "stacks"


def record_local_stack(data_dir: Path, name: str, outputs: dict[str, str], region: str) -> None:
    """Remember a deployment into the local service, and that it is the latest one.

    Examples
    --------
    >>> record_local_stack(Path(".totes"), "TotesDataPlatform-1a2b3c4d", {}, "eu-west-2")
    ... # doctest: +SKIP
    """
    folder = _records(data_dir)
    folder.mkdir(parents=True, exist_ok=True)
    record = json.dumps({"name": name, "outputs": outputs, "region": region}, indent=1)
    for file_name in (name, _LATEST):
        (folder / f"{file_name}.json").write_text(record, encoding="utf-8")


def local_stack(data_dir: Path, name: str | None = None) -> StackOutputs:
    """A deployment in the local service of ``data_dir``: the named one, else the latest.

    Raises
    ------
    StackNotFoundError
        No service runs for the folder (its state went with it), or no ``totes run``
        made that deployment.
    """
    service = find_service(data_dir)
    if service is None:
        raise StackNotFoundError(
            f"no local AWS service runs for {data_dir}: nothing is kept; `totes run` first"
        )
    path = _records(data_dir) / f"{name or _LATEST}.json"
    if not path.is_file():
        which = f"deployment {name}" if name else "deployment"
        raise StackNotFoundError(
            f"no {which} in the local AWS service of {data_dir}: `totes run` first"
        )
    record = json.loads(path.read_text(encoding="utf-8"))
    return StackOutputs(
        name=str(record["name"]),
        outputs={str(key): str(value) for key, value in record["outputs"].items()},
        region=str(record["region"]),
        endpoint_url=service.endpoint,
    )


def deployed_stack(name: str, region: str | None = None) -> StackOutputs:
    """A stack deployed to AWS, by name, read with the caller's AWS credentials.

    Raises
    ------
    StackNotFoundError
        CloudFormation has no stack of that name in the region.
    """
    import boto3  # noqa: PLC0415
    from botocore.exceptions import ClientError  # noqa: PLC0415

    cloudformation = boto3.client("cloudformation", region_name=region)
    try:
        (stack,) = cloudformation.describe_stacks(StackName=name)["Stacks"]
    except ClientError as exc:
        # CloudFormation answers a stack that does not exist with a ValidationError; any
        # other error (no access, no credentials) is not that, and is reported as itself.
        if exc.response["Error"]["Code"] != "ValidationError":
            raise
        raise StackNotFoundError(f"no stack {name} in CloudFormation: {exc}") from exc
    outputs = {item["OutputKey"]: item["OutputValue"] for item in stack.get("Outputs", [])}
    return StackOutputs(name=name, outputs=outputs, region=region)
