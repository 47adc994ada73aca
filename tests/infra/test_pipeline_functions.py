"""What the functions are, and what each may touch (and may not)."""

from __future__ import annotations

from typing import Any

import pytest

from stacks.managed_layers import POWERTOOLS
from tests.infra.template_reading import allowed_actions, logical_id, role_statements
from totes.names import (
    METRICS_NAMESPACE,
    SERVICE_NAME,
)
from totes.tables import GOLD_TABLES

#: Every function of the stack, by the attribute of PipelineFunctions that holds it.
ALL_STAGES = (
    "ingest",
    "transform",
    "load",
    "progress",
    "describe_failure",
    "lake_maintenance",
    "credentials_check",
)

pytestmark = pytest.mark.infra

POWERTOOLS_PARAMETER = f"/aws/service/powertools/python/x86_64/python3.12/{POWERTOOLS.version}"


def _function(template, function) -> dict[str, Any]:
    properties: dict[str, Any] = template.find_resources("AWS::Lambda::Function")[
        logical_id(function)
    ]["Properties"]
    return properties


def _arn(construct) -> str:
    return f"<{logical_id(construct)}.Arn>"


@pytest.fixture(scope="module")
def functions(platform):
    return platform.stack.functions


@pytest.fixture(scope="module")
def allowed(platform, template):
    """Allowed actions and their resources, per stage."""
    functions = platform.stack.functions
    return {
        stage: allowed_actions(role_statements(template, getattr(functions, stage).role))
        for stage in ALL_STAGES
    }


@pytest.mark.parametrize(
    ("stage", "memory", "timeout"),
    [
        ("ingest", 1024, 120),
        ("transform", 2048, 180),
        ("load", 1024, 120),
        ("lake_maintenance", 1024, 60),
    ],
)
def test_each_function_runs_its_handler_on_python_312_with_its_own_size(
    template, functions, stage, memory, timeout
):
    # Given a function of the pipeline
    properties = _function(template, getattr(functions, stage))

    # Then it runs handler.handler on Python 3.12 (x86_64, what the layer is built for)
    assert properties["Runtime"] == "python3.12"
    assert properties["Handler"] == "handler.handler"
    assert properties["Architectures"] == ["x86_64"]
    # And it has the memory and time its stage needs, and is traced by X-Ray
    assert (properties["MemorySize"], properties["Timeout"]) == (memory, timeout)
    assert properties["TracingConfig"] == {"Mode": "Active"}


def test_functions_of_every_execution_run_their_live_version_without_snapstart(template, functions):
    # Given the functions each execution invokes, and the failure's describer
    versions = template.find_resources("AWS::Lambda::Version")
    aliases = template.find_resources("AWS::Lambda::Alias")
    for stage in ("ingest", "transform", "load", "progress", "lake_maintenance"):
        function = getattr(functions, stage)
        # Then no SnapStart snapshot is cached for them (it was two thirds of the bill)
        assert "SnapStart" not in _function(template, function)
        # And their live alias (what the state machine invokes) is the current version,
        # which is deleted once replaced
        alias = aliases[logical_id(functions.live(function))]["Properties"]
        assert alias["Name"] == "live"
        assert alias["FunctionName"] == {"Ref": logical_id(function)}
        version_id = alias["FunctionVersion"]["Fn::GetAtt"][0]
        assert versions[version_id]["Properties"]["FunctionName"] == {"Ref": logical_id(function)}
        assert versions[version_id]["DeletionPolicy"] == "Delete"
    # And the describer, run only after a failure, is invoked as it is
    assert functions.live(functions.describe_failure) is functions.describe_failure
    assert len(aliases) == len(versions) == 5


def test_every_function_logs_to_its_own_log_group_with_a_retention(template, functions):
    # Given every function
    log_groups = template.find_resources("AWS::Logs::LogGroup")
    for function in functions.by_stage.values():
        properties = _function(template, function)
        # Then it writes to a log group of its own, which expires its logs
        group_id = properties["LoggingConfig"]["LogGroup"]["Ref"]
        assert log_groups[group_id]["Properties"]["RetentionInDays"] == 30


def test_every_function_names_metrics_and_service_as_the_alarms_expect(template, functions):
    # Given every function's environment
    for function in functions.by_stage.values():
        variables = _function(template, function)["Environment"]["Variables"]
        # Then Powertools publishes under the namespace and service the alarms watch
        assert variables["POWERTOOLS_SERVICE_NAME"] == SERVICE_NAME
        assert variables["POWERTOOLS_METRICS_NAMESPACE"] == METRICS_NAMESPACE


def test_each_function_is_told_only_the_resources_its_stage_uses(platform, template, functions):
    # Given the environment of each function
    buckets, table = platform.stack.buckets, platform.stack.watermarks.table
    lake_database = {"Ref": platform.stack.get_logical_id(platform.stack.lakehouse.database)}

    def variables(function) -> dict[str, Any]:
        return {
            name: value
            for name, value in _function(template, function)["Environment"]["Variables"].items()
            if not name.startswith("POWERTOOLS_")
        }

    # Then each names the buckets, table and secret its stage works with
    assert variables(functions.ingest) == {
        "INGESTED_BUCKET": {"Ref": logical_id(buckets.ingested)},
        "WATERMARK_TABLE": {"Ref": logical_id(table)},
        "SOURCE_SECRET_NAME": "totesys_db_credentials",
        "INGEST_MAX_ROWS": "500000",
    }
    assert variables(functions.transform) == {
        "INGESTED_BUCKET": {"Ref": logical_id(buckets.ingested)},
        "PROCESSED_BUCKET": {"Ref": logical_id(buckets.processed)},
        # (each source's newest batch, so that sources with none new are not listed)
        "WATERMARK_TABLE": {"Ref": logical_id(table)},
        "TRANSFORM_MAX_ROWS": "500000",
        # (how late a manifest can arrive: ingest's own timeout)
        "INGEST_TIMEOUT_SECONDS": str(_function(template, functions.ingest)["Timeout"]),
    }
    assert variables(functions.load) == {
        "PROCESSED_BUCKET": {"Ref": logical_id(buckets.processed)},
        "WAREHOUSE_SECRET_NAME": "postgres_db_credentials",
        "LOAD_MAX_FILES": "8",
        "LAKE_DATABASE": lake_database,
    }
    # And the progress check knows its time budget and nothing else
    assert variables(functions.progress) == {"CATCH_UP_BUDGET_SECONDS": "180"}
    # And the failure email's writer needs nothing at all: the state machine mails it
    assert variables(functions.describe_failure) == {}
    # And the lake maintenance step knows the processed bucket, the lake's Glue database,
    # and when a table is due, what it keeps and the size of the files it writes
    assert variables(functions.lake_maintenance) == {
        "PROCESSED_BUCKET": {"Ref": logical_id(buckets.processed)},
        "LAKE_DATABASE": lake_database,
        "LAKE_MAINTAIN_EVERY_COMMITS": "12",
        "LAKE_SNAPSHOT_RETENTION_HOURS": "24",
        "LAKE_TARGET_FILE_MB": "128",
    }


def _parameter(template, default: str) -> str:
    parameters = template.to_json()["Parameters"]
    (name,) = [name for name, value in parameters.items() if value.get("Default") == default]
    assert parameters[name]["Type"] == "AWS::SSM::Parameter::Value<String>"
    return name


def test_every_function_has_the_dependency_core_and_powertools_layers(template, functions):
    # Given our two layers and the parameter that resolves the public Powertools layer
    dependencies, core, _ = functions.layers
    own_layers = template.find_resources("AWS::Lambda::LayerVersion")
    assert set(own_layers) == {logical_id(dependencies), logical_id(core)}
    for layer in own_layers.values():
        assert layer["Properties"]["CompatibleRuntimes"] == ["python3.12"]
        assert layer["Properties"]["CompatibleArchitectures"] == ["x86_64"]
    powertools = _parameter(template, POWERTOOLS_PARAMETER)

    # Then every pipeline function uses the three, in an order of the CDK's choosing (the
    # layers share no package the handlers depend on a particular release of)
    for function in functions.by_stage.values():
        layers = _function(template, function)["Layers"]
        assert sorted(layer["Ref"] for layer in layers) == sorted(
            [logical_id(dependencies), logical_id(core), powertools]
        )


def test_powertools_version_comes_from_context(synthesise_platform):
    # Given `cdk deploy -c powertools_version=3.36.0`
    platform = synthesise_platform(powertools_version="3.36.0")

    # Then the layer is resolved through that release's public parameter
    defaults = {
        value.get("Default") for value in platform.template.to_json()["Parameters"].values()
    }
    assert "/aws/service/powertools/python/x86_64/python3.12/3.36.0" in defaults


def test_ingest_reads_only_the_source_secret(allowed):
    # Given the secrets each function may read
    def secrets(stage: str) -> set[str]:
        return allowed[stage].get("secretsmanager:GetSecretValue", set())

    # Then ingest reads the totesys credentials, load the warehouse's, transform neither
    prefix = "arn:aws:secretsmanager:eu-west-2:123456789012:secret:"
    assert secrets("ingest") == {f"{prefix}totesys_db_credentials-??????"}
    assert secrets("load") == {f"{prefix}postgres_db_credentials-??????"}
    assert secrets("transform") == set()


def test_ingest_adds_to_the_raw_zone_but_never_rewrites_it(platform, allowed):
    # Given ingest's rights on the ingested bucket
    ingest, ingested = allowed["ingest"], platform.stack.buckets.ingested

    # Then it may put objects there, and no more: no read, no list, no delete
    assert ingest["s3:PutObject"] == {f"{_arn(ingested)}/*"}
    assert {action for action in ingest if action.startswith("s3:")} == {"s3:PutObject"}


def test_ingest_alone_writes_watermarks_and_transform_only_reads_them(platform, allowed):
    # Given the watermark table
    table = _arn(platform.stack.watermarks.table)

    def dynamodb(stage: str) -> dict[str, set[str]]:
        return {a: r for a, r in allowed[stage].items() if a.startswith("dynamodb:")}

    # Then ingest reads and (conditionally) puts items of it
    assert dynamodb("ingest") == {"dynamodb:GetItem": {table}, "dynamodb:PutItem": {table}}
    # And transform reads items of it in batches (each source's newest batch), nothing more
    assert dynamodb("transform") == {"dynamodb:BatchGetItem": {table}}
    # And load does not touch it
    assert dynamodb("load") == {}


def _gold(bucket_arn: str) -> set[str]:
    return {f"{bucket_arn}/{table}/*" for table in GOLD_TABLES}


def test_transform_reads_raw_data_and_writes_only_its_prefixes_of_the_processed_zone(
    platform, allowed
):
    # Given transform's rights
    buckets, transform = platform.stack.buckets, allowed["transform"]
    processed = _arn(buckets.processed)

    # Then it reads the raw zone, and reads and writes the gold files of each warehouse
    # table, rejected rows, and its state, staged files and mirrors: not the lake
    own = {
        f"{processed}/{prefix}/*"
        for prefix in ("_state/transform", "_staging/transform", "mirror", "rejects")
    } | _gold(processed)
    assert transform["s3:GetObject"] == {f"{_arn(buckets.ingested)}/*"} | own
    assert transform["s3:PutObject"] == own
    assert transform["s3:ListBucket"] == {_arn(buckets.ingested), processed}
    assert not [resource for resource in own if "/lake/" in resource]


def test_load_reads_the_processed_zone_and_writes_only_rejects_and_the_lake(platform, allowed):
    # Given load's rights
    buckets, load = platform.stack.buckets, allowed["load"]
    processed = _arn(buckets.processed)

    # Then it reads transform's states, the gold files, the quarantine and the lake's
    # tables only
    assert load["s3:GetObject"] == _gold(processed) | {
        f"{processed}/_state/transform/*",
        f"{processed}/rejects/*",
        f"{processed}/lake/*",
    }
    assert load["s3:ListBucket"] == {processed}
    # And it writes (and deletes what it replaced of) quarantined rows and the lake
    # tables' files; it never writes transform's state, nor touches the raw zone
    for action in ("s3:PutObject", "s3:DeleteObject"):
        assert load[action] == {f"{processed}/rejects/*", f"{processed}/lake/*"}, action
    assert {action for action in load if action.startswith(("s3:Put", "s3:Delete"))} == {
        "s3:PutObject",
        "s3:DeleteObject",
    }
    assert not [
        action
        for action, resources in load.items()
        if any(resource.startswith(_arn(buckets.ingested)) for resource in resources)
    ]


def test_lake_maintenance_reads_writes_and_deletes_the_lake_zone_alone(platform, allowed):
    # Given lake maintenance's rights on S3
    buckets, maintenance = platform.stack.buckets, allowed["lake_maintenance"]
    processed = _arn(buckets.processed)
    s3 = {
        action: resources for action, resources in maintenance.items() if action.startswith("s3:")
    }

    # Then it lists the processed bucket (orphans are found by listing a table's folder),
    # and reads, writes and deletes the lake's files and nothing else
    assert s3 == {
        "s3:ListBucket": {processed},
        "s3:GetObject": {f"{processed}/lake/*"},
        "s3:PutObject": {f"{processed}/lake/*"},
        "s3:DeleteObject": {f"{processed}/lake/*"},
    }


@pytest.mark.parametrize("stage", ALL_STAGES)
def test_no_function_has_wildcard_actions_or_unscoped_rights_beyond_tracing(allowed, stage):
    # Given every right of a function
    rights = allowed[stage]

    # Then no action is a wildcard
    assert not [action for action in rights if "*" in action]
    # And only X-Ray's tracing actions (which have no resource-level permissions) apply to "*"
    unscoped = {action for action, resources in rights.items() if "*" in resources}
    assert unscoped == {"xray:PutTraceSegments", "xray:PutTelemetryRecords"}
    # And there is no PutMetricData: metrics travel in the logs (embedded metric format)
    assert "cloudwatch:PutMetricData" not in rights


@pytest.mark.parametrize("stage", ALL_STAGES)
def test_each_function_writes_only_to_its_own_log_group(template, functions, allowed, stage):
    # Given a function and its log group
    properties = _function(template, getattr(functions, stage))
    log_group = properties["LoggingConfig"]["LogGroup"]["Ref"]

    # Then its role may write log events there and nowhere else
    assert allowed[stage]["logs:PutLogEvents"] == {f"<{log_group}.Arn>"}
    assert allowed[stage]["logs:CreateLogStream"] == {f"<{log_group}.Arn>"}
    # And no AWS managed policy (whose log rights reach every group) is attached
    role = template.find_resources("AWS::IAM::Role")[logical_id(getattr(functions, stage).role)]
    assert "ManagedPolicyArns" not in role["Properties"]
