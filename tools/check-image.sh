#!/usr/bin/env bash
# `make image-check`: builds the image twice from this commit, the second time without any cache, and checks that
# both installed exactly the same distributions (the lock at work) and carry the OCI labels of this commit.
#
#   IMAGE_TOOL=docker|podman|buildah tools/check-image.sh      (IMAGE_TOOL may carry options:
#   IMAGE_TOOL="buildah --storage-driver vfs" where overlay mounts are not allowed)
#
# buildah (chroot isolation, vfs storage) is what builds where no container engine runs, as on the machine the
# results in README.md came from; docker and podman run the same steps.
set -euo pipefail
cd "$(dirname "$0")/.."
read -r -a tool <<< "${IMAGE_TOOL:-docker}"  # the command and its options
kind=$(basename "${tool[0]}")
revision=$(git rev-parse HEAD)
version=$(sed -n 's/^version = "\(.*\)"/\1/p' pyproject.toml)
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
git archive HEAD | tar -x -C "$work/"  # what is committed, nothing else

build() {  # tag, extra flags
    local tag=$1; shift
    local verb=build
    [ "$kind" = buildah ] && verb=bud
    "${tool[@]}" "$verb" "$@" -t "$tag" --build-arg VERSION="$version" --build-arg REVISION="$revision" "$work" >/dev/null
}

installed() {  # tag -> name==version of every distribution in the image, sorted
    local probe='import importlib.metadata as m; print("\n".join(sorted(d.metadata["Name"] + "==" + d.version for d in m.distributions())))'
    if [ "$kind" = buildah ]; then
        local c; c=$("${tool[@]}" from -q "$1")
        "${tool[@]}" run "$c" -- python -c "$probe"
        "${tool[@]}" rm "$c" >/dev/null
    else
        "${tool[@]}" run --rm --entrypoint python "$1" -c "$probe"
    fi
}

labels() {  # tag -> the org.opencontainers.image.* labels, one per line
    "${tool[@]}" inspect "$1" | python3 -c '
import json, sys
data = json.load(sys.stdin)
data = data[0] if isinstance(data, list) else data
config = data.get("OCIv1", {}).get("config") or data.get("Config") or {}
for key, value in sorted((config.get("Labels") or {}).items()):
    if key.startswith("org.opencontainers.image."):
        print(f"{key}={value}")'
}

started=$(date +%s)
build logcanary:check-1
build logcanary:check-2 --no-cache
echo "two builds in $(( $(date +%s) - started )) s (the second without cache)"
installed logcanary:check-1 > "$work/first.txt"
installed logcanary:check-2 > "$work/second.txt"
if ! diff -u "$work/first.txt" "$work/second.txt"; then
    echo "the two builds installed different distributions" >&2; exit 1
fi
echo "same $(wc -l < "$work/first.txt") distributions installed by both builds"
labels logcanary:check-2 | tee "$work/labels.txt"
for label in source revision version licenses; do
    grep -q "^org.opencontainers.image.$label=" "$work/labels.txt" || { echo "label $label missing" >&2; exit 1; }
done
grep -qx "org.opencontainers.image.revision=$revision" "$work/labels.txt" || { echo "revision label is not $revision" >&2; exit 1; }
echo "image check passed"
