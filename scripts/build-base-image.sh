#!/usr/bin/env bash
# Builds the local builder/runtime base image (Debian bookworm + python3 + uv) without any image registry:
# none is reachable from the machines this was built on, so we debootstrap a root filesystem and
# `podman import` it. Production would point the bot's base-image setting at an official Python+uv image instead.
#
# Usage: scripts/build-base-image.sh [--force] [TAG]     (default TAG: localhost/tussilago-python:bookworm)
# Env:   DEBIAN_MIRROR (default http://deb.debian.org/debian), CA_BUNDLE (default /etc/ssl/certs/ca-certificates.crt),
#        UV_VERSION (optional pin, e.g. 0.5.11), and any http(s)_proxy variables already in the environment.
set -euo pipefail

force=0
tag="localhost/tussilago-python:bookworm"
for arg in "$@"; do
  case "$arg" in
    --force) force=1 ;;
    -h|--help) sed -n '2,9p' "$0"; exit 0 ;;
    -*) echo "unknown option: $arg" >&2; exit 2 ;;
    *) tag="$arg" ;;
  esac
done

mirror="${DEBIAN_MIRROR:-http://deb.debian.org/debian}"
ca_bundle="${CA_BUNDLE:-/etc/ssl/certs/ca-certificates.crt}"
uv_spec="uv${UV_VERSION:+==$UV_VERSION}"

say() { printf '[build-base-image] %s\n' "$*" >&2; }
now() { date +%s; }

if [[ $force -eq 0 ]] && podman image exists "$tag"; then
  say "image $tag already exists; skipping (use --force to rebuild)"
  exit 0
fi

for tool in debootstrap podman chroot tar; do
  command -v "$tool" >/dev/null || { say "missing tool: $tool"; exit 1; }
done
[[ -r "$ca_bundle" ]] || { say "CA bundle not readable: $ca_bundle"; exit 1; }

# /var/tmp rather than /tmp: the rootfs is ~300 MB and /tmp may be a small tmpfs.
work="$(mktemp -d /var/tmp/tussilago-rootfs.XXXXXX)"
root="$work/rootfs"
cleanup() { rm -rf --one-file-system "$work"; }
trap cleanup EXIT

t0=$(now)
say "debootstrap bookworm into $root (mirror $mirror)"
debootstrap --variant=minbase --include=python3,python3-venv,ca-certificates bookworm "$root" "$mirror" >"$work/debootstrap.log" 2>&1 \
  || { tail -n 40 "$work/debootstrap.log" >&2; exit 1; }
t1=$(now)
say "debootstrap done in $((t1 - t0)) s"

# PyPI is reached through an intercepting proxy whose CA is only in the host's store. The bundle is copied in
# for the install and removed afterwards, so the image does not trust the build host's proxy CA at run time.
cp "$ca_bundle" "$root/tmp/host-ca.crt"
cp /etc/resolv.conf "$root/etc/resolv.conf"
proxy_env=()
for v in http_proxy https_proxy no_proxy HTTP_PROXY HTTPS_PROXY NO_PROXY; do
  [[ -n "${!v:-}" ]] && proxy_env+=("$v=${!v}")
done
say "installing $uv_spec into /opt/uv"
env -i PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin HOME=/root LANG=C.UTF-8 "${proxy_env[@]}" \
  PIP_CERT=/tmp/host-ca.crt SSL_CERT_FILE=/tmp/host-ca.crt PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_CACHE_DIR=1 \
  chroot "$root" /bin/sh -euc "
    python3 -m venv /opt/uv
    /opt/uv/bin/pip install --quiet '$uv_spec'
    ln -sf /opt/uv/bin/uv /usr/local/bin/uv
    ln -sf /opt/uv/bin/uvx /usr/local/bin/uvx
    uv --version
  "
t2=$(now)
say "uv installed in $((t2 - t1)) s"

# Runtime layout: /app holds the built app (read-only at run time), /work is the build mount point, /cache the
# optional package cache mount. Containers run as 65534:65534 (nobody/nogroup, already in Debian's passwd).
rm -f "$root/tmp/host-ca.crt"
: >"$root/etc/resolv.conf"
mkdir -p "$root/app" "$root/work" "$root/cache"
chmod 0755 "$root/app" "$root/work" "$root/cache"
rm -rf "$root/var/cache/apt/archives/"*.deb "$root/var/lib/apt/lists/"* "$root/usr/share/doc" "$root/usr/share/man" \
  "$root/usr/share/info" "$root/var/log/"*.log "$root/root/.cache"
find "$root/usr/share/locale" -mindepth 1 -maxdepth 1 ! -name 'C.*' -exec rm -rf {} + 2>/dev/null || true

say "importing as $tag"
tar --numeric-owner -C "$root" -c . | podman import \
  --change 'ENV=PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
  --change 'ENV=LANG=C.UTF-8' \
  --change 'ENV=PYTHONDONTWRITEBYTECODE=1' \
  --change 'ENV=UV_PYTHON_DOWNLOADS=never' \
  --change 'WORKDIR=/app' \
  --change 'CMD=["python3"]' \
  - "$tag" >/dev/null
t3=$(now)
say "import done in $((t3 - t2)) s; total $((t3 - t0)) s"
podman image inspect --format '{{.Id}} {{.Size}}' "$tag" >&2
