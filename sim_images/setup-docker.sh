#!/usr/bin/env bash
# Make docker eval mode runnable on this machine, each step skipped when already done:
#   1. Debian's docker.io, debootstrap and docker-compose (apt) if dockerd, debootstrap or
#      docker-compose is missing (tests/deploy validates deploy/docker-compose.yml with it);
#   2. dockerd running (started as root in the background, log /var/log/kinitro-dockerd.log);
#   3. the local base image kinitro/base:trixie (sim_images/base/build-base.sh, no registry needed);
#   4. the miner-runner image (`kinitro env build miner`; docker's layer cache makes a rebuild of
#      unchanged files take seconds, and a changed Dockerfile or requirement is picked up).
# Used by .ci/run and by the docker tests' session fixture. Needs root.
set -euo pipefail
cd "$(dirname "$0")/.."

kinitro="${KINITRO:-.venv/bin/kinitro}"
runner_image="${KINITRO_EXECUTOR_MINER_DEPLOYMENT_IMAGE:-kinitro/miner-runner:v1}"
dockerd_log="${DOCKERD_LOG:-/var/log/kinitro-dockerd.log}"

if ! command -v dockerd >/dev/null || ! command -v debootstrap >/dev/null || ! command -v docker-compose >/dev/null; then
  echo "installing docker.io, debootstrap and docker-compose"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq docker.io debootstrap docker-compose >/dev/null
fi

if ! docker info >/dev/null 2>&1; then
  echo "starting dockerd (log $dockerd_log)"
  # Its own session: the daemon outlives this script and whatever test process ran it.
  setsid nohup dockerd >>"$dockerd_log" 2>&1 </dev/null &
  for _ in $(seq 60); do docker info >/dev/null 2>&1 && break; sleep 1; done
  if ! docker info >/dev/null 2>&1; then
    tail -n 20 "$dockerd_log" >&2
    echo "dockerd did not come up within 60 s (log above, full log $dockerd_log)" >&2
    exit 1
  fi
fi

sim_images/base/build-base.sh kinitro/base:trixie
"$kinitro" env build miner --tag "$runner_image" --base-image kinitro/base:trixie | tail -n 1
