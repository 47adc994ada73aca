"""The synthesised assembly is reused only while everything it was made from is unchanged."""

from __future__ import annotations

from pathlib import Path

from totes_local.runtime.assembly import inputs_fingerprint


def _project(root: Path) -> Path:
    for name, text in {
        "app.py": "app",
        "cdk.json": "{}",
        "stacks/stack.py": "stack",
        "lambdas/load/handler.py": "handler",
        "build/layers/core.zip": "core v1",
    }.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(text)
    return root


def test_a_rebuilt_layer_makes_the_assembly_stale_like_a_changed_handler(tmp_path: Path) -> None:
    # Given a project and the fingerprint of what its assembly was made from
    project = _project(tmp_path)
    before = inputs_fingerprint(project)
    # When only the built core layer changes (the core package was edited and rebuilt)
    (project / "build/layers/core.zip").write_text("core v2")
    # Then the assembly is stale: its copy of the layer is not what the functions need
    layer_changed = inputs_fingerprint(project)
    assert layer_changed != before
    # And a changed handler or context makes it stale too, while nothing else does
    (project / "lambdas/load/handler.py").write_text("handler v2")
    assert inputs_fingerprint(project) != layer_changed
    assert inputs_fingerprint(project, {"ingest_max_rows": "10"}) != inputs_fingerprint(project)
    unchanged = inputs_fingerprint(project)
    (project / "README.md").write_text("docs")
    assert inputs_fingerprint(project) == unchanged
