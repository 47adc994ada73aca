"""The CDK app's cloud assembly, produced by running ``app.py`` in a child process.

The local runtime executes the state machine that the CDK app synthesises, not
a copy of it. Runtime code never imports ``aws_cdk``: :func:`synthesise` runs
the project's ``app.py`` with the interpreter of this process, as ``cdk synth``
would (context from ``cdk.json``, output folder from ``CDK_OUTDIR``), and
:class:`CloudAssembly` reads the JSON it leaves behind.

A synthesis costs a Node.js start and the CDK's work (10-20 s), so its output is
kept with a fingerprint of every file that shapes it; the next run reuses it
unless one of them changed.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import subprocess  # nosec B404
import sys
import tempfile
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Any

from totes.errors import TotesError

#: Files whose content shapes the synthesised template (relative to the project root).
_INPUT_FILES = ("app.py", "cdk.json", "layers/core/totes/names.py")
#: Folders whose Python files shape the template or are deployed as function code.
_INPUT_FOLDERS = ("stacks", "lambdas")
#: The built layers, which synthesis copies into the assembly as assets: a changed core
#: package must reach the functions even when no file of the app changed.
_LAYER_ZIPS = "build/layers/*.zip"
_FINGERPRINT_FILE = ".totes-inputs.sha256"
#: Installed packages whose version changes what the app synthesises.
_SYNTH_DISTRIBUTIONS = ("aws-cdk-lib", "constructs", "cdk-nag")
#: The Node.js runtime of the CDK prints a banner on versions it has not tested; it
#: changes nothing that is synthesised.
_QUIET_JSII = {
    "JSII_SILENCE_WARNING_DEPRECATED_NODE_VERSION": "1",
    "JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION": "20",
    "JSII_SILENCE_WARNING_UNTESTED_NODE_VERSION": "1",
}
_SYNTH_TIMEOUT_S = 600
_ERROR_TAIL_LINES = 12


class ProjectNotFoundError(TotesError):
    """No folder holding the CDK app (``app.py`` and ``cdk.json``) was found."""


class SynthesisFailedError(TotesError):
    """``app.py`` exited with an error, or left no template behind."""


class AssemblyFormatError(TotesError):
    """A cloud assembly lacks the stack template or an asset the local runtime needs."""


def find_project_root(start: Path | None = None) -> Path:
    """Find the folder of the CDK app: ``start`` (default: the working folder) or a parent.

    Falls back to the checkout that this package is installed from (editable
    install), so ``totes run`` works from any folder of the repository.

    Raises
    ------
    ProjectNotFoundError
        Neither place holds ``app.py`` next to ``cdk.json``.

    Examples
    --------
    >>> (find_project_root() / "cdk.json").is_file()  # doctest: +SKIP
    True
    """
    here = (start or Path.cwd()).resolve()
    # <checkout>/tools/totes_local/runtime/assembly.py
    package_checkout = Path(__file__).resolve().parents[3]
    for candidate in (here, *here.parents, package_checkout):
        if (candidate / "app.py").is_file() and (candidate / "cdk.json").is_file():
            return candidate
    raise ProjectNotFoundError(
        f"no CDK app (app.py with cdk.json) in {here} or its parents: run `totes run` "
        "inside the repository, or give --cdk-out with a synthesised cloud assembly"
    )


def inputs_fingerprint(project_root: Path, context: Mapping[str, Any] | None = None) -> str:
    """SHA-256 over every file that shapes the synthesised template, and the extra context.

    Examples
    --------
    >>> len(inputs_fingerprint(find_project_root()))  # doctest: +SKIP
    64
    """
    digest = hashlib.sha256()
    digest.update(sys.version.encode())
    for distribution in _SYNTH_DISTRIBUTIONS:
        try:
            digest.update(f"{distribution}=={metadata.version(distribution)}".encode())
        except metadata.PackageNotFoundError:
            digest.update(f"{distribution} absent".encode())
    digest.update(json.dumps(dict(context or {}), sort_keys=True).encode())
    for path in sorted(_input_paths(project_root)):
        digest.update(str(path.relative_to(project_root)).encode())
        digest.update(b"\0")
        digest.update(path.read_bytes())
        digest.update(b"\0")
    return digest.hexdigest()


def _input_paths(project_root: Path) -> Iterable[Path]:
    for name in _INPUT_FILES:
        path = project_root / name
        if path.is_file():
            yield path
    for folder in _INPUT_FOLDERS:
        yield from (
            path
            for path in (project_root / folder).rglob("*.py")
            if "__pycache__" not in path.parts
        )
    yield from project_root.glob(_LAYER_ZIPS)


@dataclass(frozen=True)
class CloudAssembly:
    """A synthesised cloud assembly folder and the template of its one stack.

    Attributes
    ----------
    directory : pathlib.Path
        The folder ``app.py`` wrote (``cdk.out``).
    stack_name : str
        Name of the stack whose template was read.
    template : dict
        The CloudFormation template, parsed.
    """

    directory: Path
    stack_name: str
    template: dict[str, Any]

    @classmethod
    def read(cls, directory: Path, stack_name: str | None = None) -> CloudAssembly:
        """Read the template of ``stack_name`` (default: the only stack) from ``directory``.

        Raises
        ------
        AssemblyFormatError
            No template, several stacks and none chosen, or unreadable JSON.

        Examples
        --------
        >>> CloudAssembly.read(Path("cdk.out")).stack_name  # doctest: +SKIP
        'TotesDataPlatform'
        """
        if stack_name is None:
            templates = sorted(directory.glob("*.template.json"))
            if len(templates) != 1:
                found = ", ".join(path.name for path in templates) or "none"
                raise AssemblyFormatError(
                    f"expected one stack template in {directory}, found {found}"
                )
            stack_name = templates[0].name.removesuffix(".template.json")
        path = directory / f"{stack_name}.template.json"
        try:
            template = json.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError as exc:
            raise AssemblyFormatError(
                f"{directory} holds no template of stack {stack_name}"
            ) from exc
        except json.JSONDecodeError as exc:
            raise AssemblyFormatError(f"{path} is not JSON") from exc
        if not isinstance(template, dict) or not isinstance(template.get("Resources"), dict):
            raise AssemblyFormatError(f"{path} is not a CloudFormation template")
        return cls(directory=directory, stack_name=stack_name, template=template)

    def asset_path(self, object_key: str) -> Path:
        """The local folder or file of the file asset uploaded under ``object_key``.

        Raises
        ------
        AssemblyFormatError
            The assembly's asset manifest lists no asset with that key.

        Examples
        --------
        >>> assembly.asset_path("e6eb28....zip").name  # doctest: +SKIP
        'asset.e6eb28...'
        """
        manifest_path = self.directory / f"{self.stack_name}.assets.json"
        try:
            manifest = json.loads(manifest_path.read_text(encoding="utf-8"))
        except FileNotFoundError as exc:
            raise AssemblyFormatError(f"{self.directory} has no asset manifest") from exc
        for asset in manifest.get("files", {}).values():
            keys = {dest.get("objectKey") for dest in asset.get("destinations", {}).values()}
            if object_key in keys:
                return self.directory / str(asset["source"]["path"])
        raise AssemblyFormatError(f"no asset of {self.stack_name} is uploaded as {object_key}")


def is_current(
    project_root: Path, outdir: Path, *, context: Mapping[str, Any] | None = None
) -> bool:
    """Whether ``outdir`` holds what :func:`synthesise` would write now (it would reuse it).

    Examples
    --------
    >>> is_current(find_project_root(), Path(".totes/cdk.out"))  # doctest: +SKIP
    True
    """
    marker = outdir / _FINGERPRINT_FILE
    return marker.is_file() and marker.read_text(encoding="utf-8") == inputs_fingerprint(
        project_root, context
    )


def synthesise(
    project_root: Path,
    outdir: Path,
    *,
    context: Mapping[str, Any] | None = None,
    reuse: bool = True,
) -> CloudAssembly:
    """Run the project's ``app.py`` into ``outdir``, or reuse what it wrote last time.

    Parameters
    ----------
    project_root
        Folder holding ``app.py`` and ``cdk.json``.
    outdir
        Where the cloud assembly goes (replaced as a whole when synthesised anew).
    context
        Context values on top of ``cdk.json``'s, as ``cdk synth -c key=value`` gives.
    reuse
        Keep an assembly whose inputs have not changed since it was written.

    Raises
    ------
    SynthesisFailedError
        ``app.py`` failed (its last lines of output are in the message), e.g. because
        the Lambda layers are not built yet.

    Examples
    --------
    >>> assembly = synthesise(find_project_root(), Path(".totes/cdk.out"))  # doctest: +SKIP
    >>> assembly.stack_name  # doctest: +SKIP
    'TotesDataPlatform'
    """
    if reuse and is_current(project_root, outdir, context=context):
        return CloudAssembly.read(outdir)
    fingerprint = inputs_fingerprint(project_root, context)
    outdir.parent.mkdir(parents=True, exist_ok=True)
    # Private to this synthesis: another process may be synthesising next to it.
    staging = Path(tempfile.mkdtemp(prefix=f"{outdir.name}.synth-", dir=outdir.parent))
    cdk_json = json.loads((project_root / "cdk.json").read_text(encoding="utf-8"))
    environment = {
        key: value
        for key, value in os.environ.items()
        # A template for no account and region in particular: the local runtime chooses them.
        if key not in ("CDK_DEFAULT_ACCOUNT", "CDK_DEFAULT_REGION")
    }
    environment.update(_QUIET_JSII)
    environment["CDK_OUTDIR"] = str(staging)
    environment["CDK_CONTEXT_JSON"] = json.dumps({**cdk_json.get("context", {}), **(context or {})})
    try:
        assembly = _run_app(project_root, environment, staging)
        (staging / _FINGERPRINT_FILE).write_text(fingerprint, encoding="utf-8")
        shutil.rmtree(outdir, ignore_errors=True)
        # Another process may have put an assembly of the same inputs there meanwhile.
        with contextlib.suppress(OSError):
            staging.rename(outdir)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return CloudAssembly.read(outdir, assembly.stack_name)


def _run_app(project_root: Path, environment: dict[str, str], staging: Path) -> CloudAssembly:
    try:
        # A fixed command: this interpreter on the project's own app.py.
        completed = subprocess.run(  # nosec B603
            [sys.executable, "app.py"],
            cwd=project_root,
            env=environment,
            capture_output=True,
            text=True,
            check=False,
            timeout=_SYNTH_TIMEOUT_S,
        )
    except subprocess.TimeoutExpired as exc:
        raise SynthesisFailedError(
            f"app.py did not finish synthesising within {_SYNTH_TIMEOUT_S} s"
        ) from exc
    if completed.returncode != 0:
        tail = "\n".join(
            (completed.stderr or completed.stdout).strip().splitlines()[-_ERROR_TAIL_LINES:]
        )
        raise SynthesisFailedError(
            f"synthesising the CDK app (python app.py) failed with status "
            f"{completed.returncode}:\n{tail}"
        )
    return CloudAssembly.read(staging)
