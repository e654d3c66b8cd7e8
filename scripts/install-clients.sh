#!/usr/bin/env bash
# Installs the real PostgreSQL client libraries that the gateway's
# transparency test drives (crates/gateway-bin/tests/clients.rs): psycopg 3
# and asyncpg from PyPI into a virtualenv, node-postgres (npm `pg`) into a
# node_modules, all under one project-local directory:
#
#   ${PORTCULLIS_CLIENTS_DIR:-${CARGO_TARGET_DIR:-target}/clients}
#     venv/bin/python       psycopg, asyncpg
#     node/node_modules/pg  node-postgres
#
# Versions are pinned here; the script is idempotent (a marker file records
# what was installed). Needs python3 (with venv) and npm.
set -euo pipefail
cd "$(dirname "$0")/.."

PSYCOPG_VERSION=3.2.13
ASYNCPG_VERSION=0.30.0
NODE_PG_VERSION=8.13.1

dir="${PORTCULLIS_CLIENTS_DIR:-${CARGO_TARGET_DIR:-target}/clients}"
mkdir -p "$dir"
dir="$(cd "$dir" && pwd)"
want="psycopg=$PSYCOPG_VERSION asyncpg=$ASYNCPG_VERSION pg=$NODE_PG_VERSION"
if [ -f "$dir/installed" ] && [ "$(cat "$dir/installed")" = "$want" ] \
  && [ -x "$dir/venv/bin/python" ] && [ -d "$dir/node/node_modules/pg" ]; then
  echo "clients already installed in $dir ($want)"
  exit 0
fi

command -v python3 >/dev/null || { echo "install-clients: python3 is missing" >&2; exit 1; }
command -v npm >/dev/null || { echo "install-clients: npm (Node.js) is missing" >&2; exit 1; }

rm -f "$dir/installed"
python3 -m venv "$dir/venv"
"$dir/venv/bin/python" -m pip install --quiet --disable-pip-version-check \
  "psycopg[binary]==$PSYCOPG_VERSION" "asyncpg==$ASYNCPG_VERSION"
mkdir -p "$dir/node"
[ -f "$dir/node/package.json" ] || echo '{"name":"portcullis-client-tests","private":true}' >"$dir/node/package.json"
(cd "$dir/node" && npm install --silent --no-audit --no-fund "pg@$NODE_PG_VERSION")
echo "$want" >"$dir/installed"
echo "clients installed in $dir ($want)"
