"""The package's imports follow the stage graph: pyproject.toml's layers contract holds."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def lint_imports(src: Path) -> subprocess.CompletedProcess:
    """import-linter's check of ``src/stepattr`` against pyproject.toml's contracts."""
    command = "import sys; from importlinter.cli import lint_imports; sys.exit(lint_imports())"
    return subprocess.run(
        [sys.executable, "-c", command, "--no-cache"],
        cwd=REPO,
        env=os.environ | {"PYTHONPATH": str(src)},
        capture_output=True,
        text=True,
    )


def test_imports_keep_the_layers() -> None:
    result = lint_imports(REPO / "src")
    assert result.returncode == 0, result.stdout + result.stderr


def test_an_upward_import_breaks_the_contract(tmp_path: Path) -> None:
    shutil.copytree(REPO / "src" / "stepattr", tmp_path / "stepattr")
    seeds = tmp_path / "stepattr" / "core" / "seeds.py"
    seeds.write_text(seeds.read_text() + "\nimport stepattr.workflow.checks  # noqa\n")
    result = lint_imports(tmp_path)
    assert result.returncode != 0
    assert "stepattr.core.seeds -> stepattr.workflow.checks" in result.stdout
