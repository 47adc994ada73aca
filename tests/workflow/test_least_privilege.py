"""Least privilege, proven both ways: every AWS call a function makes in the workflow tier is
one its role in the synthesised template allows, and every grant of a role is used by a call
or written below with the reason no test of this tier can use it."""

from __future__ import annotations

import re
from fnmatch import fnmatchcase
from pathlib import Path

from tests.iam_policy import Decision, decide, grants, statement_matches
from totes.db import connect
from totes.names import EnvironmentVariable
from totes_local.runtime.assembly import CloudAssembly
from totes_local.runtime.call_trail import read_trail
from totes_local.runtime.platform import LOCAL_REGION, LocalFunctionSpec, LocalPlatform
from totes_local.runtime.workflow import pair_id
from totes_local.source.mutate import mutate

from .conftest import CALL_TRAIL_FILE
from .support import WorkflowFactory

_LAMBDA_WRITES_LOGS = (
    "Lambda's service writes the function's logs with its role; no handler calls CloudWatch Logs"
)
_LAMBDA_TRACES = (
    "active tracing: Lambda's X-Ray integration sends the segments, not the handler; "
    "the local runtime traces nothing"
)
_DSN_GIVEN = (
    "the workflow tier hands the functions their DSNs directly; reading the secret is "
    "proven by tests/integration (test_ingest_handler, test_load_handler, "
    "test_credentials_check) against Secrets Manager in moto"
)
_NOT_FOUND_NEEDS_LISTING = (
    "S3 answers a GetObject or HEAD of an absent key with 404 only to a role that may list "
    "the bucket (else 403): the stage's code tells absent state and staged files that way"
)
_RACE_ONLY = (
    "used only when a write finds its key taken or a commit resumes from staging, after a "
    "crash or a lost race (tests/integration/test_transform.py, the crash tests)"
)
_QUARANTINE = (
    "needs a fact whose dimension row is missing, which the source's foreign keys rule out "
    "in this tier; tests/integration/test_load.py quarantines and replays rows"
)
_OLD_METADATA = (
    "and the metadata files past the ten a lake table keeps, which take more commits to a "
    "table than this test makes"
)

#: Grants no call of this tier uses: (stage, action, resource) as shell-style patterns
#: over the resolved ARN, with the reason.
UNUSED_ON_PURPOSE: dict[tuple[str, str, str], str] = {
    ("*", "logs:CreateLogStream", "*"): _LAMBDA_WRITES_LOGS,
    ("*", "logs:PutLogEvents", "*"): _LAMBDA_WRITES_LOGS,
    ("*", "xray:PutTraceSegments", "*"): _LAMBDA_TRACES,
    ("*", "xray:PutTelemetryRecords", "*"): _LAMBDA_TRACES,
    ("Ingest", "secretsmanager:GetSecretValue", "*"): _DSN_GIVEN,
    ("Load", "secretsmanager:GetSecretValue", "*"): _DSN_GIVEN,
    ("CredentialsCheck", "secretsmanager:GetSecretValue", "*"): (
        f"runs once, when CloudFormation creates the stack; {_DSN_GIVEN}"
    ),
    ("Transform", "s3:ListBucket", "*processed*"): _NOT_FOUND_NEEDS_LISTING,
    ("Transform", "s3:GetObject", "*processed*/*"): _RACE_ONLY,
    ("Transform", "s3:PutObject", "*processed*/rejects/*"): (
        "needs a bad row, which this test's source has none of; tests/workflow/test_bad_data.py"
    ),
    ("Load", "s3:GetObject", "*processed*/rejects/*"): _QUARANTINE,
    ("Load", "s3:PutObject", "*processed*/rejects/*"): _QUARANTINE,
    ("Load", "s3:DeleteObject", "*processed*/rejects/*"): _QUARANTINE,
    ("Load", "s3:DeleteObject", "*processed*/lake/*"): (
        "deletes the files of a lake table it makes afresh, which a first run has none of "
        "(tests/integration/test_lake.py: a table deleted out of band, one of the earlier "
        f"layout), {_OLD_METADATA}"
    ),
    ("LakeMaintenance", "s3:DeleteObject", "*processed*/lake/*"): (
        "deletes the files no snapshot references once they are two hours old, which none "
        "of this test's are (tests/integration/test_lake.py maintains hours later), "
        f"{_OLD_METADATA}"
    ),
}
#: Every commit makes a lake table due for maintenance, so that the maintenance step
#: commits to the tables in this test's few runs, as it does every twelve commits by default.
_MAINTAIN_EVERY_COMMIT = {EnvironmentVariable.LAKE_MAINTAIN_EVERY_COMMITS: "1"}


def _stage(function: LocalFunctionSpec) -> str:
    match = re.fullmatch(r"Functions([A-Za-z]+?)[0-9A-F]{8}", function.logical_id)
    return match.group(1) if match else function.logical_id


def _allow_listed(stage: str, action: str, resource: str) -> bool:
    return any(
        fnmatchcase(stage, s) and action == a and fnmatchcase(resource, r)
        for s, a, r in UNUSED_ON_PURPOSE
    )


def test_every_call_is_allowed_by_the_functions_role_and_every_grant_is_used(
    seeded_source_dsn: str,
    warehouse_dsn: str,
    local_workflow: WorkflowFactory,
    cloud_assembly: CloudAssembly,
    service_dir: Path,
) -> None:
    # Given a backfill, then changes to orders, payments, staff and a department (twice:
    # each run commits to the lake tables it changes, and maintains them)
    with local_workflow(
        seeded_source_dsn, warehouse_dsn, extra_environment=_MAINTAIN_EVERY_COMMIT
    ) as workflow:
        assert workflow.execute().status == "SUCCEEDED"
        for seed in (7, 8):
            with connect(seeded_source_dsn) as conn:
                mutate(conn, seed=seed, changes=30)
            assert workflow.execute().status == "SUCCEEDED"

    # When the calls the functions made (in this test and any earlier of the session)
    # are evaluated against their roles in the template
    platform = LocalPlatform.from_assembly(
        cloud_assembly,
        region=LOCAL_REGION,
        instance_name=f"{cloud_assembly.stack_name}-{pair_id(seeded_source_dsn, warehouse_dsn)}",
    )
    functions = {function.name: function for function in platform.functions}
    calls = [c for c in read_trail(service_dir / CALL_TRAIL_FILE) if c["function"] in functions]
    assert calls, "the service recorded no call of the pair's functions"

    # Then each call is one the function's role allows
    refused = [
        f"{_stage(functions[c['function']])}: {c['action']} on {c['resource']} "
        f"({decide(functions[c['function']].role_statements, c['action'], c['resource'])})"
        for c in calls
        if decide(functions[c["function"]].role_statements, c["action"], c["resource"])
        is not Decision.ALLOWED
    ]
    assert refused == [], "\n".join(refused)

    # And each grant is used by some call, or allow-listed with its reason
    unused = []
    for function in platform.functions:
        stage = _stage(function)
        own = [c for c in calls if c["function"] == function.name]
        for action, resource in grants(function.role_statements):
            grant = {"Effect": "Allow", "Action": action, "Resource": resource}
            # Glue authorises one call against the catalog, the database and the table at
            # once: a Glue grant is used when its action was.
            candidates = [resource] if not action.startswith("glue:") else ["*"]
            used = any(
                statement_matches({**grant, "Resource": candidates}, c["action"], c["resource"])
                for c in own
            )
            if not used and not _allow_listed(stage, action, resource):
                unused.append(f"{stage}: {action} on {resource}")
    assert unused == [], "grants no call used:\n" + "\n".join(unused)
