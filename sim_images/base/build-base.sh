#!/usr/bin/env bash
# Make the local base image for our Dockerfiles (their `ARG BASE_IMAGE`) without an image registry:
# debootstrap a minimal Debian trixie (python3 3.13; Kinitro miners need >= 3.12) and `docker import` it.
# Idempotent: does nothing if the image already exists (FORCE=1 rebuilds). Needs root, debootstrap
# and a running dockerd.
#
#   sim_images/base/build-base.sh [TAG]        default TAG: kinitro/base:trixie
set -euo pipefail

tag="${1:-kinitro/base:trixie}"
suite="${SUITE:-trixie}"
mirror="${MIRROR:-http://deb.debian.org/debian}"

if [[ "${FORCE:-0}" != 1 ]] && docker image inspect "$tag" >/dev/null 2>&1; then
  echo "base image $tag exists (FORCE=1 rebuilds it)"
  exit 0
fi
command -v debootstrap >/dev/null || { echo "debootstrap is missing: apt-get install -y debootstrap" >&2; exit 1; }
[[ "$(id -u)" == 0 ]] || { echo "debootstrap needs root: run this script as root" >&2; exit 1; }

root="$(mktemp -d /var/tmp/kinitro-base.XXXXXX)"
trap 'rm -rf --one-file-system "$root"' EXIT

echo "debootstrap --variant=minbase $suite from $mirror into $root"
debootstrap --variant=minbase "$suite" "$root" "$mirror" >"$root.log" 2>&1 \
  || { tail -n 30 "$root.log" >&2; echo "debootstrap failed (full log $root.log)" >&2; exit 1; }
rm -f "$root.log"

# What a container image does not need: package caches, lists (re-fetched by `apt-get update`), docs.
rm -rf "$root"/var/cache/apt/archives/*.deb "$root"/var/lib/apt/lists/* "$root"/usr/share/doc/* \
       "$root"/usr/share/man/* "$root"/usr/share/locale/* "$root"/var/log/*.log
# As Docker's official Debian images do: no docs on later installs, apt never asks questions.
mkdir -p "$root"/etc/dpkg/dpkg.cfg.d
printf 'path-exclude /usr/share/doc/*\npath-include /usr/share/doc/*/copyright\npath-exclude /usr/share/man/*\npath-exclude /usr/share/locale/*\n' \
  >"$root"/etc/dpkg/dpkg.cfg.d/docker-minimal
printf 'APT::Install-Recommends "false";\nAPT::Install-Suggests "false";\n' >"$root"/etc/apt/apt.conf.d/90-minimal

tar --numeric-owner -C "$root" -c . | docker import \
  --change 'ENV LANG=C.UTF-8 DEBIAN_FRONTEND=noninteractive' \
  --change 'CMD ["/bin/bash"]' \
  --message "debootstrap --variant=minbase $suite" - "$tag" >/dev/null
echo "built $tag ($(docker image inspect -f '{{.Size}}' "$tag" | numfmt --to=iec))"
