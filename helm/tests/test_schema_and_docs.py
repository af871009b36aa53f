"""values.schema.json must refuse nonsense (helm template exits non-zero with
a schema error), accept every CI values set, and agree with values.yaml and
the README's values table."""

from __future__ import annotations

import json
import re

import pytest
import yaml

from chartlib import BASE, CHART, CI_VALUES, JWKS, PG_URL, ci_extra_args, merge, run_helm

SCHEMA_ERROR = "values don't meet the specifications of the schema"

REJECTED = {
    # The five combinations the project issue names.
    "sqlite-with-3-replicas": {"database": {"type": "sqlite"}, "replicaCount": 3},
    "sqlite-with-autoscaler": {"database": {"type": "sqlite"}, "autoscaling": {"enabled": True}},
    "postgres-without-url-or-existing-secret": {"database": {"type": "postgres"}},
    "replicaCount-not-an-integer": {"replicaCount": "three"},
    "unknown-top-level-key": {"replicas": 2},
    # More nonsense the schema catches.
    "sqlite-with-database-url": {"database": {"type": "sqlite", "url": PG_URL}},
    "unknown-database-type": {"database": {"type": "mysql"}},
    "database-url-not-postgres": {"database": {"type": "postgres", "url": "mysql://x@y/z"}},
    "unknown-nested-key": {"database": {"typ": "postgres"}},
    "existing-secret-plus-inline-url": {"database": {"type": "postgres", "url": PG_URL},
                                        "existingSecret": {"name": "creds"}},
    "existing-secret-without-url-key": {"database": {"type": "postgres"},
                                        "existingSecret": {"name": "creds", "keys": {"databaseUrl": ""}}},
    "migrations-mode-unknown": {"migrations": {"mode": "never"}},
    "writable-root-filesystem": {"securityContext": {"readOnlyRootFilesystem": False}},
    "root-allowed": {"podSecurityContext": {"runAsNonRoot": False}},
    "privilege-escalation": {"securityContext": {"allowPrivilegeEscalation": True}},
    "capabilities-kept": {"securityContext": {"capabilities": {"drop": ["NET_RAW"]}}},
    "capabilities-added": {"securityContext": {"capabilities": {"add": ["NET_ADMIN"]}}},
    "uid-zero": {"securityContext": {"runAsUser": 0}},
    "unconfined-seccomp": {"podSecurityContext": {"seccompProfile": {"type": "Unconfined"}}},
    "service-monitor-without-metrics": {"metrics": {"serviceMonitor": {"enabled": True}}},
    "dashboard-without-metrics": {"grafanaDashboard": {"enabled": True}},
    "prometheus-rule-without-metrics": {"prometheusRule": {"enabled": True}},
    "dashboard-label-empty": {"metrics": {"enabled": True},
                              "grafanaDashboard": {"enabled": True, "label": ""}},
    "dashboard-namespace-invalid": {"metrics": {"enabled": True},
                                    "grafanaDashboard": {"enabled": True, "namespace": "Monitoring_NS"}},
    "grpc-route-without-parent": {"grpcRoute": {"enabled": True}},
    "log-format-unknown": {"server": {"logFormat": "xml"}},
    "trace-level-unknown": {"otel": {"traceLevel": "trace"}},
    "port-out-of-range": {"server": {"port": 70000}},
    "port-as-string": {"service": {"port": "50051"}},
    "prestop-zero": {"server": {"preStopSleepSeconds": 0}},
    "no-grace-margin": {"server": {"terminationGraceExtraSeconds": 0}},
    "drain-as-duration-string": {"server": {"drainTimeoutSeconds": "20s"}},
    "dev-keys-not-boolean": {"auth": {"devKeys": "yes"}},
    "retention-in-years": {"server": {"retention": "3y"}},
    "retention-zero": {"server": {"retention": "0d"}},
}


@pytest.mark.parametrize("values", REJECTED.values(), ids=REJECTED.keys())
def test_schema_rejects(values):
    result = run_helm(merge(BASE, values))
    assert result.returncode != 0, f"accepted: {values}"
    assert SCHEMA_ERROR in result.stderr, result.stderr


ACCEPTED = {
    "defaults-sqlite": {},
    "sqlite-one-replica": {"database": {"type": "sqlite"}, "replicaCount": 1},
    "postgres-3-replicas": {"database": {"type": "postgres", "url": PG_URL}, "replicaCount": 3},
    "postgres-autoscaler": {"database": {"type": "postgres", "url": PG_URL}, "autoscaling": {"enabled": True}},
    "postgres-existing-secret": {"database": {"type": "postgres"}, "auth": {"jwks": ""},
                                 "existingSecret": {"name": "creds"}},
    "sampler-arg-as-number": {"otel": {"tracesSamplerArg": 0.5}},
    "store-spans-traced": {"otel": {"traceLevel": "debug"}},
    "dashboard-and-rule": {"metrics": {"enabled": True}, "grafanaDashboard": {"enabled": True},
                           "prometheusRule": {"enabled": True, "labels": {"release": "prometheus"}}},
    "retention-three-years": {"server": {"retention": "1095d"}},
    "other-non-root-uid": {"podSecurityContext": {"runAsUser": 1000, "fsGroup": 1000},
                           "securityContext": {"runAsUser": 1000}},
}


@pytest.mark.parametrize("values", ACCEPTED.values(), ids=ACCEPTED.keys())
def test_schema_accepts_sensible_values(values):
    result = run_helm(merge(BASE, values))
    assert result.returncode == 0, result.stderr


def test_rejection_reasons_are_the_named_ones():
    assert "replicaCount" in run_helm(merge(BASE, REJECTED["sqlite-with-3-replicas"])).stderr
    assert "autoscaling/enabled" in run_helm(merge(BASE, REJECTED["sqlite-with-autoscaler"])).stderr
    assert "database/url" in run_helm(merge(BASE, REJECTED["postgres-without-url-or-existing-secret"])).stderr
    assert "want integer" in run_helm(merge(BASE, REJECTED["replicaCount-not-an-integer"])).stderr
    assert "'replicas' not allowed" in run_helm(merge(BASE, REJECTED["unknown-top-level-key"])).stderr


def test_set_string_type_errors_are_caught():
    """What a user typing --set replicaCount=three gets."""
    result = run_helm(BASE, extra=["--set", "replicaCount=three"])
    assert result.returncode != 0 and SCHEMA_ERROR in result.stderr


@pytest.mark.parametrize("path", CI_VALUES, ids=lambda p: p.name)
def test_ci_values_sets_render(path):
    result = run_helm(files=[path], extra=ci_extra_args(path))
    assert result.returncode == 0, result.stderr
    assert result.docs


def test_schema_is_draft07_and_closed():
    schema = json.loads((CHART / "values.schema.json").read_text())
    assert schema["$schema"] == "http://json-schema.org/draft-07/schema#"
    assert schema["additionalProperties"] is False


# ------------------------------------------------- values / schema / README --

def _leaves(obj, prefix=""):
    if isinstance(obj, dict) and obj:
        for key, value in obj.items():
            yield from _leaves(value, f"{prefix}.{key}" if prefix else key)
    else:
        yield prefix, obj


VALUES = yaml.safe_load((CHART / "values.yaml").read_text())
# Free-form objects documented as one row.
OPAQUE = {"resources", "migrations.job.resources"}


def _documented_path(path: str) -> str:
    for opaque in OPAQUE:
        if path == opaque or path.startswith(opaque + "."):
            return opaque
    return path


def _readme_rows() -> dict[str, tuple[str, str, str]]:
    rows = {}
    for line in (CHART / "README.md").read_text().splitlines():
        m = re.match(r"^\| `([^`]+)` \| ([^|]+) \| `(.*?)` \| (.+) \|$", line)
        if m:
            rows[m.group(1)] = (m.group(2).strip(), m.group(3), m.group(4).strip())
    return rows


def test_readme_documents_every_value_with_its_default():
    rows = _readme_rows()
    expected = {}
    for path, value in _leaves(VALUES):
        doc_path = _documented_path(path)
        if doc_path != path:
            node = VALUES
            for part in doc_path.split("."):
                node = node[part]
            value = node
        expected[doc_path] = value
    missing = sorted(set(expected) - set(rows))
    stale = sorted(set(rows) - set(expected))
    assert not missing, f"values without a README row: {missing}"
    assert not stale, f"README rows for values that do not exist: {stale}"
    for path, value in expected.items():
        assert json.loads(rows[path][1]) == value, f"README default of {path}"
        assert rows[path][2], f"README description of {path}"


TYPE_NAMES = {"string": str, "integer": int, "number": (int, float), "boolean": bool, "object": dict, "list": list}


def test_readme_types_match_defaults():
    for path, (type_name, default, _) in _readme_rows().items():
        value = json.loads(default)
        allowed = tuple(TYPE_NAMES[t.strip()] for t in type_name.split(" or "))
        allowed = tuple(t for group in allowed for t in (group if isinstance(group, tuple) else (group,)))
        assert isinstance(value, allowed), f"{path}: {type_name} vs {value!r}"


def test_schema_describes_every_value():
    schema = json.loads((CHART / "values.schema.json").read_text())

    def lookup(path: str):
        node = schema
        for part in path.split("."):
            if "$ref" in node:
                node = schema["definitions"][node["$ref"].rsplit("/", 1)[1]]
            props = node.get("properties", {})
            if part not in props:
                return None
            node = props[part]
        return node

    for path, _ in _leaves(VALUES):
        path = _documented_path(path)
        assert lookup(path) is not None, f"values.schema.json lacks {path}"


def test_jwks_fixture_is_a_jwks():
    assert json.loads(JWKS)["keys"][0]["kty"] == "OKP"
