"""A built wheel carries its contracts and finds them from anywhere (no checkout, another cwd)."""

from __future__ import annotations

import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from stream_app.contracts import OUTPUTS, TOUCHPOINT

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]

CHECK = """
import sys, stream_app
from stream_app import contracts
from stream_app.ingest.schema import schema_problems
assert stream_app.__file__.startswith(sys.argv[1]), stream_app.__file__
for contract in [contracts.TOUCHPOINT, *contracts.OUTPUTS.values()]:
    contracts.validator(contract)
    print(contract.file)
assert schema_problems({"event_id": "e1"})
"""


def test_an_installed_wheel_finds_its_own_contracts(tmp_path):
    source, dist, site, elsewhere = (tmp_path / name for name in ("source", "dist", "site", "elsewhere"))
    # Built from a copy: setuptools leaves a build/ folder in the tree it builds.
    shutil.copytree(REPO / "stream_app", source / "stream_app", ignore=shutil.ignore_patterns("__pycache__"))
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(REPO / name, source / name)
    elsewhere.mkdir()
    build = [sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "-w", str(dist), str(source)]
    subprocess.run(build, check=True, cwd=tmp_path, capture_output=True, timeout=240)
    (wheel,) = dist.glob("stream_app-*.whl")
    zipfile.ZipFile(wheel).extractall(site)
    result = subprocess.run(
        [sys.executable, "-c", CHECK, str(site)],
        cwd=elsewhere,
        env={"PYTHONPATH": str(site), "PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == [c.file for c in [TOUCHPOINT, *OUTPUTS.values()]]
