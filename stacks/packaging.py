"""Where the deployable code of the functions comes from: handler folders and built layers.

Nothing here builds anything. ``scripts/build_layers.py`` (``make build``) turns
``pyproject.toml`` and ``layers/core`` into layer zips without Docker; the CDK app
only points at its output and stops with a clear message when it is missing.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

REPOSITORY_ROOT = Path(__file__).resolve().parents[1]

#: The command that produces the layer zips (what ``make build`` runs).
BUILD_COMMAND = "python scripts/build_layers.py"


class MissingPackagingError(FileNotFoundError):
    """A handler folder or a built layer the functions need does not exist."""


@dataclass(frozen=True)
class PipelinePackaging:
    """Paths of everything the functions are deployed from.

    Attributes
    ----------
    ingest_code, transform_code, load_code, progress_code, failure_code : Path
        Handler folders; each holds ``handler.py`` with a ``handler`` function.
    lake_maintenance_code : Path
        Handler folder of the lake maintenance step.
    credentials_check_code : Path
        Handler folder of the deployment's check of the credentials secrets.
    dependencies_layer : pathlib.Path
        Zip of the third-party layer (psycopg, pyarrow, pyiceberg) built for Python 3.12
        on x86_64.
    core_layer : pathlib.Path
        Zip of the ``totes`` package layer.
    """

    ingest_code: Path
    transform_code: Path
    load_code: Path
    progress_code: Path
    failure_code: Path
    lake_maintenance_code: Path
    credentials_check_code: Path
    dependencies_layer: Path
    core_layer: Path

    @classmethod
    def from_repository(cls, root: Path = REPOSITORY_ROOT) -> PipelinePackaging:
        """The standard layout: ``lambdas/<stage>`` and ``build/layers/<layer>.zip``.

        Parameters
        ----------
        root : pathlib.Path
            Repository root; absolute paths keep synthesis independent of the
            working directory.

        Returns
        -------
        PipelinePackaging
        """
        layers = root / "build" / "layers"
        return cls(
            ingest_code=root / "lambdas" / "ingest",
            transform_code=root / "lambdas" / "transform",
            load_code=root / "lambdas" / "load",
            progress_code=root / "lambdas" / "progress",
            failure_code=root / "lambdas" / "failure",
            lake_maintenance_code=root / "lambdas" / "lake_maintenance",
            credentials_check_code=root / "lambdas" / "credentials_check",
            dependencies_layer=layers / "dependencies.zip",
            core_layer=layers / "core.zip",
        )

    @property
    def handler_folders(self) -> tuple[Path, ...]:
        """Every handler folder, in pipeline order."""
        return (
            self.ingest_code,
            self.transform_code,
            self.load_code,
            self.progress_code,
            self.failure_code,
            self.lake_maintenance_code,
            self.credentials_check_code,
        )

    def check(self) -> None:
        """Fail early, naming every missing path and how to produce it.

        Raises
        ------
        MissingPackagingError
            A handler folder or a layer zip is missing.
        """
        problems = [
            f"handler folder {path} does not exist"
            for path in self.handler_folders
            if not path.is_dir()
        ]
        missing_layers = [
            path for path in (self.dependencies_layer, self.core_layer) if not path.is_file()
        ]
        if missing_layers:
            missing = ", ".join(str(path) for path in missing_layers)
            problems.append(
                f"the Lambda layers are not built (missing {missing}): "
                f"run `make build` (or `{BUILD_COMMAND}`) first"
            )
        if problems:
            raise MissingPackagingError("cannot package the functions: " + "; ".join(problems))
