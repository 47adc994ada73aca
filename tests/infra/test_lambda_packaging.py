"""Packaging without Docker: the built layers, their size, and what if they are missing."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path
from types import ModuleType

import pytest

from stacks.packaging import MissingPackagingError, PipelinePackaging

pytestmark = pytest.mark.infra

REPOSITORY_ROOT = Path(__file__).resolve().parents[2]

#: Lambda's limit on a function's unzipped code plus all of its layers.
LAMBDA_UNZIPPED_LIMIT_BYTES = 250 * 1024 * 1024
#: The public Powertools layer cannot be measured offline. Its content (Powertools
#: with every extra, without the AWS SDK) measures 30.8 MB when pip-installed for
#: python3.12 on x86_64; this leaves room for it to grow.
POWERTOOLS_LAYER_ALLOWANCE_BYTES = 40 * 1000 * 1000


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


@pytest.mark.slow
def test_each_function_fits_lambdas_unzipped_size_limit(built_layers):
    # Given the built layers, the Powertools allowance and each function's code
    packaging = PipelinePackaging.from_repository(REPOSITORY_ROOT)
    layers = _unzipped_size(packaging.dependencies_layer) + _unzipped_size(packaging.core_layer)

    for code in packaging.handler_folders:
        # When Lambda unpacks the function with its three layers
        total = layers + POWERTOOLS_LAYER_ALLOWANCE_BYTES + _folder_size(code)

        # Then the whole stays under 250 MB, with room to spare
        assert total < LAMBDA_UNZIPPED_LIMIT_BYTES, f"{code.name}: {total / 1e6:.1f} MB"


@pytest.mark.slow
def test_the_dependencies_layer_holds_what_the_handlers_import_and_nothing_the_runtime_has(
    built_layers,
):
    # Given the report of the dependencies layer build
    report = json.loads((built_layers / "dependencies.json").read_text(encoding="utf-8"))
    packages = {name.lower().replace("_", "-") for name in report["packages"]}

    # Then it holds the database driver (with its binary build) and pyarrow
    assert {"psycopg", "psycopg-binary", "pyarrow"} <= packages
    # And not what Lambda's runtime or the Powertools layer provide, nor terminal output
    assert packages.isdisjoint({"boto3", "botocore", "aws-lambda-powertools", "rich"})
    # And its files are for Linux x86_64 CPython 3.12, whatever machine built them
    with zipfile.ZipFile(built_layers / "dependencies.zip") as zipped:
        extensions = [name for name in zipped.namelist() if name.endswith(".so")]
    assert extensions
    assert all("cpython-312-x86_64-linux-gnu" in name for name in extensions if "cpython" in name)


def test_the_core_layer_holds_the_totes_package_under_python(built_layers):
    # Given the core layer
    with zipfile.ZipFile(built_layers / "core.zip") as zipped:
        names = set(zipped.namelist())

    # Then Lambda finds the package on its path (/opt/python) with its shared names
    assert "python/totes/__init__.py" in names
    assert "python/totes/names.py" in names
    assert not [name for name in names if "__pycache__" in name]


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
    ("stage", "absent"),
    [
        ("ingest", ()),
        ("transform", ()),
        ("load", ()),
        ("progress", ()),
        ("failure", ()),
        # The catalog function has the AWS SDK for pandas layer instead of ours: nothing
        # only our dependencies layer holds may be imported.
        ("catalog", ("psycopg",)),
    ],
)
def test_each_handler_imports_from_its_asset_and_the_core_layer_alone(
    built_layers, tmp_path, stage, absent
):
    # Given the core layer unpacked as Lambda does (/opt), and the handler's asset
    with zipfile.ZipFile(built_layers / "core.zip") as zipped:
        zipped.extractall(tmp_path / "opt")
    asset = REPOSITORY_ROOT / "lambdas" / stage
    # Third-party packages from this interpreter's site-packages, without the editable
    # install of this repository (no .pth files are processed with -S), and without the
    # packages the function's layers do not hold.
    site_packages = sysconfig.get_paths()["purelib"]
    probe = (
        "import sys; sys.path[:0] = sys.argv[1:]; "
        + "".join(f"sys.modules[{name!r}] = None; " for name in absent)
        + "import handler, totes; "
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
    assert {"psycopg", "pyarrow"} <= names
    assert names.isdisjoint({"boto3", "aws-lambda-powertools", "rich"})


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
