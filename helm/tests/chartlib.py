"""Helpers (imported by the tests) for rendering the gdpr-intake chart with the real helm binary.

helm comes from HELM_BIN (exported by .ci/helm-check.sh), else
.ci/.tools/bin/helm, else helm on PATH. A missing helm is an error, not a
skip: these tests are the chart's acceptance checks.
"""

from __future__ import annotations

import copy
import json
import os
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
CHART = REPO / "helm" / "gdpr-intake"
CI_VALUES = sorted((CHART / "ci").glob("*.yaml"))
RELEASE = "t"
FULLNAME = f"{RELEASE}-gdpr-intake"
NAMESPACE = "gdpr"
KUBE_VERSION = "1.30.0"
SERVICEMONITOR_API = "monitoring.coreos.com/v1/ServiceMonitor"
PROMETHEUSRULE_API = "monitoring.coreos.com/v1/PrometheusRule"

# An Ed25519 public key; only its shape matters to the chart.
JWKS = json.dumps({"keys": [{
    "kty": "OKP", "crv": "Ed25519", "alg": "EdDSA", "use": "sig", "kid": "test-1",
    "x": "Mn6NdHRcNN6YAkzGSuDuBXx0FsLyLcsEDJeWFUtD5a8",
}]})
PG_URL = "postgres://intake:s3cr3t-pw@pg.db.svc:5432/intake"

# Minimal values the chart renders with: SQLite defaults plus a JWKS.
BASE = {"auth": {"jwks": JWKS}}
POSTGRES = {"database": {"type": "postgres", "url": PG_URL}, "auth": {"jwks": JWKS}}


def helm_bin() -> str:
    env = os.environ.get("HELM_BIN")
    if env:
        return env
    local = REPO / ".ci" / ".tools" / "bin" / "helm"
    if local.exists():
        return str(local)
    found = shutil.which("helm")
    if found:
        return found
    raise RuntimeError("helm not found: set HELM_BIN or run .ci/helm-check.sh")


def merge(*parts: dict) -> dict:
    """Deep-merge dicts left to right (later wins), like helm -f a -f b."""
    out: dict = {}
    for part in parts:
        for key, value in part.items():
            if isinstance(value, dict) and isinstance(out.get(key), dict):
                out[key] = merge(out[key], value)
            else:
                out[key] = copy.deepcopy(value)
    return out


@dataclass
class Result:
    returncode: int
    stdout: str
    stderr: str

    @property
    def docs(self) -> list[dict]:
        return [d for d in yaml.safe_load_all(self.stdout) if d]


@lru_cache(maxsize=None)
def _run(values_json: str, files: tuple[str, ...], extra: tuple[str, ...]) -> Result:
    with tempfile.NamedTemporaryFile("w", suffix=".yaml", delete=False) as fh:
        yaml.safe_dump(json.loads(values_json), fh)
        values_file = fh.name
    try:
        cmd = [helm_bin(), "template", RELEASE, str(CHART), "--namespace", NAMESPACE,
               "--kube-version", KUBE_VERSION]
        for f in files:
            cmd += ["-f", f]
        cmd += ["-f", values_file, *extra]
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=60)
        return Result(proc.returncode, proc.stdout, proc.stderr)
    finally:
        os.unlink(values_file)


def run_helm(values: dict | None = None, files: list[Path] | tuple = (), extra: list[str] | tuple = ()) -> Result:
    return _run(json.dumps(values or {}, sort_keys=True), tuple(str(f) for f in files), tuple(extra))


def notes(values: dict | None = None) -> str:
    """NOTES.txt as helm prints it after an install (client-side dry run:
    helm template does not render NOTES)."""
    with tempfile.NamedTemporaryFile("w", suffix=".yaml", delete=False) as fh:
        yaml.safe_dump(values or {}, fh)
        values_file = fh.name
    try:
        proc = subprocess.run([helm_bin(), "install", RELEASE, str(CHART), "--dry-run=client",
                               "--namespace", NAMESPACE, "-f", values_file],
                              capture_output=True, text=True, timeout=60)
    finally:
        os.unlink(values_file)
    if proc.returncode != 0:
        pytest.fail(f"helm install --dry-run failed:\n{proc.stderr}")
    assert "NOTES:" in proc.stdout
    return proc.stdout.split("NOTES:", 1)[1]


def render(values: dict | None = None, files=(), extra=()) -> "Manifests":
    result = run_helm(values, files, extra)
    if result.returncode != 0:
        pytest.fail(f"helm template failed ({result.returncode}):\n{result.stderr}")
    return Manifests(result.docs)


def ci_extra_args(path: Path) -> list[str]:
    """Extra helm template flags a CI values file asks for in a header line
    '# helm-template-args: ...' (read the same way by .ci/helm-check.sh)."""
    for line in path.read_text().splitlines():
        if line.startswith("# helm-template-args:"):
            return line.split(":", 1)[1].split()
    return []


class Manifests:
    def __init__(self, docs: list[dict]):
        self.docs = docs

    def of_kind(self, kind: str) -> list[dict]:
        return [d for d in self.docs if d["kind"] == kind]

    def kinds(self) -> list[str]:
        return [d["kind"] for d in self.docs]

    def one(self, kind: str, name: str | None = None) -> dict:
        found = [d for d in self.of_kind(kind) if name is None or d["metadata"]["name"] == name]
        assert len(found) == 1, f"expected one {kind} {name or ''}, got {[d['metadata']['name'] for d in found]}"
        return found[0]

    def deployment(self) -> dict:
        return self.one("Deployment")

    def job(self) -> dict:
        return self.one("Job")

    def container(self, kind: str = "Deployment") -> dict:
        return self.one(kind)["spec"]["template"]["spec"]["containers"][0]

    def env(self, kind: str = "Deployment") -> dict[str, dict]:
        return {e["name"]: e for e in self.container(kind).get("env", [])}

    def env_value(self, name: str, kind: str = "Deployment") -> str | None:
        entry = self.env(kind).get(name)
        return None if entry is None else entry.get("value")
