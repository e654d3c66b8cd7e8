#!/usr/bin/env bash
# Installs playwright-core (npm) for the approval page's browser test
# (crates/gateway-bin/tests/web.rs), which drives Debian's chromium (the
# system browser: playwright-core downloads no browser) into
#
#   ${PORTCULLIS_WEB_TEST_DIR:-${CARGO_TARGET_DIR:-target}/web-test}/node_modules/playwright-core
#
# Pinned and idempotent. Needs npm; chromium comes from apt (scripts/test.sh).
set -euo pipefail
cd "$(dirname "$0")/.."

PLAYWRIGHT_CORE_VERSION=1.65.1

dir="${PORTCULLIS_WEB_TEST_DIR:-${CARGO_TARGET_DIR:-target}/web-test}"
mkdir -p "$dir"
dir="$(cd "$dir" && pwd)"
want="playwright-core=$PLAYWRIGHT_CORE_VERSION"
if [ -f "$dir/installed" ] && [ "$(cat "$dir/installed")" = "$want" ] \
  && [ -d "$dir/node_modules/playwright-core" ]; then
  echo "web test tools already installed in $dir ($want)"
  exit 0
fi
command -v npm >/dev/null || { echo "install-web-test: npm (Node.js) is missing" >&2; exit 1; }
rm -f "$dir/installed"
[ -f "$dir/package.json" ] || echo '{"name":"portcullis-web-test","private":true}' >"$dir/package.json"
(cd "$dir" && PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD=1 npm install --silent --no-audit --no-fund "playwright-core@$PLAYWRIGHT_CORE_VERSION")
echo "$want" >"$dir/installed"
echo "web test tools installed in $dir ($want)"
