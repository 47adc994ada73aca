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
    # And byte code for the Lambda runtime's Python alone, not the build machine's: for
    # every module where the build found a CPython 3.12
    byte_code = {name for name in names if name.endswith(".pyc")}
    assert all(name.endswith(".cpython-312.pyc") for name in byte_code)
    if _build_script().lambda_interpreter() is not None:
        modules = [name for name in names if name.endswith(".py")]
        assert {
            name.rpartition("/")[0]
            + "/__pycache__/"
            + name.rpartition("/")[2][:-3]
            + ".cpython-312.pyc"
            for name in modules
        } == byte_code


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
import importlib.machinery, importlib.util, json, sys
opt, site_packages, handlers = sys.argv[1], sys.argv[2], sys.argv[3:]
sys.path[:0] = [opt, site_packages]
compiled = []
to_code = importlib.machinery.SourceFileLoader.source_to_code
def compiling(loader, data, path, *args, **kwargs):
    compiled.append(path)
    return to_code(loader, data, path, *args, **kwargs)
importlib.machinery.SourceFileLoader.source_to_code = compiling
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
    "compiled_at_import": sorted(path for path in compiled if path.startswith(opt)),
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

    # Then Python uses the byte code of every module it loads from the layers: it compiles
    # none at a cold start (which Lambda, unable to keep the result, would do at every one)
    imported = json.loads(completed.stdout.splitlines()[-1])
    assert imported["modules"] > 300
    assert [path.removeprefix(str(opt)) for path in imported["compiled_at_import"]] == []


def test_compiled_modules_name_their_file_as_lambda_sees_it_whatever_folder_built_them(
    tmp_path,
):
    # Given the same package in two build folders
    build = _build_script()
    compiler = build.lambda_interpreter() or build.Interpreter(sys.executable, "this one")
    compiled = []
    for folder in ("first", "second"):
        site_packages = tmp_path / folder / "python"
        (site_packages / "package").mkdir(parents=True)
        (site_packages / "package" / "module.py").write_text("VALUE = {1, 2}\n", encoding="utf-8")
        (site_packages / "left_as_source.py").write_text("X = 1\n", encoding="utf-8")

        # When each is compiled for Lambda
        build.compile_for_lambda(compiler, site_packages, {"package"})
        compiled.append(next((site_packages / "package" / "__pycache__").glob("module.*.pyc")))

    # Then the byte code is the same bytes, names /opt/python/... and is trusted without
    # reading the source (flags 0b01: hash-based, unchecked); what was not named stays source
    first, second = (path.read_bytes() for path in compiled)
    assert first == second
    assert int.from_bytes(first[4:8], "little") == 0b01
    if compiler.path == sys.executable:
        code = marshal.loads(first[16:])  # noqa: S302 (byte code this test compiled)
        assert code.co_filename == "/opt/python/package/module.py"
    else:
        assert b"/opt/python/package/module.py" in first
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


def _fake_python(path: Path, says: str) -> str:
    """An executable that answers the build's probe with ``says`` (or exits 127 if empty)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    body = f"echo {says}" if says else "exit 127"
    path.write_text(f"#!/bin/sh\n{body}\n", encoding="utf-8")
    path.chmod(0o755)
    return str(path)


def test_the_lambda_python_is_the_one_named_or_the_newest_final_3_12_the_machine_runs(
    tmp_path, monkeypatch
):
    # Given a python3.12 on the path that cannot run (a shim with no version selected),
    # and pyenv's 3.12.9, 3.12.10 and a 3.12 pre-release
    build = _build_script()
    _fake_python(tmp_path / "bin" / "python3.12", "")
    for version, level in (("3.12.9", "final"), ("3.12.10", "final"), ("3.12.11", "candidate")):
        _fake_python(
            tmp_path / "pyenv" / "versions" / version / "bin" / "python3.12",
            f"CPython {version} {level}",
        )
    monkeypatch.setenv("PATH", str(tmp_path / "bin"))
    monkeypatch.setenv("PYENV_ROOT", str(tmp_path / "pyenv"))
    monkeypatch.delenv(build.LAMBDA_PYTHON_VARIABLE, raising=False)

    # When the build looks for the interpreter that compiles the layers
    found = build.lambda_interpreter()

    # Then it takes the newest final release, passing over the shim and the pre-release
    assert found is not None
    assert found.version == "CPython 3.12.10"
    assert "3.12.10" in found.path

    # And with none at all, it finds none (the build then ships sources and says so)
    monkeypatch.setenv("PYENV_ROOT", str(tmp_path / "no-pyenv"))
    assert build.lambda_interpreter() is None


@pytest.mark.parametrize(
    ("says", "reason"),
    [
        ("CPython 3.11.7 final", "not CPython 3.12"),
        ("PyPy 3.12.1 final", "not CPython 3.12"),
        ("CPython 3.12.0 beta", "pre-release"),
        ("", "not a working Python"),
    ],
)
def test_a_lambda_python_named_that_cannot_compile_for_lambda_stops_the_build(
    tmp_path, monkeypatch, says, reason
):
    # Given $LAMBDA_PYTHON naming an interpreter that is not a final CPython 3.12
    build = _build_script()
    monkeypatch.setenv(build.LAMBDA_PYTHON_VARIABLE, _fake_python(tmp_path / "python", says))

    # When the build looks for it, then it stops, saying what the named one is
    with pytest.raises(build.LambdaPythonError, match=reason):
        build.lambda_interpreter()


def test_a_lambda_python_named_that_does_not_exist_stops_the_build(tmp_path, monkeypatch):
    build = _build_script()
    monkeypatch.setenv(build.LAMBDA_PYTHON_VARIABLE, str(tmp_path / "missing"))
    with pytest.raises(build.LambdaPythonError, match="does not run"):
        build.lambda_interpreter()


def test_compiling_a_package_the_layer_lacks_is_a_named_error(tmp_path):
    # Given a layer without one of the packages to be compiled
    build = _build_script()
    (tmp_path / "present").mkdir()

    # When it is compiled, then the build stops naming the missing package
    with pytest.raises(build.ByteCodeCompileError, match="absent"):
        build.compile_for_lambda(
            build.Interpreter(sys.executable, "this one"), tmp_path, {"present", "absent"}
        )
