#!/usr/bin/env bash
# Build the evaluator image (sim_images/evaluator/Dockerfile) from this checkout.
#
#   sim_images/evaluator/build.sh [TAG]          default TAG: kinitro/evaluator:v1
#
# BASE_IMAGE  default: kinitro/base:trixie if this docker host has it (sim_images/base/build-base.sh
#             makes it without a registry), else python:3.12-slim.
# APP_DIR     where the code goes in the image, default /opt/kinitro. Set it to the launching code
#             location's working directory when that runs outside the image (see the Dockerfile).
# DOCKERFILE_DIR  another image built on the same context (sim_images/procthor, sim_images/genesis).
# UV_EXPORT_EXTRAS  extras of pyproject.toml the image's requirements include (genesis: "genesis").
# The context is assembled in a temporary directory: the Dockerfile dir, install-app.sh (shared by
# both images), requirements.txt exported from uv.lock, the code under app/, and the machine's CA
# bundle as pip-ca.crt. Builds use the host's network (`--network host`), as pip and apt need it
# and no bridge may be set up.
set -euo pipefail
repo="$(cd "$(dirname "$0")/../.." && pwd)"
tag="${1:-kinitro/evaluator:v1}"
app_dir="${APP_DIR:-/opt/kinitro}"
dockerfile_dir="${DOCKERFILE_DIR:-$repo/sim_images/evaluator}"
if [[ -z "${BASE_IMAGE:-}" ]]; then
  if docker image inspect kinitro/base:trixie >/dev/null 2>&1; then BASE_IMAGE=kinitro/base:trixie
  else BASE_IMAGE=python:3.12-slim; fi
fi
# uv exports uv.lock for the image; `make install` puts it on PATH or in python3's modules.
if command -v uv >/dev/null; then uv=(uv)
elif python3 -m uv --version >/dev/null 2>&1; then uv=(python3 -m uv)
else echo "uv is missing: python3 -m pip install uv" >&2; exit 1; fi

context="$(mktemp -d /var/tmp/kinitro-evaluator.XXXXXX)"
trap 'rm -rf "$context"' EXIT
cp -r "$dockerfile_dir"/. "$context"/
cp "$repo/sim_images/evaluator/install-app.sh" "$context/"
extras=()
for extra in ${UV_EXPORT_EXTRAS:-}; do extras+=(--extra "$extra"); done
(cd "$repo" && "${uv[@]}" export --frozen --no-dev --no-hashes --no-emit-project --quiet "${extras[@]}") \
  >"$context/requirements.txt"
mkdir -p "$context/app"
for path in pyproject.toml uv.lock README.md kinitro_dagster weights_api examples deploy; do
  cp -r "$repo/$path" "$context/app/"
done
# The policy servers' base set: local-mode miner runtimes are resolved on top of it.
mkdir -p "$context/app/sim_images/miner-runner"
cp "$repo/sim_images/miner-runner/requirements.txt" "$context/app/sim_images/miner-runner/"
find "$context/app" -name __pycache__ -type d -prune -exec rm -rf {} +
for bundle in "${PIP_CERT:-}" "${REQUESTS_CA_BUNDLE:-}" "${SSL_CERT_FILE:-}" /etc/ssl/certs/ca-certificates.crt; do
  if [[ -n "$bundle" && -f "$bundle" ]]; then cp "$bundle" "$context/pip-ca.crt"; break; fi
done

echo "building $tag from $BASE_IMAGE (code at $app_dir)"
docker build --network host --build-arg "BASE_IMAGE=$BASE_IMAGE" --build-arg "APP_DIR=$app_dir" \
  -t "$tag" "$context"
