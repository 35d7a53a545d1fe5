"""The dashboard's own tests (Vitest: the waterfall's layout, the conversation parser, the formatters), run as
part of the Python suite so that `make test` and CI run them too."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

from tests.helpers import REPO


def test_vitest_passes(dashboard_build: Path) -> None:
    npx = shutil.which("npx")
    assert npx, "npm is installed (dashboard_build checked) but npx is not"
    result = subprocess.run(
        [npx, "vitest", "run", "--reporter=dot"],
        cwd=REPO / "dashboard",
        capture_output=True,
        text=True,
        timeout=300,
        env={"PATH": str(Path(npx).parent) + ":/usr/bin:/bin", "CI": "1"},
    )
    summary = "\n".join(line for line in result.stdout.splitlines() if "Test" in line)
    assert result.returncode == 0, f"vitest failed:\n{result.stdout[-4000:]}\n{result.stderr[-2000:]}"
    assert "passed" in summary and "failed" not in summary, summary
