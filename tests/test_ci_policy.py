"""The session policy in conftest.py: a test skipped for a missing dependency fails the run."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path


def test_dependency_skip_fails_the_session(tmp_path: Path) -> None:
    shutil.copy(Path(__file__).with_name("conftest.py"), tmp_path / "conftest.py")
    (tmp_path / "test_probe.py").write_text(
        "import pytest\n\n"
        "def test_needs_missing():\n"
        "    pytest.importorskip('gradkit_no_such_module')\n\n"
        "def test_gpu_skip_is_fine():\n"
        "    pytest.skip('needs a CUDA device')\n"
    )
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(tmp_path)],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        timeout=120,
    )
    assert result.returncode == 1, result.stdout + result.stderr
    assert "skipped for a missing dependency" in result.stdout
    assert "test_needs_missing" in result.stdout
    assert "test_gpu_skip_is_fine" not in result.stdout.split("missing dependency")[1]
