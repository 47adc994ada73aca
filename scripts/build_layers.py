"""Build the Lambda layers of the data platform into ``build/layers``, without Docker.

Two layers, so that the large one is rebuilt (and re-uploaded) only when the
dependencies change:

``dependencies``
    The third-party runtime dependencies from ``pyproject.toml`` that the Lambda
    runtime does not already provide: psycopg (binary) and pyarrow, at the versions
    ``requirements.txt`` locks. Installed with ``pip install --platform manylinux...
    --only-binary=:all:``, which fetches the Linux x86_64 CPython 3.12 wheels whatever
    machine runs the build; a package the lock does not pin stops the build.
``core``
    The ``totes`` package itself (``layers/core/totes``), installed without its
    dependencies.

Left out on purpose: boto3 (part of the Lambda Python runtime), rich (terminal
output of the ``totes`` command only) and aws-lambda-powertools (the functions use
the public Powertools layer). See ``docs/adr/0004-lambda-packaging-without-docker.md``.

Both carry the byte code of the modules the handlers import, compiled for the Lambda
runtime's Python (3.12) by a CPython 3.12 of the build machine: ``$LAMBDA_PYTHON``,
``python3.12`` on the path, or pyenv's. Lambda unpacks layers into a read-only ``/opt``, where
Python cannot keep what it compiles, so without it every cold start compiles every
module it imports again (ADR 27). Without such an interpreter the layers carry sources
alone, and the build says so.

Each layer becomes ``build/layers/<name>/python/...`` and a reproducible
``build/layers/<name>.zip`` (sorted entries, fixed timestamps) that the CDK app
uploads as is, plus ``build/layers/<name>.json`` with its inputs' fingerprint and
its sizes. A layer whose inputs (the lock included) have not changed is not rebuilt;
``--force`` rebuilds it anyway.

Usage::

    python scripts/build_layers.py            # what `make build` runs
    python scripts/build_layers.py --force    # rebuild even if up to date
"""

from __future__ import annotations

import argparse
import filecmp
import hashlib
import json
import os
import re
import shutil
import stat
import subprocess  # nosec B404
import sys
import tempfile
import tomllib
import zipfile
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

REPOSITORY_ROOT = Path(__file__).resolve().parents[1]
LOCK = REPOSITORY_ROOT / "requirements.txt"
DEFAULT_OUTPUT = REPOSITORY_ROOT / "build" / "layers"
CORE_PACKAGE = REPOSITORY_ROOT / "layers" / "core" / "totes"

#: The Lambda runtime the layers are built for (see stacks/functions.py).
LAMBDA_PYTHON_VERSION = "3.12"
#: Amazon Linux 2023 (glibc 2.34) runs python3.12 functions, so wheels for either
#: manylinux baseline load there; recent pyarrow releases publish only the newer one.
LAMBDA_PLATFORMS = ("manylinux2014_x86_64", "manylinux_2_28_x86_64")
#: The Lambda runtime as environment markers see it, to read the lock's conditional pins.
LAMBDA_MARKER_ENVIRONMENT = {
    "python_version": LAMBDA_PYTHON_VERSION,
    "python_full_version": f"{LAMBDA_PYTHON_VERSION}.0",
    "implementation_name": "cpython",
    "platform_python_implementation": "CPython",
    "sys_platform": "linux",
    "platform_system": "Linux",
    "platform_machine": "x86_64",
    "os_name": "posix",
}

#: Runtime dependencies that do not go into the dependencies layer, and why.
NOT_IN_LAYER = {
    "boto3": "provided by the Lambda Python runtime",
    "botocore": "provided by the Lambda Python runtime",
    "aws-lambda-powertools": "provided by the public Powertools layer",
}

#: What no function imports at run time: tests, C headers and Cython sources of the
#: wheels, and console scripts. pip writes no byte code (``--no-compile``): it would be for
#: the build machine's Python; the Lambda runtime's is compiled afterwards.
_TRIMMED_ANYWHERE = frozenset({"__pycache__", "tests"})
_TRIMMED_AT_TOP = frozenset({"bin"})
_TRIMMED_INSIDE_PACKAGE = {"pyarrow": frozenset({"include", "src"})}
_TRIMMED_SUFFIXES = (".pyc", ".pyx", ".pxd", ".pxi")
#: A shared library of a wheel, as its versioned name (``libarrow_python.so.2400``), the
#: name the extension modules ask the loader for. A wheel cannot hold symbolic links, so
#: the same library also comes as copies under the names only a linker reads
#: (``libarrow_python.so``, ``libarrow_python.so.2400.0.0``): 5.0 MB of pyarrow's.
_SONAME = re.compile(r"^(lib[\w+-]+\.so)\.(\d+)$")

#: Where Lambda unpacks a layer's ``python`` folder: the file names compiled modules carry
#: (in tracebacks), whichever folder they were compiled in.
LAMBDA_LAYER_PATH = "/opt/python"
#: The tag of the byte code files the Lambda runtime's Python reads.
_BYTE_CODE_TAG = "cpython-" + LAMBDA_PYTHON_VERSION.replace(".", "")
#: Names the CPython 3.12 that compiles the layers' byte code (looked for first).
LAMBDA_PYTHON_VARIABLE = "LAMBDA_PYTHON"
#: The dependencies layer's top-level packages and modules that a handler imports: compiled.
#: The rest (pyiceberg's Hive client, rich and Pygments for its command line, ...) stays
#: source, which leaves room under Lambda's size limit. ``tests/infra/test_lambda_packaging.py``
#: fails naming any module a handler imports that this leaves out (a name no handler needs
#: any more goes unnoticed).
COMPILED_DEPENDENCIES = frozenset(
    {
        "annotated_types",
        "cachetools",
        "certifi",
        "dateutil",
        "psycopg",
        "psycopg_binary",
        "pyarrow",
        "pydantic",
        "pydantic_core",
        "pyiceberg",
        "pyparsing",
        "six.py",
        "strictyaml",
        "typing_extensions.py",
        "typing_inspection",
        "urllib3",
        "zstandard",
    }
)

#: Bumped when this script changes what it produces, so stale builds are redone.
_BUILD_FORMAT = "4"
#: A pinned line of the lock: ``name==version`` and, after `` ; ``, an environment marker.
_LOCKED_LINE = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]*)==([^\s;]+)(?:\s*;\s*([^\\]+?))?\s*\\?$")
#: Date of every zip entry: the earliest a zip can hold, so that identical
#: content always gives identical bytes (and an unchanged CDK asset hash).
_ZIP_EPOCH = (1980, 1, 1, 0, 0, 0)


@dataclass(frozen=True)
class LayerReport:
    """What was built for one layer and how big it is."""

    name: str
    zip_path: Path
    files: int
    unzipped_bytes: int
    zipped_bytes: int
    packages: dict[str, str]
    #: Modules whose byte code the layer carries, and the interpreter that compiled them.
    byte_code_modules: int
    compiled_by: str
    rebuilt: bool

    def describe(self) -> str:
        """One line for the terminal."""
        state = "built" if self.rebuilt else "up to date"
        return (
            f"{self.name:<13} {state:<10} {_megabytes(self.unzipped_bytes):>8} unzipped, "
            f"{_megabytes(self.zipped_bytes):>8} zipped, {self.files} files, "
            + (
                f"byte code of {self.byte_code_modules} modules by {self.compiled_by}: "
                if self.byte_code_modules
                else "sources alone (no byte code for Lambda): "
            )
            + ", ".join(f"{name} {version}" for name, version in sorted(self.packages.items()))
        )


def layer_requirements(pyproject: Path) -> list[str]:
    """The requirement strings of ``[project.dependencies]`` that belong in the layer.

    Examples
    --------
    >>> any(r.startswith("pyarrow") for r in layer_requirements(REPOSITORY_ROOT / "pyproject.toml"))
    True
    """
    dependencies: list[str] = tomllib.loads(pyproject.read_text(encoding="utf-8"))["project"][
        "dependencies"
    ]
    return [
        requirement
        for requirement in dependencies
        if _canonical_name(requirement) not in NOT_IN_LAYER
    ]


class UnlockedPackageError(RuntimeError):
    """The layer would hold a package, or a version of one, that the lock does not pin."""


def locked_versions(lock: Path, environment: Mapping[str, str]) -> dict[str, str]:
    """The version the lock pins for each package, in the given environment.

    A universal lock may pin a package twice under exclusive markers (numpy for Python
    3.11 and for 3.12); only the pin whose marker holds in ``environment`` counts.

    Examples
    --------
    >>> pins = locked_versions(LOCK, LAMBDA_MARKER_ENVIRONMENT)
    >>> pins["pyarrow"] == locked_versions(LOCK, {"python_version": "3.11"})["pyarrow"]
    True
    """
    from packaging.markers import Marker  # noqa: PLC0415 (the lock's reader, not the layer's)

    pins: dict[str, str] = {}
    for line in lock.read_text(encoding="utf-8").splitlines():
        match = _LOCKED_LINE.match(line)
        if match is None:
            continue
        name, version, marker = match.groups()
        if marker is None or Marker(marker).evaluate(dict(environment)):
            pins[_canonical_name(name)] = version
    return pins


def build_layers(output: Path = DEFAULT_OUTPUT, *, force: bool = False) -> list[LayerReport]:
    """Build (or reuse) both layers under ``output``.

    Parameters
    ----------
    output : pathlib.Path
        Folder that receives ``<layer>/python``, ``<layer>.zip`` and ``<layer>.json``.
    force : bool
        Rebuild even when the inputs have not changed.

    Returns
    -------
    list of LayerReport
    """
    output.mkdir(parents=True, exist_ok=True)
    requirements = layer_requirements(REPOSITORY_ROOT / "pyproject.toml")
    pins = locked_versions(LOCK, LAMBDA_MARKER_ENVIRONMENT)
    constraints = [f"{name}=={version}" for name, version in sorted(pins.items())]
    compiler = lambda_interpreter()
    # A build by another interpreter release (or by none) is another build.
    compiled_by = compiler.version if compiler else "sources only"
    dependencies_inputs = _fingerprint(
        [
            _BUILD_FORMAT,
            LAMBDA_PYTHON_VERSION,
            compiled_by,
            *LAMBDA_PLATFORMS,
            *requirements,
            *constraints,
            *sorted(COMPILED_DEPENDENCIES),
        ]
    )
    core_inputs = _fingerprint(
        [
            _BUILD_FORMAT,
            compiled_by,
            (REPOSITORY_ROOT / "pyproject.toml").read_text(encoding="utf-8"),
        ],
        files=_source_files(CORE_PACKAGE),
    )
    return [
        _build_layer(
            output,
            "dependencies",
            dependencies_inputs,
            lambda target: _install_locked(requirements, constraints, pins, target),
            compile_modules=lambda site_packages: _compile_for_lambda(
                compiler, site_packages, COMPILED_DEPENDENCIES
            ),
            force=force,
        ),
        _build_layer(
            output,
            "core",
            core_inputs,
            _install_core_package,
            compile_modules=lambda site_packages: _compile_for_lambda(
                compiler, site_packages, {"totes"}
            ),
            force=force,
        ),
    ]


@dataclass(frozen=True)
class Interpreter:
    """A CPython of the Lambda runtime's version on the build machine."""

    path: str
    #: ``CPython 3.12.1``: layers compiled by another release are built again.
    version: str


class LambdaPythonError(RuntimeError):
    """``$LAMBDA_PYTHON`` names no final release of CPython of the Lambda runtime's version."""


class ByteCodeCompileError(RuntimeError):
    """The layer's byte code could not be compiled: the packages named are missing, or the
    compiler failed (its output is in the message)."""


#: What a candidate interpreter says of itself: implementation, version, release level.
_INTERPRETER_PROBE = (
    "import platform, sys; "
    "print(platform.python_implementation(), platform.python_version(), "
    "sys.version_info.releaselevel)"
)


def lambda_interpreter() -> Interpreter | None:
    """The CPython that compiles the layers' byte code, or None where the machine has none.

    Looked for in this order: ``$LAMBDA_PYTHON`` (which must then be a final release of
    CPython 3.12), ``python3.12`` on the path when it runs (a version manager's shim that
    names a version it has not selected does not), and the newest 3.12 that pyenv
    installed (``$PYENV_ROOT``, by default ``~/.pyenv``).

    Returns
    -------
    Interpreter or None

    Raises
    ------
    LambdaPythonError
        ``$LAMBDA_PYTHON`` does not run, or is not a final CPython 3.12.

    Examples
    --------
    >>> found = lambda_interpreter()
    >>> found is None or found.version.startswith("CPython 3.12.")
    True
    """
    named = os.environ.get(LAMBDA_PYTHON_VARIABLE)
    if named:
        found = _lambda_version(named)
        if isinstance(found, str):
            raise LambdaPythonError(f"{LAMBDA_PYTHON_VARIABLE}={named} {found}")
        return found
    pyenv_root = Path(os.environ.get("PYENV_ROOT") or Path.home() / ".pyenv")
    installed = sorted(
        pyenv_root.glob(f"versions/{LAMBDA_PYTHON_VERSION}.*/bin/python{LAMBDA_PYTHON_VERSION}"),
        key=lambda path: [int(part) for part in re.findall(r"\d+", path.parts[-3])],
        reverse=True,
    )
    on_path = shutil.which(f"python{LAMBDA_PYTHON_VERSION}")
    for candidate in [*([on_path] if on_path else []), *map(str, installed)]:
        found = _lambda_version(candidate)
        if isinstance(found, Interpreter):
            return found
    return None


def _lambda_version(candidate: str) -> Interpreter | str:
    """``candidate`` as an :class:`Interpreter`, or why it cannot compile for Lambda."""
    try:
        # An interpreter the user named or the machine holds, with a fixed probe.
        completed = subprocess.run(  # noqa: S603  # nosec B603
            [candidate, "-I", "-c", _INTERPRETER_PROBE],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        return f"does not run: {exc}"
    said = completed.stdout.split()
    if completed.returncode != 0 or len(said) != 3:
        return "is not a working Python"
    implementation, version, level = said
    if implementation != "CPython" or not version.startswith(f"{LAMBDA_PYTHON_VERSION}."):
        return f"is {implementation} {version}, not CPython {LAMBDA_PYTHON_VERSION}"
    if level != "final":
        # A pre-release's byte code carries another magic number, which Lambda's would reject.
        return f"is a pre-release ({version}), not a final CPython {LAMBDA_PYTHON_VERSION}"
    return Interpreter(path=candidate, version=f"{implementation} {version}")


def compile_for_lambda(interpreter: Interpreter, site_packages: Path, names: Iterable[str]) -> None:
    """Write the byte code of the named top-level packages and modules, as Lambda imports them.

    Each module gets ``__pycache__/<name>.cpython-312.pyc``, checked against nothing but its
    interpreter's version (``unchecked-hash``: a layer never changes once published, so
    Python need not read the source to trust it), naming its file as Lambda sees it
    (``/opt/python/...``). The same sources and interpreter release give the same bytes.

    Parameters
    ----------
    interpreter : Interpreter
        The CPython of the Lambda runtime's version that compiles.
    site_packages : pathlib.Path
        The layer's ``python`` folder.
    names : iterable of str
        Top-level packages (folders) and modules (``six.py``) of ``site_packages``.

    Raises
    ------
    ByteCodeCompileError
        A name is not in ``site_packages``, or the compiler failed.
    """
    named = sorted(set(names))
    missing = [name for name in named if not (site_packages / name).exists()]
    if missing or not named:
        raise ByteCodeCompileError(
            f"{site_packages} lacks what is to be compiled: {', '.join(missing) or 'nothing named'}"
        )
    command = [
        interpreter.path,
        *("-I", "-m", "compileall", "-q", "-j", "0"),
        *("-s", str(site_packages), "-p", LAMBDA_LAYER_PATH),
        *("--invalidation-mode", "unchecked-hash"),
        *(str(site_packages / name) for name in named),
    ]
    # The interpreter found above, with paths of this build: no shell, no outside input.
    completed = subprocess.run(command, capture_output=True, text=True, check=False)  # noqa: S603  # nosec B603
    if completed.returncode != 0:
        raise ByteCodeCompileError(
            f"{interpreter.path} could not compile {site_packages}: "
            f"{(completed.stdout + completed.stderr).strip()[-2000:]}"
        )


def _compile_for_lambda(
    interpreter: Interpreter | None, site_packages: Path, names: Iterable[str]
) -> str:
    """Compile where an interpreter was found; say which, or that none was."""
    if interpreter is None:
        print(
            f"no CPython {LAMBDA_PYTHON_VERSION} found (${LAMBDA_PYTHON_VARIABLE}, "
            f"python{LAMBDA_PYTHON_VERSION} on the path or pyenv's): the layer carries sources "
            "alone, which every cold start on Lambda compiles again",
            flush=True,
        )
        return "sources only"
    compile_for_lambda(interpreter, site_packages, names)
    return interpreter.version


def _build_layer(
    output: Path,
    name: str,
    inputs_fingerprint: str,
    install: Callable[[Path], None],
    *,
    compile_modules: Callable[[Path], str],
    force: bool,
) -> LayerReport:
    folder, zip_path, report_path = output / name, output / f"{name}.zip", output / f"{name}.json"
    if not force and zip_path.is_file() and report_path.is_file():
        recorded = json.loads(report_path.read_text(encoding="utf-8"))
        if recorded.get("inputs") == inputs_fingerprint:
            return _report(name, zip_path, recorded, rebuilt=False)

    shutil.rmtree(folder, ignore_errors=True)
    site_packages = folder / "python"
    install(site_packages)
    _trim(site_packages)
    compiled_by = compile_modules(site_packages)
    files = _write_reproducible_zip(folder, zip_path)
    recorded = {
        "inputs": inputs_fingerprint,
        "files": files,
        "unzipped_bytes": sum(path.stat().st_size for path in _files_under(folder)),
        "zipped_bytes": zip_path.stat().st_size,
        "packages": _installed_distributions(site_packages),
        "byte_code_modules": sum(1 for _ in site_packages.rglob(f"*.{_BYTE_CODE_TAG}.pyc")),
        "compiled_by": compiled_by,
    }
    report_path.write_text(json.dumps(recorded, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    return _report(name, zip_path, recorded, rebuilt=True)


def _pip_install(arguments: Sequence[str], target: Path) -> None:
    command = [
        sys.executable,
        "-m",
        "pip",
        "install",
        "--quiet",
        "--disable-pip-version-check",
        "--no-compile",
        "--target",
        str(target),
        *arguments,
    ]
    print("$", " ".join(command), flush=True)
    # Our own pip, arguments built from pyproject: no shell, no outside input.
    subprocess.run(command, check=True)  # noqa: S603  # nosec B603


def _install_locked(
    requirements: Sequence[str], constraints: Sequence[str], pins: Mapping[str, str], target: Path
) -> None:
    with tempfile.TemporaryDirectory(prefix="totes-layer-constraints-") as scratch:
        constraints_file = Path(scratch) / "constraints.txt"
        constraints_file.write_text("\n".join(constraints) + "\n", encoding="utf-8")
        _pip_install(
            [
                *("--platform", LAMBDA_PLATFORMS[0], "--platform", LAMBDA_PLATFORMS[1]),
                *("--implementation", "cp", "--python-version", LAMBDA_PYTHON_VERSION),
                "--only-binary=:all:",
                *("--constraint", str(constraints_file)),
                *requirements,
            ],
            target,
        )
    unlocked = {
        name: version
        for name, version in _installed_distributions(target).items()
        if pins.get(_canonical_name(name)) != version
    }
    if unlocked:
        raise UnlockedPackageError(
            "the layer would hold packages requirements.txt does not pin at these versions: "
            + ", ".join(f"{name} {version}" for name, version in sorted(unlocked.items()))
            + "; run `make lock`"
        )


def _install_core_package(target: Path) -> None:
    # Built from a copy: setuptools writes its scratch folders (build/lib, ...) next
    # to the project, which would land in this very build folder.
    with tempfile.TemporaryDirectory(prefix="totes-core-layer-") as scratch:
        project = Path(scratch)
        shutil.copy2(REPOSITORY_ROOT / "pyproject.toml", project / "pyproject.toml")
        shutil.copy2(REPOSITORY_ROOT / "README.md", project / "README.md")
        shutil.copytree(
            CORE_PACKAGE,
            project / "layers" / "core" / "totes",
            ignore=shutil.ignore_patterns("__pycache__", "*.pyc", "*.egg-info"),
        )
        _pip_install(["--no-deps", str(project)], target)


def _trim(site_packages: Path) -> None:
    for path in sorted(site_packages.rglob("*"), reverse=True):
        if not path.exists():  # inside a folder removed a moment ago
            continue
        if path.is_dir() and _is_trimmed_directory(path.relative_to(site_packages).parts):
            shutil.rmtree(path)
        elif path.is_file() and path.name.endswith(_TRIMMED_SUFFIXES):
            path.unlink()
    for folder in {path.parent for path in site_packages.rglob("lib*.so.*")}:
        copies = linker_only_copies(path.name for path in folder.iterdir())
        for copy, loaded in copies.items():
            if filecmp.cmp(folder / copy, folder / loaded, shallow=False):
                (folder / copy).unlink()


def linker_only_copies(names: Iterable[str]) -> dict[str, str]:
    """The names of shared libraries that only a linker would read, among a folder's files,
    each with the name the loader reads (whose copy it may be: the caller compares them).

    Examples
    --------
    >>> copies = linker_only_copies(
    ...     ["libarrow_python.so", "libarrow_python.so.2400", "libarrow_python.so.2400.0.0",
    ...      "libparquet.so.2400", "lib.cpython-312-x86_64-linux-gnu.so", "libz.so"]
    ... )
    >>> for copy, loaded in copies.items():
    ...     print(copy, "->", loaded)
    libarrow_python.so -> libarrow_python.so.2400
    libarrow_python.so.2400.0.0 -> libarrow_python.so.2400
    """
    present = set(names)
    copies = {}
    for name in sorted(present):
        match = _SONAME.match(name)
        if match is None:
            continue
        unversioned, major = match.groups()
        for other in sorted(present):
            if other == unversioned or other.startswith(f"{unversioned}.{major}."):
                copies[other] = name
    return copies


def _is_trimmed_directory(parts: tuple[str, ...]) -> bool:
    if parts[-1] in _TRIMMED_ANYWHERE:
        return True
    if len(parts) == 1:
        return parts[0] in _TRIMMED_AT_TOP
    return len(parts) == 2 and parts[1] in _TRIMMED_INSIDE_PACKAGE.get(parts[0], frozenset())


def _write_reproducible_zip(folder: Path, zip_path: Path) -> int:
    partial = zip_path.with_suffix(".zip.partial")
    count = 0
    with zipfile.ZipFile(partial, "w", compression=zipfile.ZIP_DEFLATED, compresslevel=6) as zipped:
        for path in _files_under(folder):
            entry = zipfile.ZipInfo(path.relative_to(folder).as_posix(), date_time=_ZIP_EPOCH)
            executable = path.stat().st_mode & stat.S_IXUSR
            entry.external_attr = (stat.S_IFREG | (0o755 if executable else 0o644)) << 16
            entry.compress_type = zipfile.ZIP_DEFLATED
            zipped.writestr(entry, path.read_bytes(), compresslevel=6)
            count += 1
    os.replace(partial, zip_path)
    return count


def _files_under(folder: Path) -> Iterator[Path]:
    for root, directories, names in os.walk(folder):
        directories.sort()
        for name in sorted(names):
            yield Path(root) / name


def _installed_distributions(site_packages: Path) -> dict[str, str]:
    distributions = {}
    for metadata in site_packages.glob("*.dist-info/METADATA"):
        fields = dict(
            line.split(": ", 1)
            for line in metadata.read_text(encoding="utf-8").splitlines()
            if line.startswith(("Name: ", "Version: "))
        )
        distributions[fields["Name"]] = fields["Version"]
    return distributions


def _source_files(package: Path) -> list[Path]:
    return [
        path
        for path in _files_under(package)
        if "__pycache__" not in path.parts and not path.name.endswith(".pyc")
    ]


def _fingerprint(values: Iterable[str], files: Iterable[Path] = ()) -> str:
    digest = hashlib.sha256()
    for value in values:
        digest.update(value.encode())
        digest.update(b"\0")
    for path in files:
        digest.update(path.relative_to(REPOSITORY_ROOT).as_posix().encode())
        digest.update(b"\0")
        digest.update(path.read_bytes())
    return digest.hexdigest()


def _report(
    name: str, zip_path: Path, recorded: Mapping[str, Any], *, rebuilt: bool
) -> LayerReport:
    return LayerReport(
        name=name,
        zip_path=zip_path,
        files=int(recorded["files"]),
        unzipped_bytes=int(recorded["unzipped_bytes"]),
        zipped_bytes=int(recorded["zipped_bytes"]),
        packages={str(key): str(value) for key, value in recorded["packages"].items()},
        byte_code_modules=int(recorded.get("byte_code_modules", 0)),
        compiled_by=str(recorded.get("compiled_by", "")),
        rebuilt=rebuilt,
    )


def _canonical_name(requirement: str) -> str:
    match = re.match(r"[A-Za-z0-9][A-Za-z0-9._-]*", requirement.strip())
    if match is None:
        raise ValueError(f"cannot read the project name of requirement {requirement!r}")
    return re.sub(r"[-_.]+", "-", match.group()).lower()


def _megabytes(size: int) -> str:
    return f"{size / 1_000_000:.1f} MB"


def main(argv: Sequence[str] | None = None) -> int:
    """Command-line entry point; returns the exit status."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--output", type=Path, default=DEFAULT_OUTPUT, help="folder of the built layers"
    )
    parser.add_argument("--force", action="store_true", help="rebuild even if up to date")
    options = parser.parse_args(argv)
    try:
        reports = build_layers(options.output, force=options.force)
    except subprocess.CalledProcessError as error:
        print(f"build_layers: pip failed with exit status {error.returncode}", file=sys.stderr)
        return 1
    except (UnlockedPackageError, LambdaPythonError, ByteCodeCompileError) as error:
        print(f"build_layers: {error}", file=sys.stderr)
        return 1
    for report in reports:
        print(report.describe())
    total = sum(report.unzipped_bytes for report in reports)
    print(f"{'total':<13} {'':<10} {_megabytes(total):>8} unzipped")
    return 0


if __name__ == "__main__":
    sys.exit(main())
