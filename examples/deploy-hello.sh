#!/usr/bin/env bash
# Deploys the example app (examples/hello: Django 6 + gunicorn on Python 3.14) to the bot README command 1 started
# on this host, then fetches it through the bot's Caddy. Run from the repository, in a second shell, while the bot
# runs. The bot and this script must see the same TUSSILAGO_DATA_DIR (both default to ~/.local/share/tussilago).
#
# The example is copied into a local git repository and deployed from a file:// URL, which the bot accepts only with
# TUSSILAGO_GIT_ALLOW_FILE_URLS=1 (command 1 sets it; a production bot deploys from https:// remotes instead).
set -euo pipefail

cd "$(dirname "$0")/.."
export PATH="/usr/local/bin:$PATH"
export TUSSILAGO_GIT_ALLOW_FILE_URLS=1
app="${HELLO_APP:-hello}"
domain="${HELLO_DOMAIN:-hello.localhost}"
listen="${TUSSILAGO_PROXY_LISTEN:-:8080}"
proxy_port="${listen##*:}"
tussilago() { node src/cli.ts "$@"; }

repo="${HELLO_REPO:-/tmp/tussilago-example-hello}"
rm -rf "$repo"
mkdir -p "$repo"
cp -a examples/hello/. "$repo/"
git -C "$repo" init -q -b main
git -C "$repo" add -A
git -C "$repo" -c user.name=tussilago -c user.email=example@tussilago.invalid commit -q -m "example app"
echo "example: the app's source is the git repository $repo"

if tussilago status "$app" --json >/dev/null 2>&1; then
  echo "example: app $app exists; deploying the new commit"
else
  tussilago apps create "$app" --git "file://$repo" --domain "$domain"
fi
tussilago deploy "$app"

echo "example: GET http://$domain:$proxy_port/ (Host header through Caddy on 127.0.0.1:$proxy_port)"
curl -fsS --retry 5 --retry-delay 1 --retry-all-errors -H "Host: $domain" "http://127.0.0.1:$proxy_port/"
