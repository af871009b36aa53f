#!/usr/bin/env python3
"""Validate rendered chart manifests.

Core Kubernetes kinds are checked with kubernetes-validate (strict mode:
unknown fields are errors) against every Kubernetes version given with -k.
Custom resources are checked against the JSON schemas in crd_schemas/
(ServiceMonitor, PrometheusRule, GRPCRoute). A kind that is neither is an
error, never a silent skip. Every object also gets name and label syntax
checks, which the OpenAPI schemas do not make.

Usage:
  validate_manifests.py -k 1.30.0 [-k 1.37.0 ...] FILE...      core kinds and custom resources
  validate_manifests.py --only core -k 1.30.0 FILE...           core kinds only
  validate_manifests.py --only custom --expect-kind GRPCRoute FILE...
With --only core the known custom resources are left to a --only custom
run; any other kind still fails. --expect-kind makes the run fail unless at
least one resource of that kind was validated, so a check cannot pass by
finding nothing.
Exit status: 0 when every resource passed, 1 otherwise.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path

import jsonschema
import yaml

HERE = Path(__file__).resolve().parent
CRD_SCHEMA_DIR = HERE / "crd_schemas"

# (apiVersion, kind) -> schema file in crd_schemas/
CUSTOM_RESOURCES = {
    ("monitoring.coreos.com/v1", "ServiceMonitor"): "servicemonitor.monitoring.coreos.com.v1.json",
    ("monitoring.coreos.com/v1", "PrometheusRule"): "prometheusrule.monitoring.coreos.com.v1.json",
    ("gateway.networking.k8s.io/v1", "GRPCRoute"): "grpcroute.gateway.networking.k8s.io.v1.json",
}

DNS1123_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
DNS1035_LABEL = re.compile(r"^[a-z]([-a-z0-9]*[a-z0-9])?$")
LABEL_NAME = re.compile(r"^([A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?)$")
LABEL_VALUE = re.compile(r"^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$")
# Kinds whose names must be DNS-1035 labels of at most 63 characters.
DNS_LABEL_KINDS = {"Service"}


def load_documents(path: Path) -> list[dict]:
    with path.open() as fh:
        return [doc for doc in yaml.safe_load_all(fh) if doc]


def metadata_problems(doc: dict) -> list[str]:
    """Name and label syntax, as the API server would check them."""
    problems = []
    meta = doc.get("metadata") or {}
    name = meta.get("name", "")
    if doc.get("kind") in DNS_LABEL_KINDS:
        if len(name) > 63 or not DNS1035_LABEL.match(name):
            problems.append(f"name {name!r} is not a DNS-1035 label of at most 63 characters")
    elif len(name) > 253 or not DNS1123_SUBDOMAIN.match(name):
        problems.append(f"name {name!r} is not a DNS-1123 subdomain")

    def check_labels(labels: dict | None, where: str) -> None:
        for key, value in (labels or {}).items():
            prefix, _, label_name = key.rpartition("/")
            if prefix and (len(prefix) > 253 or not DNS1123_SUBDOMAIN.match(prefix)):
                problems.append(f"{where} key {key!r}: bad prefix")
            if len(label_name) > 63 or not LABEL_NAME.match(label_name):
                problems.append(f"{where} key {key!r}: bad name")
            if not isinstance(value, str) or len(value) > 63 or not LABEL_VALUE.match(value):
                problems.append(f"{where} {key}={value!r}: bad value")

    check_labels(meta.get("labels"), "label")
    template_meta = ((doc.get("spec") or {}).get("template") or {}).get("metadata") or {}
    check_labels(template_meta.get("labels"), "pod label")
    return problems


def validate_custom(doc: dict, schema_file: str) -> list[str]:
    schema = json.loads((CRD_SCHEMA_DIR / schema_file).read_text())
    validator = jsonschema.Draft7Validator(schema)
    return [
        f"{'/'.join(str(p) for p in err.absolute_path) or '(root)'}: {err.message}"
        for err in sorted(validator.iter_errors(doc), key=lambda e: list(map(str, e.absolute_path)))
    ]


def validate_core(doc: dict, version: str) -> list[str]:
    import kubernetes_validate

    try:
        kubernetes_validate.validate(doc, version, strict=True)
    except kubernetes_validate.ValidationError as err:
        path = ".".join(str(p) for p in err.path) or "(root)"
        return [f"k8s {version}: {path}: {err.message}"]
    except kubernetes_validate.SchemaNotFoundError:
        return [f"k8s {version}: no schema for {doc.get('apiVersion')} {doc.get('kind')} "
                "(not a core kind, and no schema in helm/tests/crd_schemas)"]
    return []


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-k", "--kubernetes-version", action="append", default=[],
                        help="Kubernetes version to validate core kinds against (repeatable)")
    parser.add_argument("--only", choices=["core", "custom"],
                        help="validate only core kinds or only the known custom resources")
    parser.add_argument("--expect-kind", action="append", default=[],
                        help="fail unless a resource of this kind was validated (repeatable)")
    parser.add_argument("files", nargs="+", type=Path)
    args = parser.parse_args(argv)
    if args.only != "custom" and not args.kubernetes_version:
        parser.error("core kinds need at least one -k/--kubernetes-version")

    counts = {"core": 0, "custom": 0}
    seen_kinds: set[str] = set()
    failures: list[str] = []
    for path in args.files:
        docs = load_documents(path)
        if not docs:
            failures.append(f"{path}: no resources rendered")
        for doc in docs:
            ident = f"{path.name}: {doc.get('kind')}/{(doc.get('metadata') or {}).get('name')}"
            key = (doc.get("apiVersion"), doc.get("kind"))
            category = "custom" if key in CUSTOM_RESOURCES else "core"
            if args.only and args.only != category:
                continue
            problems = metadata_problems(doc)
            if category == "custom":
                problems += validate_custom(doc, CUSTOM_RESOURCES[key])
            else:
                for version in args.kubernetes_version:
                    problems += validate_core(doc, version)
            if problems:
                failures.extend(f"{ident}: {p}" for p in problems)
                print(f"FAIL  {ident}")
            else:
                print(f"ok    {ident} ({category})")
                counts[category] += 1
                seen_kinds.add(str(doc.get("kind")))

    for kind in args.expect_kind:
        if kind not in seen_kinds:
            failures.append(f"no valid {kind} was found in {', '.join(map(str, args.files))}")

    if args.only != "custom":
        versions = ", ".join(args.kubernetes_version)
        print(f"core resources valid against Kubernetes {versions} "
              f"(kubernetes-validate, strict): {counts['core']}")
    if args.only != "core":
        print(f"custom resources valid against helm/tests/crd_schemas: {counts['custom']}")
    if failures:
        print(f"{len(failures)} problem(s):")
        for failure in failures:
            print(f"  {failure}")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
