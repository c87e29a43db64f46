# The browser the frontend tests (tests/browser) drive (sourced after env.sh, not run).
#
# The tests run Debian's Chromium through Playwright's Python package. Playwright's own browser downloads
# (`playwright install`) are never used: the distribution's package works on a closed network once
# installed, and gets the distribution's security updates.

# Chromium executables the tests accept, in the order tests/browser/conftest.py tries them
# ($DYNAMICRAFTER_CHROMIUM, when set, is the only one tried).
BROWSER_CANDIDATES="/usr/lib/chromium/chromium /usr/bin/chromium"

browser_found() {
  local candidate
  if [ -n "${DYNAMICRAFTER_CHROMIUM:-}" ]; then
    [ -x "$DYNAMICRAFTER_CHROMIUM" ]
    return
  fi
  for candidate in $BROWSER_CANDIDATES; do
    [ -x "$candidate" ] && return 0
  done
  return 1
}

# Installs Playwright (the Python package) into the venv, and Debian's chromium when it is missing and
# this runs as root on Debian; otherwise says what to install. Never fails: without a browser the
# frontend tests fail with the same instructions, and the rest of the suite still runs.
ensure_browser() {
  if ! "$PY" -c 'import playwright.sync_api' 2>/dev/null; then
    "$PY" -m pip install -q -c "$CONSTRAINTS" playwright >&2 \
      || echo "ensure_browser: installing playwright into $VENV failed; the frontend tests will fail" >&2
  fi
  browser_found && return 0
  if [ -n "${DYNAMICRAFTER_CHROMIUM:-}" ]; then
    echo "ensure_browser: DYNAMICRAFTER_CHROMIUM=$DYNAMICRAFTER_CHROMIUM is not an executable" >&2
    return 0
  fi
  local os_id=""
  [ -r /etc/os-release ] && os_id=$(. /etc/os-release && echo "${ID:-}")
  if [ "$(id -u)" = 0 ] && [ "$os_id" = debian ] && command -v apt-get >/dev/null; then
    echo "ensure_browser: installing Debian's chromium for the frontend tests" >&2
    local packages="chromium fonts-liberation"
    # shellcheck disable=SC2086
    if ! DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends $packages >&2; then
      # shellcheck disable=SC2086
      DEBIAN_FRONTEND=noninteractive apt-get update -q >&2 \
        && DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends $packages >&2 \
        || echo "ensure_browser: apt-get could not install $packages; the frontend tests will fail" >&2
    fi
    return 0
  fi
  cat >&2 <<EOF
ensure_browser: no Chromium found (looked for: $BROWSER_CANDIDATES); the frontend tests (tests/browser) will fail.
  On Debian:   sudo apt-get install chromium fonts-liberation
  Elsewhere:   set DYNAMICRAFTER_CHROMIUM to a Chromium or Chrome executable
  (Playwright's own browser download, \`playwright install\`, is not used.)
EOF
  return 0
}
