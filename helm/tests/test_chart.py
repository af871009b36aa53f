"""Acceptance tests of the gdpr-intake chart: each renders the chart with
helm template and asserts on the manifests."""

from __future__ import annotations

import base64
import json

import pytest
import yaml

from chartlib import (BASE, CHART, CI_VALUES, FULLNAME, JWKS, PG_URL, POSTGRES,
                      PROMETHEUSRULE_API, RELEASE, SERVICEMONITOR_API, ci_extra_args, merge,
                      notes, render, run_helm)

GRPC_PORT = 50051
READINESS_SERVICE = "gdpr.intake.v1.DataSubjectRequestService"
CI = {p.name.split("-")[0]: p for p in CI_VALUES}


def ci(num: str):
    path = CI[num]
    return render(files=[path], extra=ci_extra_args(path))


def workloads(manifests):
    """(kind, pod spec) of every pod-creating resource."""
    return [(d["kind"], d["spec"]["template"]["spec"]) for d in manifests.docs
            if d["kind"] in ("Deployment", "Job")]


# --------------------------------------------------------------- security --

@pytest.mark.parametrize("values", [BASE, merge(POSTGRES, {"migrations": {"mode": "job"}})],
                         ids=["sqlite", "postgres-job"])
def test_every_pod_is_hardened(values):
    m = render(values)
    found = workloads(m)
    assert {k for k, _ in found} >= {"Deployment"}
    if values is not BASE:
        assert {k for k, _ in found} == {"Deployment", "Job"}
    for kind, pod in found:
        psc = pod["securityContext"]
        assert psc["runAsNonRoot"] is True, kind
        assert psc["runAsUser"] != 0, kind
        assert psc["seccompProfile"]["type"] == "RuntimeDefault", kind
        assert pod["automountServiceAccountToken"] is False, kind
        for c in pod["containers"]:
            sc = c["securityContext"]
            assert sc["runAsNonRoot"] is True, kind
            assert sc["readOnlyRootFilesystem"] is True, kind
            assert sc["allowPrivilegeEscalation"] is False, kind
            assert sc["capabilities"]["drop"] == ["ALL"], kind
            assert "add" not in sc["capabilities"], kind
            assert sc.get("privileged", False) is False, kind
            assert sc["seccompProfile"]["type"] == "RuntimeDefault", kind
        # The only writable paths: /tmp and the data dir, both volumes.
        mounts = {vm["mountPath"]: vm["name"] for vm in pod["containers"][0]["volumeMounts"]}
        volumes = {v["name"]: v for v in pod["volumes"]}
        assert "emptyDir" in volumes[mounts["/tmp"]], kind
        assert mounts["/var/lib/gdpr-intake"] in volumes, kind


def test_service_accounts_mount_no_token():
    m = render(merge(POSTGRES, {"migrations": {"mode": "job"}}))
    sas = m.of_kind("ServiceAccount")
    assert len(sas) == 2
    assert all(sa["automountServiceAccountToken"] is False for sa in sas)
    assert m.deployment()["spec"]["template"]["spec"]["serviceAccountName"] == FULLNAME


# ----------------------------------------------------------------- probes --

def test_grpc_probes():
    c = render(BASE).container()
    assert c["ports"][0] == {"name": "grpc", "containerPort": GRPC_PORT, "protocol": "TCP"}
    for probe in ("startupProbe", "livenessProbe"):
        assert c[probe]["grpc"] == {"port": GRPC_PORT, "service": ""}, probe
    assert c["readinessProbe"]["grpc"] == {"port": GRPC_PORT, "service": READINESS_SERVICE}
    for probe in ("startupProbe", "livenessProbe", "readinessProbe"):
        assert set(c[probe]) & {"exec", "httpGet", "tcpSocket"} == set(), probe


def test_port_change_moves_listen_address_and_probes():
    m = render(merge(BASE, {"server": {"port": 6000}}))
    c = m.container()
    assert m.env_value("GDPR_INTAKE_LISTEN") == "0.0.0.0:6000"
    assert c["ports"][0]["containerPort"] == 6000
    assert {c[p]["grpc"]["port"] for p in ("startupProbe", "livenessProbe", "readinessProbe")} == {6000}
    svc = m.one("Service")["spec"]["ports"][0]
    assert svc["targetPort"] == "grpc" and svc["port"] == GRPC_PORT


def test_listens_on_all_interfaces():
    m = render(BASE)
    assert m.env_value("GDPR_INTAKE_LISTEN") == f"0.0.0.0:{GRPC_PORT}"
    assert m.container()["args"] == ["serve"]


# --------------------------------------------------------------- shutdown --

@pytest.mark.parametrize("server", [{}, {"drainTimeoutSeconds": 60, "preStopSleepSeconds": 15},
                                    {"drainTimeoutSeconds": 0, "preStopSleepSeconds": 1,
                                     "terminationGraceExtraSeconds": 1}],
                         ids=["defaults", "long-drain", "minimal"])
def test_termination_grace_exceeds_drain_plus_prestop(server):
    m = render(merge(BASE, {"server": server}))
    pod = m.deployment()["spec"]["template"]["spec"]
    c = m.container()
    pre_stop = c["lifecycle"]["preStop"]
    assert list(pre_stop) == ["sleep"], "preStop must use the sleep action, the image has no shell"
    sleep = pre_stop["sleep"]["seconds"]
    drain_env = m.env_value("GDPR_INTAKE_DRAIN_TIMEOUT")
    assert drain_env.endswith("s")
    drain = int(drain_env[:-1])
    assert drain == server.get("drainTimeoutSeconds", 20)
    assert sleep == server.get("preStopSleepSeconds", 5)
    assert pod["terminationGracePeriodSeconds"] > drain + sleep


# ----------------------------------------------------------------- config --

def test_configuration_env():
    m = render(merge(BASE, {"auth": {"issuer": "https://id.example/", "audience": "intake-api"},
                            "server": {"logFormat": "text", "logLevel": "debug", "slaCheckInterval": "5m"}}))
    env = {k: v.get("value") for k, v in m.env().items()}
    assert env["GDPR_INTAKE_DATA_DIR"] == "/var/lib/gdpr-intake"
    assert env["GDPR_INTAKE_LOG_FORMAT"] == "text"
    assert env["RUST_LOG"] == "debug"
    assert env["GDPR_INTAKE_JWT_ISSUER"] == "https://id.example/"
    assert env["GDPR_INTAKE_JWT_AUDIENCE"] == "intake-api"
    assert env["GDPR_INTAKE_SLA_CHECK_INTERVAL"] == "5m"
    assert env["GDPR_INTAKE_JWKS_FILE"] == "/etc/gdpr-intake/secrets/jwks.json"
    assert "DATABASE_URL" not in env  # SQLite
    assert "GDPR_INTAKE_METRICS_LISTEN" not in env
    assert "OTEL_EXPORTER_OTLP_ENDPOINT" not in env
    assert "GDPR_INTAKE_RETENTION" not in env  # off unless set
    assert render(BASE).env_value("GDPR_INTAKE_LOG_FORMAT") == "json"


def test_retention_is_passed_when_set():
    m = render(merge(BASE, {"server": {"retention": "1095d"}}))
    assert m.env_value("GDPR_INTAKE_RETENTION") == "1095d"


def test_no_configmap_carries_configuration():
    for values in (BASE, POSTGRES):
        assert render(values).of_kind("ConfigMap") == []


def test_otel_variables():
    m = render(merge(BASE, {"otel": {"endpoint": "http://collector.obs:4317", "serviceName": "intake",
                                     "resourceAttributes": {"deployment.environment": "prod"},
                                     "tracesSampler": "traceidratio", "tracesSamplerArg": "0.25",
                                     "traceLevel": "debug"}}))
    env = {k: v.get("value") for k, v in m.env().items()}
    assert env["OTEL_EXPORTER_OTLP_ENDPOINT"] == "http://collector.obs:4317"
    assert env["OTEL_SERVICE_NAME"] == "intake"
    assert env["OTEL_TRACES_SAMPLER"] == "traceidratio"
    assert env["OTEL_TRACES_SAMPLER_ARG"] == "0.25"
    assert env["GDPR_INTAKE_TRACE_LEVEL"] == "debug"
    attrs = dict(kv.split("=", 1) for kv in env["OTEL_RESOURCE_ATTRIBUTES"].split(","))
    assert attrs["deployment.environment"] == "prod"
    assert attrs["k8s.pod.name"] == "$(GDPR_INTAKE_POD_NAME)"
    # $(VAR) references only work for variables defined earlier in the list.
    names = list(m.env())
    assert names.index("GDPR_INTAKE_POD_NAME") < names.index("OTEL_RESOURCE_ATTRIBUTES")
    assert render(BASE).env_value("OTEL_SERVICE_NAME") == "gdpr-intake"


def test_metrics_port_only_when_enabled():
    off = render(BASE)
    assert [p["name"] for p in off.one("Service")["spec"]["ports"]] == ["grpc"]
    on = render(merge(BASE, {"metrics": {"enabled": True}}))
    ports = {p["name"]: p for p in on.one("Service")["spec"]["ports"]}
    assert ports["metrics"]["port"] == 9464
    assert on.env_value("GDPR_INTAKE_METRICS_LISTEN") == "0.0.0.0:9464"
    assert {"name": "metrics", "containerPort": 9464, "protocol": "TCP"} in on.container()["ports"]


def test_service_grpc_port():
    svc = render(BASE).one("Service")
    port = svc["spec"]["ports"][0]
    assert port["name"] == "grpc"
    assert port["appProtocol"] == "grpc"
    assert port["port"] == GRPC_PORT
    assert svc["spec"]["selector"]["app.kubernetes.io/component"] == "server"


# ---------------------------------------------------------------- secrets --

def _secret_data(secret: dict) -> dict[str, str]:
    return {k: base64.b64decode(v).decode() for k, v in secret.get("data", {}).items()}


def test_database_url_comes_from_secret_key_ref():
    m = render(merge(POSTGRES, {"migrations": {"mode": "startup"}}))
    entry = m.env()["DATABASE_URL"]
    assert "value" not in entry
    assert entry["valueFrom"] == {"secretKeyRef": {"name": FULLNAME, "key": "database-url"}}
    secret = m.one("Secret", FULLNAME)
    assert _secret_data(secret)["database-url"] == PG_URL
    # The URL (with its password) appears in no other resource, in any form.
    for doc in m.docs:
        if doc["kind"] == "Secret":
            continue
        text = str(doc)
        assert PG_URL not in text and "s3cr3t-pw" not in text, doc["kind"]
        assert base64.b64encode(PG_URL.encode()).decode() not in text, doc["kind"]
    assert m.of_kind("ConfigMap") == []


def test_jwks_is_a_file_from_the_secret():
    m = render(BASE)
    assert _secret_data(m.one("Secret", FULLNAME))["jwks.json"] == JWKS
    pod = m.deployment()["spec"]["template"]["spec"]
    volume = next(v for v in pod["volumes"] if v["name"] == "secrets")
    assert volume["secret"]["secretName"] == FULLNAME
    assert volume["secret"]["items"] == [{"key": "jwks.json", "path": "jwks.json"}]
    mount = next(vm for vm in m.container()["volumeMounts"] if vm["name"] == "secrets")
    assert mount["readOnly"] is True
    assert m.env_value("GDPR_INTAKE_JWKS_FILE") == f"{mount['mountPath']}/jwks.json"


def test_key_files_absent_unless_set():
    m = render(BASE)
    assert "GDPR_INTAKE_AUDIT_KEY_FILE" not in m.env()
    assert "GDPR_INTAKE_DATA_KEY_FILE" not in m.env()
    assert "GDPR_INTAKE_EVIDENCE_KEY_FILE" not in m.env()
    m = render(merge(BASE, {"encryption": {"auditKey": "audit-key-bytes", "dataKey": "data-key-bytes",
                                           "evidenceKey": "evidence-key-bytes"}}))
    data = _secret_data(m.one("Secret", FULLNAME))
    assert data["audit.key"] == "audit-key-bytes" and data["data.key"] == "data-key-bytes"
    assert data["evidence.key"] == "evidence-key-bytes"
    assert m.env_value("GDPR_INTAKE_AUDIT_KEY_FILE") == "/etc/gdpr-intake/secrets/audit.key"
    assert m.env_value("GDPR_INTAKE_DATA_KEY_FILE") == "/etc/gdpr-intake/secrets/data.key"
    assert m.env_value("GDPR_INTAKE_EVIDENCE_KEY_FILE") == "/etc/gdpr-intake/secrets/evidence.key"
    volume = next(v for v in m.deployment()["spec"]["template"]["spec"]["volumes"] if v["name"] == "secrets")
    assert {i["key"] for i in volume["secret"]["items"]} == {"jwks.json", "audit.key", "data.key", "evidence.key"}


def test_secret_change_rolls_the_pods():
    a = render(BASE).deployment()["spec"]["template"]["metadata"]["annotations"]["checksum/secret"]
    b = render(merge(BASE, {"encryption": {"auditKey": "k"}})).deployment()
    assert b["spec"]["template"]["metadata"]["annotations"]["checksum/secret"] != a


def test_existing_secret_is_honoured():
    m = ci("03")
    assert m.of_kind("Secret") == [], "no Secret may be rendered with existingSecret"
    env = m.env()
    assert env["DATABASE_URL"]["valueFrom"]["secretKeyRef"] == {"name": "gdpr-intake-credentials", "key": "pg-url"}
    volume = next(v for v in m.deployment()["spec"]["template"]["spec"]["volumes"] if v["name"] == "secrets")
    assert volume["secret"]["secretName"] == "gdpr-intake-credentials"
    assert volume["secret"]["items"] == [
        {"key": "caller-jwks", "path": "jwks.json"},
        {"key": "audit-hmac", "path": "audit.key"},
        {"key": "data-aead", "path": "data.key"},
        {"key": "evidence-ed25519", "path": "evidence.key"},
    ]
    assert {"GDPR_INTAKE_JWKS_FILE", "GDPR_INTAKE_AUDIT_KEY_FILE", "GDPR_INTAKE_DATA_KEY_FILE",
            "GDPR_INTAKE_EVIDENCE_KEY_FILE"} <= set(env)
    assert "checksum/secret" not in m.deployment()["spec"]["template"]["metadata"].get("annotations", {})
    assert m.deployment()["spec"]["template"]["spec"]["serviceAccountName"] == "gdpr-intake-runtime"
    assert m.of_kind("ServiceAccount") == []


def test_existing_secret_with_migration_job():
    m = render({"database": {"type": "postgres"}, "migrations": {"mode": "job"},
                "existingSecret": {"name": "creds", "keys": {"databaseUrl": "url", "jwks": "jwks"}}})
    assert m.of_kind("Secret") == []
    job_env = m.env("Job")
    assert job_env["DATABASE_URL"]["valueFrom"]["secretKeyRef"] == {"name": "creds", "key": "url"}


def test_jwks_required_unless_dev_keys():
    result = run_helm({})
    assert result.returncode != 0
    assert "JWKS is required" in result.stderr
    m = render({"auth": {"devKeys": True}})
    assert "GDPR_INTAKE_JWKS_FILE" not in m.env()
    assert m.of_kind("Secret") == []
    # An existing Secret without a JWKS key also needs devKeys.
    no_jwks = {"existingSecret": {"name": "creds", "keys": {"jwks": ""}}}
    assert "JWKS is required" in run_helm(no_jwks).stderr
    render(merge(no_jwks, {"auth": {"devKeys": True}}))


@pytest.mark.parametrize("jwks", ["not json", "[1, 2]", '{"kty": "OKP"}', '{"keys": "x"}'])
def test_malformed_jwks_is_refused(jwks):
    result = run_helm({"auth": {"jwks": jwks}})
    assert result.returncode != 0
    assert "auth.jwks must be a JSON object" in result.stderr


# ------------------------------------------------------------- migrations --

def _hook(doc: dict) -> tuple[set[str], int, set[str]]:
    ann = doc["metadata"].get("annotations", {})
    return (set(ann.get("helm.sh/hook", "").split(",")) - {""},
            int(ann.get("helm.sh/hook-weight", "0")),
            set(ann.get("helm.sh/hook-delete-policy", "").split(",")) - {""})


def test_migration_job_hook_ordering():
    m = ci("02")
    job = m.job()
    events, job_weight, policy = _hook(job)
    assert events == {"pre-install", "pre-upgrade"}
    assert "before-hook-creation" in policy and policy <= {"before-hook-creation", "hook-succeeded", "hook-failed"}
    pod = job["spec"]["template"]["spec"]
    assert pod["restartPolicy"] == "Never"
    assert pod["containers"][0]["args"] == ["migrate"]

    # What the Job needs exists before it: hook resources with lower weights.
    secret_ref = m.env("Job")["DATABASE_URL"]["valueFrom"]["secretKeyRef"]
    hook_secret = m.one("Secret", secret_ref["name"])
    hook_sa = m.one("ServiceAccount", pod["serviceAccountName"])
    for dep in (hook_secret, hook_sa):
        dep_events, dep_weight, dep_policy = _hook(dep)
        assert dep_events == events, dep["kind"]
        assert dep_weight < job_weight, dep["kind"]
        assert dep_policy, dep["kind"]
    assert secret_ref["key"] in hook_secret["data"]
    # The release's own Secret and ServiceAccount are not hooks.
    assert _hook(m.one("Secret", FULLNAME))[0] == set()
    assert _hook(m.one("ServiceAccount", FULLNAME))[0] == set()
    assert m.env_value("GDPR_INTAKE_MIGRATE_ON_START") == "false"


def test_job_pods_are_not_service_endpoints():
    m = ci("02")
    selector = m.one("Service")["spec"]["selector"]
    job_labels = m.job()["spec"]["template"]["metadata"]["labels"]
    assert not all(job_labels.get(k) == v for k, v in selector.items())
    dep_labels = m.deployment()["spec"]["template"]["metadata"]["labels"]
    assert all(dep_labels.get(k) == v for k, v in selector.items())


def test_startup_mode_has_no_job():
    m = render(merge(POSTGRES, {"migrations": {"mode": "startup"}}))
    assert m.of_kind("Job") == []
    assert not any(_hook(d)[0] for d in m.docs)
    assert m.env_value("GDPR_INTAKE_MIGRATE_ON_START") == "true"


def test_sqlite_forces_startup_migrations():
    m = render(merge(BASE, {"migrations": {"mode": "job"}}))
    assert m.of_kind("Job") == []
    assert m.env_value("GDPR_INTAKE_MIGRATE_ON_START") == "true"


# ---------------------------------------------------------------- storage --

def _data_volume(m) -> dict:
    return next(v for v in m.deployment()["spec"]["template"]["spec"]["volumes"] if v["name"] == "data")


def test_sqlite_data_dir_on_chart_pvc():
    m = render(BASE)
    pvc = m.one("PersistentVolumeClaim")
    assert _data_volume(m)["persistentVolumeClaim"]["claimName"] == pvc["metadata"]["name"]
    assert pvc["spec"]["resources"]["requests"]["storage"] == "1Gi"
    assert pvc["metadata"]["annotations"]["helm.sh/resource-policy"] == "keep"
    dep = m.deployment()
    assert dep["spec"]["strategy"]["type"] == "Recreate"
    assert dep["spec"]["replicas"] == 1


def test_sqlite_without_persistence_uses_emptydir():
    m = render(merge(BASE, {"persistence": {"enabled": False}}))
    assert m.of_kind("PersistentVolumeClaim") == []
    assert "emptyDir" in _data_volume(m)


def test_existing_claim():
    m = render(merge(BASE, {"persistence": {"existingClaim": "my-claim", "storageClass": "-"}}))
    assert m.of_kind("PersistentVolumeClaim") == []
    assert _data_volume(m)["persistentVolumeClaim"]["claimName"] == "my-claim"


def test_postgres_data_dir_is_emptydir():
    m = render(POSTGRES)
    assert m.of_kind("PersistentVolumeClaim") == []
    assert "emptyDir" in _data_volume(m)
    assert m.deployment()["spec"]["strategy"]["type"] == "RollingUpdate"


# ----------------------------------------------------------------- labels --

RECOMMENDED = ("app.kubernetes.io/name", "app.kubernetes.io/instance", "app.kubernetes.io/version",
               "app.kubernetes.io/component", "app.kubernetes.io/part-of", "app.kubernetes.io/managed-by",
               "helm.sh/chart")


@pytest.mark.parametrize("num", sorted(CI))
def test_recommended_labels_everywhere(num):
    m = ci(num)
    for doc in m.docs:
        labels = doc["metadata"]["labels"]
        for key in RECOMMENDED:
            assert labels.get(key), f"{doc['kind']} lacks {key}"
        assert labels["app.kubernetes.io/name"] == "gdpr-intake"
        assert labels["app.kubernetes.io/instance"] == RELEASE
        assert labels["app.kubernetes.io/version"] == "0.1.0"
        assert labels["app.kubernetes.io/managed-by"] == "Helm"
        assert labels["helm.sh/chart"] == "gdpr-intake-0.1.0"
        template = doc.get("spec", {}).get("template")
        if template:
            for key in RECOMMENDED:
                assert template["metadata"]["labels"].get(key), f"{doc['kind']} pods lack {key}"


def test_common_labels_and_part_of():
    m = render(merge(BASE, {"commonLabels": {"team": "privacy"}, "partOf": "gdpr-platform"}))
    for doc in m.docs:
        assert doc["metadata"]["labels"]["team"] == "privacy"
        assert doc["metadata"]["labels"]["app.kubernetes.io/part-of"] == "gdpr-platform"


def test_long_names_stay_valid():
    import validate_manifests as vm
    values = merge(POSTGRES, {"fullnameOverride": "x" * 63, "migrations": {"mode": "job"}})
    m = render(values)
    assert len(m.docs) >= 6
    for doc in m.docs:
        assert len(doc["metadata"]["name"]) <= 63, doc["metadata"]["name"]
        assert vm.metadata_problems(doc) == [], doc["kind"]
    names = [(d["kind"], d["metadata"]["name"]) for d in m.docs]
    assert len(set(names)) == len(names), "names must stay unique after truncation"


def test_topology_spread_constraints():
    pod = render(BASE).deployment()["spec"]["template"]["spec"]
    tsc = pod["topologySpreadConstraints"]
    assert {c["topologyKey"] for c in tsc} == {"topology.kubernetes.io/zone", "kubernetes.io/hostname"}
    for c in tsc:
        assert c["labelSelector"]["matchLabels"]["app.kubernetes.io/component"] == "server"
        assert c["matchLabelKeys"] == ["pod-template-hash"]


def test_resources_set():
    assert render(BASE).container()["resources"]["requests"]["cpu"] == "100m"


# ------------------------------------------------------ optional resources --

def test_postgres_ha_set():
    m = ci("02")
    hpa = m.one("HorizontalPodAutoscaler")
    assert hpa["apiVersion"] == "autoscaling/v2"
    assert hpa["spec"]["scaleTargetRef"] == {"apiVersion": "apps/v1", "kind": "Deployment", "name": "t-gdpr-intake"}
    assert (hpa["spec"]["minReplicas"], hpa["spec"]["maxReplicas"]) == (3, 10)
    assert "replicas" not in m.deployment()["spec"], "the HPA owns the replica count"
    pdb = m.one("PodDisruptionBudget")
    assert pdb["spec"]["minAvailable"] == 2 and "maxUnavailable" not in pdb["spec"]
    assert pdb["spec"]["selector"]["matchLabels"] == m.one("Service")["spec"]["selector"]


def test_replicas_without_autoscaler():
    m = render(merge(POSTGRES, {"replicaCount": 3}))
    assert m.deployment()["spec"]["replicas"] == 3
    assert m.of_kind("HorizontalPodAutoscaler") == []


def test_autoscaler_bounds_are_checked():
    result = run_helm(merge(POSTGRES, {"autoscaling": {"enabled": True, "minReplicas": 5, "maxReplicas": 2}}))
    assert result.returncode != 0 and "minReplicas" in result.stderr


def test_network_policy_ports():
    np = ci("02").one("NetworkPolicy")
    spec = np["spec"]
    assert spec["policyTypes"] == ["Ingress", "Egress"]
    assert set(spec["podSelector"]["matchLabels"]) == {"app.kubernetes.io/name", "app.kubernetes.io/instance"}
    ingress_ports = [p["port"] for rule in spec["ingress"] for p in rule["ports"]]
    assert ingress_ports == ["grpc", "metrics"]
    egress = {(p["port"], p["protocol"]) for rule in spec["egress"] for p in rule["ports"]}
    assert egress == {(53, "UDP"), (53, "TCP"), (5432, "TCP"), (4317, "TCP")}
    for rule in spec["egress"] + spec["ingress"]:
        assert rule.get("to") or rule.get("from"), "the CI set restricts every peer"


def test_network_policy_minimal():
    np = render(merge(BASE, {"networkPolicy": {"enabled": True}})).one("NetworkPolicy")
    assert [p["port"] for r in np["spec"]["ingress"] for p in r["ports"]] == ["grpc"]
    assert {p["port"] for r in np["spec"]["egress"] for p in r["ports"]} == {53}


def test_service_monitor_needs_the_api():
    values = merge(BASE, {"metrics": {"enabled": True, "serviceMonitor": {"enabled": True}}})
    assert render(values).of_kind("ServiceMonitor") == []
    m = render(values, extra=["--api-versions", SERVICEMONITOR_API])
    sm = m.one("ServiceMonitor")
    assert sm["spec"]["endpoints"][0]["port"] == "metrics"
    assert sm["spec"]["endpoints"][0]["path"] == "/metrics"
    assert sm["spec"]["selector"]["matchLabels"] == m.one("Service")["spec"]["selector"]


def test_ci_set_4_renders_service_monitor_and_grpc_route():
    m = ci("04")
    sm = m.one("ServiceMonitor")
    assert sm["metadata"]["labels"]["release"] == "kube-prometheus-stack"
    route = m.one("GRPCRoute")
    assert route["apiVersion"] == "gateway.networking.k8s.io/v1"
    assert route["spec"]["parentRefs"][0]["name"] == "internal-gateway"
    rule = route["spec"]["rules"][0]
    assert rule["backendRefs"] == [{"name": FULLNAME, "port": GRPC_PORT}]
    assert rule["matches"][0]["method"]["service"] == READINESS_SERVICE


# ------------------------------------------------- dashboard and alerts --

METRICS = {"metrics": {"enabled": True}}
DASHBOARD = merge(BASE, METRICS, {"grafanaDashboard": {"enabled": True}})
RULE = merge(BASE, METRICS, {"prometheusRule": {"enabled": True}})


def test_dashboard_and_rules_are_off_by_default():
    m = render(merge(BASE, METRICS), extra=["--api-versions", PROMETHEUSRULE_API])
    assert m.of_kind("ConfigMap") == []
    assert m.of_kind("PrometheusRule") == []


def test_dashboard_configmap_holds_the_chart_dashboard_for_the_sidecar():
    cm = render(DASHBOARD).one("ConfigMap")
    assert cm["metadata"]["name"] == f"{FULLNAME}-dashboard"
    assert cm["metadata"]["labels"]["grafana_dashboard"] == "1"
    assert cm["metadata"]["labels"]["app.kubernetes.io/component"] == "monitoring"
    assert "namespace" not in cm["metadata"] and "annotations" not in cm["metadata"]
    assert list(cm["data"]) == ["gdpr-intake.json"]
    dashboard = json.loads(cm["data"]["gdpr-intake.json"])
    assert dashboard == json.loads((CHART / "dashboards" / "gdpr-intake.json").read_text())
    assert dashboard["uid"] == "gdpr-intake"
    variables = {v["name"]: v for v in dashboard["templating"]["list"]}
    assert variables["datasource"]["type"] == "datasource"
    assert variables["datasource"]["query"] == "prometheus"
    targets = [t for p in dashboard["panels"] for t in p.get("targets", [])]
    assert targets and all(t["datasource"]["uid"] == "${datasource}" for t in targets)


def test_dashboard_label_namespace_and_annotations_are_configurable():
    values = merge(DASHBOARD, {"grafanaDashboard": {
        "namespace": "monitoring", "label": "grafana.example/dashboard", "labelValue": "gdpr",
        "labels": {"team": "privacy"}, "annotations": {"grafana_folder": "GDPR"}}})
    cm = render(values).one("ConfigMap")
    assert cm["metadata"]["namespace"] == "monitoring"
    labels = cm["metadata"]["labels"]
    assert labels["grafana.example/dashboard"] == "gdpr" and "grafana_dashboard" not in labels
    assert labels["team"] == "privacy"
    assert cm["metadata"]["annotations"] == {"grafana_folder": "GDPR"}


def test_prometheus_rule_needs_the_api():
    assert render(RULE).of_kind("PrometheusRule") == []
    values = merge(RULE, {"prometheusRule": {"labels": {"release": "prometheus"}}})
    rule = render(values, extra=["--api-versions", PROMETHEUSRULE_API]).one("PrometheusRule")
    assert rule["apiVersion"] == "monitoring.coreos.com/v1"
    assert rule["metadata"]["name"] == FULLNAME
    assert rule["metadata"]["labels"]["release"] == "prometheus"


def test_prometheus_rule_groups_are_the_rules_file():
    rule = render(RULE, extra=["--api-versions", PROMETHEUSRULE_API]).one("PrometheusRule")
    groups = yaml.safe_load((CHART / "files" / "alerts.yaml").read_text())["groups"]
    assert rule["spec"]["groups"] == groups
    alerts = {r["alert"]: r for g in groups for r in g["rules"]}
    assert {"GdprIntakeSlaBreached", "GdprIntakeRequestsAtRisk", "GdprIntakeTasksPastSla",
            "GdprIntakeErrorRatioHigh", "GdprIntakeNotReady", "GdprIntakeNoWatchdogSweep"} <= set(alerts)
    for name, r in alerts.items():
        assert r["labels"]["severity"] in ("warning", "critical"), name
        assert r["annotations"]["summary"] and r["annotations"]["description"], name
    # Prometheus's own template syntax reaches the rule untouched by Helm.
    assert "{{ $labels.processor_id }}" in alerts["GdprIntakeTasksPastSla"]["annotations"]["summary"]


def test_ci_set_4_renders_dashboard_and_rule():
    m = ci("04")
    assert m.one("ConfigMap")["metadata"]["annotations"]["grafana_folder"] == "GDPR"
    assert m.one("PrometheusRule")["metadata"]["labels"]["release"] == "kube-prometheus-stack"


def test_prometheus_rule_schema_bites():
    import validate_manifests as vm
    rule = ci("04").one("PrometheusRule")
    schema = vm.CUSTOM_RESOURCES[("monitoring.coreos.com/v1", "PrometheusRule")]
    assert vm.validate_custom(rule, schema) == []
    broken = merge(rule, {})
    broken["spec"]["groups"][0]["rules"][0]["for"] = "ten minutes"
    broken["spec"]["groups"][0]["rules"][0]["exprs"] = "up"
    assert len(vm.validate_custom(broken, schema)) == 2


def test_custom_resources_pass_their_schemas_and_the_check_bites():
    import validate_manifests as vm
    m = ci("04")
    for doc in m.of_kind("ServiceMonitor") + m.of_kind("PrometheusRule") + m.of_kind("GRPCRoute"):
        schema = vm.CUSTOM_RESOURCES[(doc["apiVersion"], doc["kind"])]
        assert vm.validate_custom(doc, schema) == [], doc["kind"]
    broken = merge(m.one("GRPCRoute"), {})
    broken["spec"]["rules"][0]["backendRefs"][0]["port"] = "grpc"
    broken["spec"]["rulez"] = []
    problems = vm.validate_custom(broken, vm.CUSTOM_RESOURCES[("gateway.networking.k8s.io/v1", "GRPCRoute")])
    assert len(problems) == 2, problems


def test_core_validation_bites():
    import validate_manifests as vm
    dep = merge(render(BASE).deployment(), {})
    assert vm.validate_core(dep, "1.30.0") == []
    dep["spec"]["template"]["spec"]["containers"][0]["readinessProbe"]["grpc"]["port"] = "grpc"
    assert vm.validate_core(dep, "1.30.0")
    unknown = {"apiVersion": "example.com/v1", "kind": "Widget", "metadata": {"name": "w"}}
    assert "no schema" in vm.validate_core(unknown, "1.30.0")[0]


# ------------------------------------------------------------------ NOTES --

def test_notes_explain_port_forward_and_ghz():
    text = notes(BASE)
    assert "kubectl --namespace gdpr port-forward service/t-gdpr-intake 50051:50051" in text
    assert "ghz --insecure" in text
    assert "--proto proto/gdpr/intake/v1/data_subject_request_service.proto -i proto" in text
    assert "--call gdpr.intake.v1.DataSubjectRequestService.GetDataSubjectRequest" in text
    assert "Bearer $TOKEN" in text
    assert "WARNING" not in text


def test_notes_warn_about_dev_keys_and_missing_service_monitor_api():
    text = notes({"auth": {"devKeys": True}, "metrics": {"enabled": True, "serviceMonitor": {"enabled": True}}})
    assert "WARNING: auth.devKeys=true" in text
    assert "does not serve" in text and "ServiceMonitor" in text


def test_notes_say_when_the_prometheus_rule_was_not_created():
    text = notes({"auth": {"devKeys": True}, "metrics": {"enabled": True},
                  "prometheusRule": {"enabled": True}})
    assert "prometheusRule.enabled is true" in text and "PrometheusRule" in text
    assert "prometheusRule" not in notes({"auth": {"devKeys": True}, "metrics": {"enabled": True}})
