"""Packaging without Docker: the built layers, their size, and what if they are missing."""

from __future__ import annotations

import importlib.util
import json
import marshal
import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from stacks.managed_layers import POWERTOOLS
from stacks.packaging import MissingPackagingError, PipelinePackaging

from .conftest import SynthesisedPlatform

pytestmark = pytest.mark.infra

REPOSITORY_ROOT = Path(__file__).resolve().parents[2]

#: Lambda's limit on a function's unzipped code plus all of its layers, in bytes.
LAMBDA_UNZIPPED_LIMIT_BYTES = 262_144_000
#: What each function must leave free under the limit: a patch release of a layer grows it
#: by a few megabytes, and with SnapStart a function over the limit fails the deployment.
SIZE_MARGIN_BYTES = 10_000_000
#: The unzipped size of each AWS-published layer, by the public parameter that names it.
MANAGED_LAYERS = {
    f"/aws/service/powertools/python/x86_64/python3.12/{POWERTOOLS.version}": POWERTOOLS,
}


def _build_script() -> ModuleType:
    spec = importlib.util.spec_from_file_location(
        "build_layers", REPOSITORY_ROOT / "scripts" / "build_layers.py"
    )
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    # Registered first: dataclasses resolve their module through sys.modules.
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def _unzipped_size(archive: Path) -> int:
    with zipfile.ZipFile(archive) as zipped:
        return sum(entry.file_size for entry in zipped.infolist())


def _folder_size(folder: Path) -> int:
    return sum(
        path.stat().st_size
        for path in folder.rglob("*")
        if path.is_file() and "__pycache__" not in path.parts
    )


def _asset_size(assembly: Path, s3_location: dict[str, Any]) -> int:
    """The unzipped size of the asset a template's ``Code`` or ``Content`` points at."""
    manifest = json.loads((assembly / "TotesDataPlatform.assets.json").read_text("utf-8"))
    source = (
        assembly / manifest["files"][s3_location["S3Key"].removesuffix(".zip")]["source"]["path"]
    )
    return _folder_size(source) if source.is_dir() else _unzipped_size(source)


def _function_sizes(platform: SynthesisedPlatform) -> dict[str, dict[str, int]]:
    """For each function of the template: its code and each of its layers, unzipped."""
    assembly = Path(platform.stack.node.root.outdir)
    template = platform.template.to_json()
    resources, parameters = template["Resources"], template["Parameters"]
    sizes: dict[str, dict[str, int]] = {}
    for name, resource in resources.items():
        if resource["Type"] != "AWS::Lambda::Function":
            continue
        properties = resource["Properties"]
        parts = {"code": _asset_size(assembly, properties["Code"])}
        for layer in properties.get("Layers", []):
            reference = layer["Ref"]
            if reference in resources:
                parts[reference] = _asset_size(
                    assembly, resources[reference]["Properties"]["Content"]
                )
            else:
                published = MANAGED_LAYERS.get(parameters[reference]["Default"])
                assert published is not None, f"{name}: no recorded size for {reference}"
                parts[f"{published.package} {published.version}"] = published.unzipped_bytes
        sizes[name] = parts
    return sizes


@pytest.mark.slow
def test_each_function_with_all_its_layers_fits_lambdas_unzipped_limit_with_a_margin(platform):
    # Given every function of the synthesised template: its code, our layers as built,
    # and the AWS-published layers at the releases it pins, with their recorded sizes
    sizes = _function_sizes(platform)
    assert all(f"{POWERTOOLS.package} {POWERTOOLS.version}" in parts for parts in sizes.values()), (
        "the Powertools layer is counted"
    )

    # When Lambda unpacks each one
    for name, parts in sizes.items():
        total = sum(parts.values())

        # Then the whole stays under 262,144,000 bytes with the margin to spare
        breakdown = ", ".join(f"{part} {size / 1e6:.1f} MB" for part, size in parts.items())
        assert total <= LAMBDA_UNZIPPED_LIMIT_BYTES - SIZE_MARGIN_BYTES, (
            f"{name}: {total / 1e6:.1f} MB of {LAMBDA_UNZIPPED_LIMIT_BYTES / 1e6:.1f} MB "
            f"leaves less than {SIZE_MARGIN_BYTES / 1e6:.0f} MB: {breakdown}"
        )


@pytest.mark.slow
def test_the_dependencies_layer_holds_what_the_handlers_import_and_nothing_the_runtime_has(
    built_layers,
):
    # Given the report of the dependencies layer build
    report = json.loads((built_layers / "dependencies.json").read_text(encoding="utf-8"))
    packages = {name.lower().replace("_", "-") for name in report["packages"]}

    # Then it holds the database driver (with its binary build), pyarrow and pyiceberg
    assert {"psycopg", "psycopg-binary", "pyarrow", "pyiceberg"} <= packages
    # And not what Lambda's runtime or the Powertools layer provide
    assert packages.isdisjoint({"boto3", "botocore", "s3transfer", "aws-lambda-powertools"})
    # And its files are for Linux x86_64 CPython 3.12, whatever machine built them
    with zipfile.ZipFile(built_layers / "dependencies.zip") as zipped:
        extensions = [name for name in zipped.namelist() if name.endswith(".so")]
    assert extensions
    assert all("cpython-312-x86_64-linux-gnu" in name for name in extensions if "cpython" in name)


def test_the_core_layer_holds_the_totes_package_under_python(built_layers):
    # Given the core layer
    with zipfile.ZipFile(built_layers / "core.zip") as zipped:
        names = set(zipped.namelist())

    # Then Lambda finds the package on its path (/opt/python) with its shared names, and
    # the authorities the functions verify the databases against
    assert "python/totes/__init__.py" in names
    assert "python/totes/names.py" in names
    assert "python/totes/rds-global-bundle.pem" in names
    # And byte code, if any, for the Lambda runtime's Python alone, not the build machine's
    assert all(name.endswith(".cpython-312.pyc") for name in names if name.endswith(".pyc"))


def test_the_core_layer_holds_what_handlers_import_and_none_of_the_local_tooling(built_layers):
    # Given the core layer
    with zipfile.ZipFile(built_layers / "core.zip") as zipped:
        modules = {
            name.removeprefix("python/").removesuffix(".py").replace("/", ".")
            for name in zipped.namelist()
            if name.endswith(".py")
        }

    # Then it carries the stages the handlers call
    assert {"totes.ingest.stage", "totes.transform.stage", "totes.load.stage"} <= modules
    # And none of the local tooling: the command, the local runtime, the generator, mutate
    assert not {module for module in modules if not module.startswith("totes.")} - {"totes"}
    assert not {
        module
        for module in modules
        if module.startswith(("totes.local", "totes.cli", "totes.source.generator"))
        or module.startswith("totes.source.mutate")
    }


@pytest.mark.parametrize(
    "stage",
    ["ingest", "transform", "load", "progress", "failure", "lake_maintenance", "credentials_check"],
)
def test_each_handler_imports_from_its_asset_and_the_core_layer_alone(
    built_layers, tmp_path, stage
):
    # Given the core layer unpacked as Lambda does (/opt), and the handler's asset
    with zipfile.ZipFile(built_layers / "core.zip") as zipped:
        zipped.extractall(tmp_path / "opt")
    asset = REPOSITORY_ROOT / "lambdas" / stage
    # Third-party packages from this interpreter's site-packages, without the editable
    # install of this repository (no .pth files are processed with -S).
    site_packages = sysconfig.get_paths()["purelib"]
    probe = (
        "import sys; sys.path[:0] = sys.argv[1:]; "
        "import handler, totes; "
        "print(totes.__file__); print(callable(handler.handler)); "
        "print(sorted(m for m in sys.modules if m.startswith('totes_local')))"
    )

    # When the handler module is imported in a process that holds only those
    completed = subprocess.run(  # noqa: S603 (this interpreter, a fixed probe)
        [
            sys.executable,
            *("-I", "-S", "-c", probe),
            str(asset),
            str(tmp_path / "opt" / "python"),
            site_packages,
        ],
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
    )

    # Then it imports, with totes from the layer and no local tooling
    assert completed.returncode == 0, completed.stderr
    location, callable_handler, local = completed.stdout.splitlines()
    assert location.startswith(str(tmp_path / "opt" / "python" / "totes"))
    assert callable_handler == "True"
    assert local == "[]"


def test_layer_zips_are_byte_for_byte_reproducible(tmp_path):
    # Given the same files zipped twice, at different times and in different order
    build = _build_script()
    source = tmp_path / "layer"
    (source / "python" / "package").mkdir(parents=True)
    (source / "python" / "package" / "b.py").write_text("B = 2\n", encoding="utf-8")
    (source / "python" / "package" / "a.py").write_text("A = 1\n", encoding="utf-8")

    first, second = tmp_path / "first.zip", tmp_path / "second.zip"
    build._write_reproducible_zip(source, first)
    (source / "python" / "package" / "a.py").touch()
    build._write_reproducible_zip(source, second)

    # Then the archives are identical, so an unchanged layer keeps its asset hash
    assert first.read_bytes() == second.read_bytes()


def test_the_layer_takes_runtime_dependencies_from_pyproject_minus_the_provided_ones():
    # Given pyproject.toml's runtime dependencies
    requirements = _build_script().layer_requirements(REPOSITORY_ROOT / "pyproject.toml")
    names = {requirement.split("[")[0].split(">")[0].split("=")[0] for requirement in requirements}

    # Then the layer installs the ones Lambda does not already provide
    assert {"psycopg", "pyarrow", "pyiceberg"} <= names
    assert names.isdisjoint({"boto3", "aws-lambda-powertools"})


def test_missing_handlers_or_layers_stop_synthesis_with_the_fix(tmp_path):
    # Given a checkout without handler folders and without a layer build
    packaging = PipelinePackaging.from_repository(tmp_path)

    # When the functions are about to be packaged
    with pytest.raises(MissingPackagingError) as raised:
        packaging.check()

    # Then the message names what is missing and the command that builds the layers
    message = str(raised.value)
    assert str(tmp_path / "lambdas" / "transform") in message
    assert "dependencies.zip" in message
    assert "make build" in message


#: What each handler imports, then what the lake imports when it is first used.
_LAMBDA_IMPORT_PROBE = """
import importlib.util, json, sys
opt, site_packages, handlers = sys.argv[1], sys.argv[2], sys.argv[3:]
sys.path[:0] = [opt, site_packages]
for number, handler in enumerate(handlers):
    spec = importlib.util.spec_from_file_location(f"handler_{number}", handler)
    spec.loader.exec_module(importlib.util.module_from_spec(spec))
import pyiceberg.catalog.glue, pyiceberg.io.pyarrow, pyiceberg.table, pyiceberg.expressions
import pyarrow.dataset, pyarrow.parquet, pyarrow.csv, pyarrow.compute
import totes.lake.pyiceberg_patches
from_layers = [
    module for module in list(sys.modules.values())
    if (getattr(module, "__file__", None) or "").startswith(opt)
    and module.__file__.endswith(".py")
]
print(json.dumps({
    "modules": len(from_layers),
    "compiled_at_import": sorted(
        module.__name__ for module in from_layers
        if not importlib.util.cache_from_source(module.__file__).startswith(opt)
        or not __import__("os").path.exists(importlib.util.cache_from_source(module.__file__))
    ),
}))
"""


@pytest.mark.slow
def test_on_the_lambda_runtimes_python_no_handler_compiles_a_module_of_the_layers(
    built_layers, tmp_path
):
    # Given both layers unpacked as Lambda does, read-only (/opt/python), and a CPython of
    # the Lambda runtime's version
    build = _build_script()
    interpreter = build.lambda_interpreter()
    if interpreter is None:
        pytest.skip("no CPython 3.12 here: the layers were built from sources alone")
    for layer in ("dependencies", "core"):
        with zipfile.ZipFile(built_layers / f"{layer}.zip") as zipped:
            zipped.extractall(tmp_path / "opt")
    opt = tmp_path / "opt" / "python"
    handlers = sorted(str(path) for path in (REPOSITORY_ROOT / "lambdas").glob("*/handler.py"))
    assert len(handlers) == 7

    # When it imports every handler and what the lake imports when first used, with boto3
    # and Powertools (pure Python) from this environment, writing no byte code
    completed = subprocess.run(  # noqa: S603 (a CPython found by the build, a fixed probe)
        [
            interpreter.path,
            *("-I", "-S", "-B", "-c", _LAMBDA_IMPORT_PROBE),
            str(opt),
            sysconfig.get_paths()["purelib"],
            *handlers,
        ],
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
        env={"PYTHONPATH": "", "AWS_DEFAULT_REGION": "eu-west-2"},
        cwd=tmp_path,
    )
    assert completed.returncode == 0, completed.stderr[-3000:]

    # Then every module it loads from the layers comes with its byte code: none is
    # compiled at a cold start (which Lambda, unable to keep it, would do at every one)
    imported = json.loads(completed.stdout.splitlines()[-1])
    assert imported["modules"] > 300
    assert imported["compiled_at_import"] == []


def test_compiled_modules_name_their_file_as_lambda_sees_it_whatever_folder_built_them(
    tmp_path,
):
    # Given the same package in two build folders
    build = _build_script()
    this_python = build.Interpreter(path=sys.executable, version="this one")
    compiled = []
    for folder in ("first", "second"):
        site_packages = tmp_path / folder / "python"
        (site_packages / "package").mkdir(parents=True)
        (site_packages / "package" / "module.py").write_text("VALUE = {1, 2}\n", encoding="utf-8")
        (site_packages / "left_as_source.py").write_text("X = 1\n", encoding="utf-8")

        # When each is compiled for Lambda
        build.compile_for_lambda(this_python, site_packages, {"package"})
        compiled.append(site_packages / importlib.util.cache_from_source("package/module.py"))

    # Then the byte code is the same bytes, names /opt/python/... and is trusted without
    # reading the source (flags 0b01: hash-based, unchecked); what was not named stays source
    first, second = (path.read_bytes() for path in compiled)
    assert first == second
    assert int.from_bytes(first[4:8], "little") == 0b01
    code = marshal.loads(first[16:])  # noqa: S302 (byte code this test compiled)
    assert code.co_filename == "/opt/python/package/module.py"
    assert not list((tmp_path / "first" / "python").glob("__pycache__/*"))


def test_only_a_linkers_copies_of_a_shared_library_are_dropped(tmp_path):
    # Given a wheel's library under its loader's name, its linker-only copies, a library
    # known only by a name the loader may read, and a copy that differs
    build = _build_script()
    site_packages = tmp_path / "python"
    folder = site_packages / "package"
    folder.mkdir(parents=True)
    for name in ("libthing.so.24", "libthing.so", "libthing.so.24.0.0", "libother.so"):
        (folder / name).write_bytes(b"the same library")
    (folder / "libdiffers.so.3").write_bytes(b"one library")
    (folder / "libdiffers.so").write_bytes(b"another library")

    # When the layer is trimmed
    build._trim(site_packages)

    # Then only the identical copies of a library under its loader's name are gone
    assert sorted(path.name for path in folder.iterdir()) == [
        "libdiffers.so",
        "libdiffers.so.3",
        "libother.so",
        "libthing.so.24",
    ]
