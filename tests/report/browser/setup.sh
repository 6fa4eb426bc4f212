#!/usr/bin/env bash
# Install what the report's browser test needs: Debian's chromium and playwright-core (npm).
# Idempotent and quick when done already; `make test` runs it. Needs root (or sudo) for apt-get
# the first time. Playwright downloads no browser here: the test drives the system's chromium.
set -euo pipefail
cd "$(dirname "$0")"

CHROMIUM=${RMSCORE_CHROMIUM:-/usr/bin/chromium}
SUDO=""
if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi

missing=()
# Fonts named: with --no-install-recommends chromium would come without readable ones.
[ -x "$CHROMIUM" ] || missing+=(chromium fonts-liberation fonts-dejavu-core)
command -v node >/dev/null 2>&1 || missing+=(nodejs)
command -v npm >/dev/null 2>&1 || missing+=(npm)
if [ ${#missing[@]} -gt 0 ]; then
  echo "browser test setup: apt-get install ${missing[*]}" >&2
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

node -e 'const [maj] = process.versions.node.split(".").map(Number); if (maj < 20) { console.error(`node ${process.version} is too old: playwright-core needs >= 20`); process.exit(1) }'

want=$(node -p 'require("./package-lock.json").packages["node_modules/playwright-core"].version')
have=$(node -p 'try { require("./node_modules/playwright-core/package.json").version } catch { "" }')
if [ "$want" != "$have" ]; then
  echo "browser test setup: npm ci (playwright-core $want)" >&2
  PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD=1 npm ci --no-audit --no-fund --loglevel=error >/dev/null
fi
echo "browser test setup: chromium $("$CHROMIUM" --version 2>/dev/null | awk '{print $2}'), playwright-core $want" >&2
