"""pytest setup for the chart tests: make chartlib importable and fail
early, with a clear message, when helm is missing or broken."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

import chartlib  # noqa: E402


@pytest.fixture(scope="session", autouse=True)
def helm_works() -> str:
    try:
        path = chartlib.helm_bin()
    except RuntimeError as err:
        pytest.exit(str(err), returncode=2)
    proc = subprocess.run([path, "version", "--short"], capture_output=True, text=True)
    if proc.returncode != 0:
        pytest.exit(f"{path} version failed: {proc.stderr}", returncode=2)
    return path
