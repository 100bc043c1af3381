#!/usr/bin/env bash
# Builds the local builder/runtime base image for one Python version (Debian + python3.X + venv + uv) without any
# image registry: none is reachable from the machines this was built on, so we debootstrap the Debian suite that
# ships that Python and `podman import` it. Production points TUSSILAGO_PYTHON_IMAGES at official Python+uv images.
#
# Usage: scripts/build-base-image.sh [--force] [VERSION | TAG]...   (default: 3.14)
#   VERSION is 3.11, 3.13 or 3.14 and builds localhost/tussilago-python:VERSION; a TAG of that form does the same.
#   Python 3.12 is in no suite Debian's archive serves any more (see docs/python-apps.md, "Python versions").
# Env:   DEBIAN_MIRROR (default http://deb.debian.org/debian), CA_BUNDLE (default /etc/ssl/certs/ca-certificates.crt),
#        UV_VERSION (optional pin, e.g. 0.5.11), and any http(s)_proxy variables already in the environment.
set -euo pipefail

readonly REPO="localhost/tussilago-python"
# Python version -> the Debian suite whose python3.X package it is.
suite_for() {
  case "$1" in
    3.11) echo bookworm ;;
    3.13) echo trixie ;;
    3.14) echo forky ;;
    *) return 1 ;;
  esac
}

force=0
versions=()
for arg in "$@"; do
  case "$arg" in
    --force) force=1 ;;
    -h | --help)
      sed -n '2,10p' "$0"
      exit 0
      ;;
    -*)
      echo "unknown option: $arg" >&2
      exit 2
      ;;
    "$REPO":*) versions+=("${arg#"$REPO":}") ;;
    *) versions+=("$arg") ;;
  esac
done
[[ ${#versions[@]} -gt 0 ]] || versions=(3.14)
for v in "${versions[@]}"; do
  suite_for "$v" >/dev/null || {
    echo "no Debian suite ships Python $v here; versions on offer: 3.11 3.13 3.14 (or a tag $REPO:VERSION)" >&2
    exit 2
  }
done

mirror="${DEBIAN_MIRROR:-http://deb.debian.org/debian}"
ca_bundle="${CA_BUNDLE:-/etc/ssl/certs/ca-certificates.crt}"
uv_spec="uv${UV_VERSION:+==$UV_VERSION}"

say() { printf '[build-base-image] %s\n' "$*" >&2; }
now() { date +%s; }

for tool in debootstrap podman chroot tar; do
  command -v "$tool" >/dev/null || {
    say "missing tool: $tool"
    exit 1
  }
done
[[ -r "$ca_bundle" ]] || {
  say "CA bundle not readable: $ca_bundle"
  exit 1
}

work=""
cleanup() { [[ -z "$work" ]] || rm -rf --one-file-system "$work"; }
trap cleanup EXIT

build_one() {
  local version="$1" suite tag py root t0 t1 t2 t3
  suite="$(suite_for "$version")"
  tag="$REPO:$version"
  py="python$version"
  if [[ $force -eq 0 ]] && podman image exists "$tag"; then
    say "image $tag already exists; skipping (use --force to rebuild)"
    return 0
  fi
  # /var/tmp rather than /tmp: the rootfs is ~300 MB and /tmp may be a small tmpfs.
  work="$(mktemp -d /var/tmp/tussilago-rootfs.XXXXXX)"
  root="$work/rootfs"

  t0=$(now)
  say "debootstrap $suite ($py) into $root (mirror $mirror)"
  # Debian 12's debootstrap has no script for suites newer than trixie; testing and unstable share sid's.
  local script=()
  [[ -e "/usr/share/debootstrap/scripts/$suite" ]] || script=(/usr/share/debootstrap/scripts/sid)
  debootstrap --variant=minbase --include="$py,$py-venv,ca-certificates" "$suite" "$root" "$mirror" "${script[@]}" \
    >"$work/debootstrap.log" 2>&1 || {
    tail -n 40 "$work/debootstrap.log" >&2
    exit 1
  }
  t1=$(now)
  say "debootstrap done in $((t1 - t0)) s"

  # PyPI is reached through an intercepting proxy whose CA is only in the host's store. The bundle is copied in
  # for the install and removed afterwards, so the image does not trust the build host's proxy CA at run time.
  cp "$ca_bundle" "$root/tmp/host-ca.crt"
  cp /etc/resolv.conf "$root/etc/resolv.conf"
  local proxy_env=() v
  for v in http_proxy https_proxy no_proxy HTTP_PROXY HTTPS_PROXY NO_PROXY; do
    [[ -n "${!v:-}" ]] && proxy_env+=("$v=${!v}")
  done
  say "installing $uv_spec into /opt/uv"
  # python3/python name the image's one interpreter, whatever the suite's default python3 is.
  env -i PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin HOME=/root LANG=C.UTF-8 "${proxy_env[@]}" \
    PIP_CERT=/tmp/host-ca.crt SSL_CERT_FILE=/tmp/host-ca.crt PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_CACHE_DIR=1 \
    chroot "$root" /bin/sh -euc "
      ln -sf /usr/bin/$py /usr/local/bin/python3
      ln -sf /usr/bin/$py /usr/local/bin/python
      $py -m venv /opt/uv
      /opt/uv/bin/pip install --quiet '$uv_spec'
      ln -sf /opt/uv/bin/uv /usr/local/bin/uv
      ln -sf /opt/uv/bin/uvx /usr/local/bin/uvx
      uv --version
      python3 --version
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
  # UV_PYTHON pins uv to this image's interpreter: a project's requires-python never makes it look for another.
  tar --numeric-owner -C "$root" -c . | podman import \
    --change 'ENV=PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
    --change 'ENV=LANG=C.UTF-8' \
    --change 'ENV=PYTHONDONTWRITEBYTECODE=1' \
    --change 'ENV=UV_PYTHON_DOWNLOADS=never' \
    --change "ENV=UV_PYTHON=/usr/bin/$py" \
    --change "ENV=TUSSILAGO_PYTHON_VERSION=$version" \
    --change "LABEL=io.tussilago.python=$version" \
    --change 'WORKDIR=/app' \
    --change 'CMD=["python3"]' \
    - "$tag" >/dev/null
  t3=$(now)
  say "import done in $((t3 - t2)) s; total $((t3 - t0)) s"
  podman image inspect --format '{{.Id}} {{.Size}}' "$tag" >&2
  rm -rf --one-file-system "$work"
  work=""
}

for v in "${versions[@]}"; do
  build_one "$v"
done
