#!/usr/bin/env bash
# Fetch the Unitree G1 assets the genesis family builds its model from (kinitro_dagster/sim/g1_model.py):
# holosoma's wheel from PyPI, pinned by version and sha256, without its dependencies; only its G1 folder
# (Unitree's meshes and 29-joint body) is kept. Runs at install or image build time, never per episode.
#   sim_images/genesis/fetch-g1-assets.sh [DEST]   (default: $KINITRO_G1_ASSETS_DIR or ~/.cache/kinitro/g1)
set -euo pipefail
VERSION=0.0.3
SHA256=1c007c27dbf130c04533af6052649d88da32eaa9b54e69c6d39009e979a2312f
DEST=${1:-${KINITRO_G1_ASSETS_DIR:-$HOME/.cache/kinitro/g1}}
if [[ -f "$DEST/g1_29dof.xml" && -d "$DEST/meshes" ]]; then
  echo "G1 assets already in $DEST"; exit 0
fi
PIP=${PIP:-$(command -v pip3 || command -v pip || echo "python3 -m pip")}
work=$(mktemp -d); trap 'rm -rf "$work"' EXIT
$PIP download --quiet --no-deps --only-binary=:all: --dest "$work" "holosoma==$VERSION"
wheel=$(ls "$work"/holosoma-"$VERSION"-*.whl)
echo "$SHA256  $wheel" | sha256sum --check --quiet || { echo "holosoma $VERSION: sha256 mismatch" >&2; exit 1; }
python3 - "$wheel" "$work/out" <<'PY'
import sys, zipfile
prefix = "holosoma/data/robots/g1/"
with zipfile.ZipFile(sys.argv[1]) as wheel:
    for name in wheel.namelist():
        rest = name[len(prefix):]
        if name.startswith(prefix) and (rest == "g1_29dof.xml" or (rest.startswith("meshes/") and rest.endswith(".STL"))):
            wheel.extract(name, sys.argv[2])
PY
mkdir -p "$(dirname "$DEST")"
rm -rf "$DEST.partial" && mv "$work/out/holosoma/data/robots/g1" "$DEST.partial" && rm -rf "$DEST" && mv "$DEST.partial" "$DEST"
echo "G1 assets in $DEST ($(ls "$DEST/meshes" | wc -l) meshes)"
