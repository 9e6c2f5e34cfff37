#!/usr/bin/env bash
# Validates the deployment files offline (no cluster needed):
#   - renders deploy/k8s/overlays/{dev,prod} with `kubectl kustomize`;
#   - validates every rendered object against the Kubernetes OpenAPI schemas shipped by the
#     PyPI package kubernetes-validate (strict: unknown fields are errors), for Kubernetes
#     $KUBERNETES_VERSION (default 1.30.0);
#   - checks that skaffold.yaml is well-formed YAML with the fields skaffold needs.
# Exits non-zero with a message saying what failed at the first failure.
#
#   scripts/validate-deploy.sh            (from any directory)
set -euo pipefail
cd "$(dirname "$0")/.."

KUBERNETES_VERSION=${KUBERNETES_VERSION:-1.30.0}
OVERLAYS=(dev prod)

say() { printf '[validate-deploy] %s\n' "$*"; }
fail() { printf '[validate-deploy] FAILED: %s\n' "$*" >&2; exit 1; }

command -v kubectl >/dev/null || fail "kubectl is not installed (it renders the Kustomize overlays)"
command -v python3 >/dev/null || fail "python3 is not installed (kubernetes-validate needs it)"

if ! python3 -c 'import kubernetes_validate' 2>/dev/null; then
    say "installing kubernetes-validate (PyPI) for this user"
    # A user install; in a virtualenv, a plain one; on a distribution's Python that refuses
    # both (PEP 668), the user install it allows with --break-system-packages.
    python3 -m pip install --quiet --user 'kubernetes-validate>=1.30' 2>/dev/null \
        || python3 -m pip install --quiet 'kubernetes-validate>=1.30' 2>/dev/null \
        || python3 -m pip install --quiet --user --break-system-packages 'kubernetes-validate>=1.30' \
        || fail "could not install kubernetes-validate (python3 -m pip install kubernetes-validate)"
    python3 -c 'import kubernetes_validate' 2>/dev/null \
        || fail "kubernetes-validate was installed but python3 cannot import it"
fi

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

for overlay in "${OVERLAYS[@]}"; do
    dir=deploy/k8s/overlays/$overlay
    out=$work/$overlay.yaml
    kubectl kustomize "$dir" >"$out" 2>"$work/kustomize.err" \
        || fail "kubectl kustomize $dir: $(cat "$work/kustomize.err")"
    count=$(grep -c '^kind: ' "$out" || true)
    [ "$count" -gt 0 ] || fail "kubectl kustomize $dir rendered no objects"
    # kubernetes-validate only warns about kinds it has no schema for (a typo in apiVersion or
    # kind); treat warnings as failures too.
    if ! python3 -m kubernetes_validate --strict --quiet -k "$KUBERNETES_VERSION" "$out" \
            >"$work/validate.out" 2>&1 \
        || grep -qE '^(ERROR|WARN|FATAL)' "$work/validate.out"; then
        sed "s|$out|$dir|g" "$work/validate.out" >&2
        fail "$dir does not validate against the Kubernetes $KUBERNETES_VERSION schemas"
    fi
    say "ok: $dir ($count objects valid for Kubernetes $KUBERNETES_VERSION, strict)"
done

python3 - skaffold.yaml <<'PY' || fail "skaffold.yaml is not valid"
import os
import sys

import yaml

path = sys.argv[1]
try:
    with open(path) as f:
        docs = [d for d in yaml.safe_load_all(f) if d is not None]
except yaml.YAMLError as e:
    sys.exit(f"{path}: not well-formed YAML: {e}")
problems = []
for doc in docs:
    if not isinstance(doc, dict):
        problems.append("a document is not a mapping")
        continue
    if not str(doc.get("apiVersion", "")).startswith("skaffold/v"):
        problems.append(f"apiVersion {doc.get('apiVersion')!r} is not skaffold/v...")
    if doc.get("kind") != "Config":
        problems.append(f"kind {doc.get('kind')!r} is not Config")
    sections = [doc] + [p for p in doc.get("profiles", []) or []]
    for section in sections:
        paths = (((section.get("manifests") or {}).get("kustomize") or {}).get("paths")) or []
        for p in paths:
            if not os.path.isfile(os.path.join(p, "kustomization.yaml")):
                problems.append(f"kustomize path {p} has no kustomization.yaml")
    for artifact in ((doc.get("build") or {}).get("artifacts")) or []:
        dockerfile = ((artifact.get("docker") or {}).get("dockerfile")) or "Dockerfile"
        if not os.path.isfile(os.path.join(artifact.get("context", "."), dockerfile)):
            problems.append(f"artifact {artifact.get('image')}: {dockerfile} does not exist")
if not docs:
    problems.append("no document")
if problems:
    sys.exit(f"{path}: " + "; ".join(problems))
PY
say "ok: skaffold.yaml"
