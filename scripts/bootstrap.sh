#!/usr/bin/env bash
# Installs what the Tussilago deploy bot needs on Debian 12 and, with --services, starts what its test suite needs.
# Idempotent: it prints what it installs or starts and stays quiet when everything is already there.
#
#   bash scripts/bootstrap.sh              # Node >= 22.12 (installs 24), Debian packages, npm dependencies, base image
#   bash scripts/bootstrap.sh --services   # ... plus Chromium, Redis on 127.0.0.1:6379 and PostgreSQL 15 for the tests
#
# The Debian redis-server and caddy packages may start system services on install. The bot never uses them: it
# starts its own redis-server and caddy on unix sockets in its data dir, so a system Caddy on :80/:2019 is harmless.
set -euo pipefail

readonly NODE_MIN="22.12.0"
readonly APT_PACKAGES=(podman runsc caddy redis-server postgresql postgresql-contrib pgbouncer git uidmap debootstrap nftables curl
  ca-certificates)
# Test suites only (--services): the dashboard's browser test drives Debian's Chromium through playwright-core.
readonly TEST_APT_PACKAGES=(chromium)
readonly PG_VERSION=15
readonly PG_ADMIN_ROLE=tussilago_admin
readonly REDIS_PORT=6379

repo_root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
start_services=0

usage() {
  sed -n '2,6p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'
}

for arg in "$@"; do
  case "$arg" in
    --services) start_services=1 ;;
    -h | --help)
      usage
      exit 0
      ;;
    *)
      echo "bootstrap: unknown option: $arg" >&2
      usage >&2
      exit 2
      ;;
  esac
done

say() { echo "bootstrap: $*"; }
die() {
  echo "bootstrap: error: $*" >&2
  exit 1
}
is_root() { [[ "$(id -u)" -eq 0 ]]; }

apt_updated=0
apt_install() {
  is_root || die "installing $* needs root; run: sudo apt-get update && sudo apt-get install -y $*"
  if [[ "$apt_updated" -eq 0 ]]; then
    say "apt-get update"
    DEBIAN_FRONTEND=noninteractive apt-get update -qq
    apt_updated=1
  fi
  say "installing Debian packages: $*"
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "$@"
}

# --- Debian packages ----------------------------------------------------------------------------------------------
missing_packages() {
  local pkg
  for pkg in "$@"; do
    if [[ "$(dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null || true)" != "install ok installed" ]]; then
      echo "$pkg"
    fi
  done
}

ensure_packages() {
  local missing wanted=("${APT_PACKAGES[@]}")
  [[ "$start_services" -eq 1 ]] && wanted+=("${TEST_APT_PACKAGES[@]}")
  mapfile -t missing < <(missing_packages "${wanted[@]}")
  [[ "${#missing[@]}" -eq 0 ]] && return 0
  if ! is_root; then
    echo "bootstrap: missing Debian packages: ${missing[*]}" >&2
    echo "bootstrap: install them with: sudo apt-get update && sudo apt-get install -y ${missing[*]}" >&2
    exit 1
  fi
  apt_install "${missing[@]}"
}

# --- Node ---------------------------------------------------------------------------------------------------------
version_at_least() { # version_at_least HAVE WANT: true when HAVE >= WANT (dotted numbers)
  [[ "$(printf '%s\n%s\n' "$2" "$1" | sort -V | head -n1)" == "$2" ]]
}

node_version() { node -p 'process.versions.node' 2>/dev/null || true; }

ensure_node() {
  local have
  have="$(node_version)"
  if [[ -n "$have" ]] && version_at_least "$have" "$NODE_MIN"; then
    return 0
  fi
  if ! command -v npm >/dev/null 2>&1; then
    apt_install nodejs npm
  fi
  is_root || die "Node ${have:-(none)} is older than $NODE_MIN; install Node 24 (e.g. sudo npm install -g --prefix /usr/local node@24)"
  say "installing Node 24 into /usr/local (found ${have:-no node})"
  # Without --prefix, npm tries to replace Debian's /usr/bin/node and fails with EEXIST.
  npm install -g --prefix /usr/local --no-fund --no-audit --loglevel=error node@24
  hash -r
  have="$(node_version)"
  if [[ -z "$have" ]] || ! version_at_least "$have" "$NODE_MIN"; then
    die "node on PATH is still ${have:-missing} ($(command -v node || echo 'not found')); /usr/local/bin must come before /usr/bin in PATH"
  fi
  say "node $(node --version) at $(command -v node)"
}

# --- npm dependencies ---------------------------------------------------------------------------------------------
ensure_npm_dependencies() {
  local lock="$repo_root/package-lock.json" stamp="$repo_root/node_modules/.bootstrap-stamp" want
  [[ -f "$lock" ]] || return 0
  want="$(sha256sum "$lock" | cut -d' ' -f1)"
  [[ -f "$stamp" && "$(cat "$stamp")" == "$want" ]] && return 0
  # A tree npm itself installed after the lock was last written is current: adopt it instead of reinstalling
  # (npm ci deletes node_modules, and better-sqlite3 takes ~90 s to build from source here).
  if [[ ! -f "$stamp" && -f "$repo_root/node_modules/.package-lock.json" && ! "$repo_root/node_modules/.package-lock.json" -ot "$lock" ]]; then
    echo "$want" >"$stamp"
    return 0
  fi
  say "npm ci (package-lock.json changed or node_modules missing)"
  (cd "$repo_root" && npm ci --no-fund --no-audit --loglevel=error)
  echo "$want" >"$stamp"
}

# --- kernel settings ----------------------------------------------------------------------------------------------
# Every Caddy config change (a deploy's upstream switch) reloads Caddy, which opens a new listener on the same port
# (SO_REUSEPORT) and closes the old one; without tcp_migrate_req the connections still queued on the old one are
# reset. With it they move to the new listener, so a redeploy drops no request (measured in test/e2e/caddy.test.ts).
readonly SYSCTL_FILE=/etc/sysctl.d/60-tussilago.conf
if [[ "$(cat /proc/sys/net/ipv4/tcp_migrate_req 2>/dev/null || echo 1)" != "1" ]]; then
  if is_root; then
    say "setting net.ipv4.tcp_migrate_req=1 (persisted in $SYSCTL_FILE)"
    echo "net.ipv4.tcp_migrate_req = 1" >"$SYSCTL_FILE"
    sysctl -q -w net.ipv4.tcp_migrate_req=1
  else
    say "warning: net.ipv4.tcp_migrate_req is 0; run as root: sysctl -w net.ipv4.tcp_migrate_req=1"
  fi
fi

# --- services for the test suite ----------------------------------------------------------------------------------
ensure_test_redis() {
  if redis-cli -h 127.0.0.1 -p "$REDIS_PORT" ping >/dev/null 2>&1; then
    return 0
  fi
  say "starting redis-server on 127.0.0.1:$REDIS_PORT (no persistence)"
  redis-server --daemonize yes --bind 127.0.0.1 --port "$REDIS_PORT" --save "" --appendonly no \
    --logfile /tmp/tussilago-test-redis.log >/dev/null
  local i
  for i in $(seq 1 50); do
    redis-cli -h 127.0.0.1 -p "$REDIS_PORT" ping >/dev/null 2>&1 && return 0
    sleep 0.1
  done
  die "redis-server did not answer on 127.0.0.1:$REDIS_PORT (see /tmp/tussilago-test-redis.log)"
}

# From / so psql does not warn that it cannot read the caller's working directory.
as_postgres() { (cd / && runuser -u postgres -- "$@"); }

pg_admin_ok() {
  PGPASSWORD="$PG_ADMIN_ROLE" PGCONNECT_TIMEOUT=5 psql -X -h 127.0.0.1 -p 5432 -U "$PG_ADMIN_ROLE" -d postgres -tAq \
    -c "SELECT rolsuper FROM pg_roles WHERE rolname = current_user" 2>/dev/null | grep -qx t
}

ensure_test_postgres() {
  pg_admin_ok && return 0
  is_root || die "PostgreSQL $PG_VERSION with role $PG_ADMIN_ROLE is not usable on 127.0.0.1:5432, and fixing that needs root"
  if ! pg_lsclusters -h 2>/dev/null | awk '{print $1" "$2}' | grep -qx "$PG_VERSION main"; then
    say "creating PostgreSQL $PG_VERSION cluster main"
    pg_createcluster "$PG_VERSION" main >/dev/null
  fi
  if ! pg_isready -q -h 127.0.0.1 -p 5432; then
    say "starting PostgreSQL $PG_VERSION"
    pg_ctlcluster "$PG_VERSION" main start
    local i
    for i in $(seq 1 60); do
      pg_isready -q -h 127.0.0.1 -p 5432 && break
      sleep 0.5
    done
    pg_isready -q -h 127.0.0.1 -p 5432 || die "PostgreSQL $PG_VERSION is not accepting connections on 127.0.0.1:5432"
  fi
  pg_admin_ok && return 0
  local verb=CREATE
  [[ "$(as_postgres psql -XtAq -c "SELECT 1 FROM pg_roles WHERE rolname = '$PG_ADMIN_ROLE'")" == "1" ]] && verb=ALTER
  say "${verb,,} PostgreSQL role $PG_ADMIN_ROLE (superuser for the test suite only)"
  as_postgres psql -Xq -v ON_ERROR_STOP=1 \
    -c "$verb ROLE $PG_ADMIN_ROLE LOGIN SUPERUSER PASSWORD '$PG_ADMIN_ROLE'" >/dev/null
  pg_admin_ok || die "cannot log in as $PG_ADMIN_ROLE on 127.0.0.1:5432 with password auth (check pg_hba.conf)"
}

# --- base image ---------------------------------------------------------------------------------------------------
# The default Python's (3.14). Without it most builds fail; no registry is reachable here, so it is built locally
# (debootstrap, about a minute). Other versions (3.11, 3.13) are built on demand: bash scripts/build-base-image.sh 3.13
ensure_base_image() {
  local image="${TUSSILAGO_BASE_IMAGE:-localhost/tussilago-python:3.14}"
  [[ "$image" == localhost/* ]] || return 0 # a registry image is pulled by podman at the first build
  podman image exists "$image" 2>/dev/null && return 0
  is_root || die "base image $image is missing and building it needs root: sudo bash scripts/build-base-image.sh $image"
  say "building base image $image (debootstrap + uv, about a minute)"
  bash "$repo_root/scripts/build-base-image.sh" "$image"
}

# --- private Redis image ----------------------------------------------------------------------------------------
# The apps' private Redis servers (docs/tenant-databases.md): the host's redis-server in a minimal image, about 2 s.
ensure_redis_image() {
  local image="${TUSSILAGO_APP_REDIS_IMAGE:-localhost/tussilago-redis:7}"
  [[ "$image" == localhost/* ]] || return 0
  podman image exists "$image" 2>/dev/null && return 0
  is_root || die "image $image is missing and building it needs root: sudo bash scripts/build-redis-image.sh $image"
  say "building the private Redis image $image"
  bash "$repo_root/scripts/build-redis-image.sh" "$image"
}

ensure_packages
ensure_node
ensure_npm_dependencies
ensure_base_image
ensure_redis_image
if [[ "$start_services" -eq 1 ]]; then
  ensure_test_redis
  ensure_test_postgres
fi
