"""A source table's columns as the database describes them: what every manifest records.

Apart from :mod:`totes.ingest.extract` so that the readers of manifests (transform)
do not import the database driver.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class SourceColumn:
    """A source column as the catalog describes it (recorded in every manifest)."""

    name: str
    data_type: str
    numeric_precision: int | None = None
    numeric_scale: int | None = None

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready form for the manifest."""
        return {
            "name": self.name,
            "type": self.data_type,
            "precision": self.numeric_precision,
            "scale": self.numeric_scale,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> SourceColumn:
        """Inverse of :meth:`as_dict`."""
        return cls(data["name"], data["type"], data.get("precision"), data.get("scale"))
