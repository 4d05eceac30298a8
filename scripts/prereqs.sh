#!/usr/bin/env bash
# The system tools the build and the tests need, checked (and installed with apt-get when run as
# root) before cargo runs. Sourced by scripts/test.sh and scripts/demo.sh.
#
#   cmake            pingora's zlib-ng (libz-ng-sys)
#   perl, make, cc   the vendored OpenSSL
#   openssl          the standard client the HTTP tests drive (s_client, s_time), as operators do
#   prlimit          the storm test runs provgate under a low descriptor limit (util-linux)
#   chromium         optional: tests/status_page.rs renders the admin page in it (provgate_browser)
provgate_prereqs() {
  local need=() tool
  for tool in "$@"; do
    command -v "$tool" >/dev/null 2>&1 || need+=("$tool")
  done
  [ ${#need[@]} -eq 0 ] && return 0
  declare -A pkg=([cmake]=cmake [perl]=perl [make]=make [cc]=gcc [openssl]=openssl [prlimit]=util-linux)
  local pkgs=()
  for tool in "${need[@]}"; do pkgs+=("${pkg[$tool]}"); done
  if command -v apt-get >/dev/null 2>&1 && [ "$(id -u)" = 0 ]; then
    echo "provgate: installing missing build tools: ${pkgs[*]}"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${pkgs[@]}" >/dev/null
  else
    echo "provgate: missing build tools: ${need[*]} (Debian packages: ${pkgs[*]}); install them and rerun" >&2
    exit 1
  fi
}

# Headless Chromium for tests/status_page.rs: installed with apt-get when run as root; otherwise
# that test's browser half says it was skipped. Never fails the run.
provgate_browser() {
  if command -v chromium >/dev/null 2>&1 || command -v chromium-browser >/dev/null 2>&1; then
    return 0
  fi
  if command -v apt-get >/dev/null 2>&1 && [ "$(id -u)" = 0 ]; then
    echo "provgate: installing chromium for the status-page test"
    { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; } ||
      echo "provgate: could not install chromium; the status-page browser test will be skipped" >&2
  else
    echo "provgate: no chromium (Debian package chromium); the status-page browser test will be skipped" >&2
  fi
}
