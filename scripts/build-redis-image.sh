#!/usr/bin/env bash
# Builds the image of the apps' private Redis servers (docs/tenant-databases.md) without any registry, in about two
# seconds: the host's own Debian redis-server and redis-cli binaries plus exactly the shared libraries `ldd` names
# for them, a passwd/group with `nobody`, and /data — no shell, no package manager. `podman import` turns the tree
# into an image. Production points TUSSILAGO_APP_REDIS_IMAGE at an official Redis image instead.
#
# Usage: scripts/build-redis-image.sh [--force] [TAG]   (default: localhost/tussilago-redis:7)
# Needs: redis-server and redis-cli on the host (Debian's redis-server/redis-tools packages), podman, ldd, tar.
set -euo pipefail

force=0
tag="localhost/tussilago-redis:7"
for arg in "$@"; do
  case "$arg" in
    --force) force=1 ;;
    -h | --help)
      sed -n '2,8p' "$0"
      exit 0
      ;;
    -*)
      echo "unknown option: $arg" >&2
      exit 2
      ;;
    *) tag="$arg" ;;
  esac
done

say() { printf '[build-redis-image] %s\n' "$*" >&2; }

if [[ $force -eq 0 ]] && podman image exists "$tag"; then
  say "image $tag already exists; skipping (use --force to rebuild)"
  exit 0
fi
# Debian installs redis-server as a symlink to redis-check-rdb (one binary, mode chosen by its name).
server="$(readlink -f "$(command -v redis-server)")" || {
  say "redis-server is not installed (apt-get install redis-server)"
  exit 1
}
cli="$(command -v redis-cli)" || {
  say "redis-cli is not installed (apt-get install redis-tools)"
  exit 1
}

root="$(mktemp -d /var/tmp/tussilago-redis-image.XXXXXX)"
trap 'rm -rf --one-file-system "$root"' EXIT
copy_with_libs() {
  local bin="$1" lib
  # ldd prints "name => /path (addr)" and "/lib64/ld-linux… (addr)": every absolute path is a file to copy.
  for lib in $(ldd "$bin" | grep -o '/[^ ]*'); do
    mkdir -p "$root$(dirname "$lib")"
    cp -L "$lib" "$root$lib"
  done
}
copy_with_libs "$server"
copy_with_libs "$cli"
mkdir -p "$root/usr/bin" "$root/etc" "$root/data" "$root/tmp"
cp "$server" "$root/usr/bin/redis-server"
cp "$cli" "$root/usr/bin/redis-cli"
chmod 1777 "$root/tmp"
printf 'root:x:0:0:root:/root:/usr/sbin/nologin\nnobody:x:65534:65534:nobody:/nonexistent:/usr/sbin/nologin\n' \
  >"$root/etc/passwd"
printf 'root:x:0:\nnogroup:x:65534:\n' >"$root/etc/group"
version="$(redis-server --version | grep -o 'v=[0-9.]*' | cut -d= -f2)"
tar -C "$root" -c . | podman import --quiet \
  --change 'CMD ["/usr/bin/redis-server"]' \
  --change "LABEL io.tussilago.redis-version=$version" \
  - "$tag" >/dev/null
say "built $tag (redis $version, $(du -sh "$root" | cut -f1))"
