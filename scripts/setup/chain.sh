#!/usr/bin/env bash
# Chopsticks (a Substrate dev chain that runs a real runtime's wasm) from npm,
# pinned in deploy/local/chain/package.json.
source "$(dirname "$0")/common.sh"
need_apt node:nodejs npm:npm
DIR="$CACHE/chain"
mkdir -p "$DIR"
if ! cmp -s "$ROOT/deploy/local/chain/package.json" "$DIR/package.json" || [ ! -x "$DIR/node_modules/.bin/chopsticks" ]; then
  cp "$ROOT/deploy/local/chain/package.json" "$DIR/package.json"
  log "npm install chopsticks"
  (cd "$DIR" && npm install --no-audit --no-fund --loglevel=error >/dev/null)
fi
log "chopsticks $(grep -m1 "\"version\"" "$DIR/node_modules/@acala-network/chopsticks/package.json" | tr -dc "0-9.")"
