#!/usr/bin/env bash
# Installs everything sparkscope's demo and tests need, from the package registries only:
# Debian packages (Java 17, Chromium), a Python venv with pyspark[connect], JupyterLab and the
# kernel extension's dependencies from PyPI, and sparkscope's own wheel (the agent built by
# maturin from crates.io sources, the kernel extension, the listener jar compiled against that
# pyspark's Spark jars), installed into the venv with pip.
# Safe to run again: each step is skipped when already done.
set -euo pipefail
cd "$(dirname "$0")/.."
log() { printf '\n== %s\n' "$*"; }

apt_install() {
  if [ "$(id -u)" -ne 0 ]; then
    echo "need root to install Debian packages: $*" >&2; exit 1
  fi
  if [ ! -f /tmp/.sparkscope-apt-updated ]; then
    DEBIAN_FRONTEND=noninteractive apt-get update -qq && touch /tmp/.sparkscope-apt-updated
  fi
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "$@"
}

log "system packages"
need=()
command -v javac >/dev/null 2>&1 || need+=(openjdk-17-jdk-headless)
# The JupyterLab extension is built (with jlpm, from the npm registry) when the wheel is.
command -v node >/dev/null 2>&1 || need+=(nodejs)
command -v curl >/dev/null 2>&1 || need+=(curl)
# Browser tests drive Debian's Chromium (no browser download); the metrics tests run a real
# Prometheus and promtool.
[ -x /usr/bin/chromium ] || need+=(chromium)
command -v promtool >/dev/null 2>&1 || need+=(prometheus)
# The listener's unit tests run on JUnit 5.
[ -f /usr/share/java/junit-platform-console-standalone.jar ] || need+=(junit5)
python3 -c 'import venv, ensurepip' >/dev/null 2>&1 || need+=(python3-venv)
# JupyterHub's proxy comes from the npm registry.
command -v npm >/dev/null 2>&1 || need+=(nodejs npm)
if [ ${#need[@]} -gt 0 ]; then
  apt_install "${need[@]}"
  # The package enables a system Prometheus on :9090 where systemd runs; tests start their own.
  if [[ " ${need[*]} " == *" prometheus "* ]] && [ -d /run/systemd/system ]; then
    systemctl disable --now prometheus >/dev/null 2>&1 || true
  fi
else
  echo "present"
fi
command -v cargo >/dev/null 2>&1 || { echo "cargo not found: install the Rust toolchain first" >&2; exit 1; }

log "python venv (.venv)"
[ -x .venv/bin/python ] || python3 -m venv .venv
stamp=.venv/.requirements.sha
want=$(sha256sum tests/requirements.txt | cut -d' ' -f1)
if [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
  .venv/bin/pip install -q --upgrade pip
  .venv/bin/pip install -q -r tests/requirements.txt
  echo "$want" > "$stamp"
else
  echo "up to date"
fi

log "the tests' process harness (tests/harness), editable: what scripts and tests import"
stamp=.venv/.harness.sha
want=$(sha256sum tests/harness/pyproject.toml | cut -d' ' -f1)
# Installed means importable from this checkout (an editable install names its directory).
here="$(pwd -P)/tests/harness/__init__.py"
check='import harness, sys; sys.exit(harness.__file__ != sys.argv[1])'
if [ "$(cat "$stamp" 2>/dev/null)" != "$want" ] || ! .venv/bin/python -c "$check" "$here" >/dev/null 2>&1; then
  # -qq: setuptools' notice on every editable install is not ours to act on; errors still show
  .venv/bin/pip install -qq -e tests/harness
  echo "$want" > "$stamp"
  echo "installed"
else
  echo "up to date"
fi

log "JupyterHub's proxy (configurable-http-proxy, npm)"
chp=.venv/chp/node_modules/.bin/configurable-http-proxy
if [ ! -x "$chp" ]; then
  npm install --silent --no-audit --no-fund --prefix .venv/chp configurable-http-proxy@5.3.0
fi
echo "installed"

log "sparkmonitor 3.3's listener jar (its PyPI wheel): the anchor of the listener benchmark"
sm=target/bench/sparkmonitor
if [ ! -f "$sm/sparkmonitor/listener_spark4_2.13.jar" ]; then
  mkdir -p "$sm"
  .venv/bin/pip download -q --no-deps --only-binary :all: -d "$sm" sparkmonitor==3.3.0
  .venv/bin/python -m zipfile -e "$sm/sparkmonitor-3.3.0-py3-none-any.whl" "$sm"
fi
echo "installed"

log "sparkscope's wheel (the agent, the kernel extension and the listener jar), installed as a user would"
# Rebuilt when a source it packs changed; the stamp is the hash of those sources.
sources=$( { git ls-files -co --exclude-standard Cargo.toml Cargo.lock agent proto kernel-comm/pyproject.toml \
    kernel-comm/README.md kernel-comm/src kernel-comm/wheel-data kernel-comm/labextension listener-jar/src \
    listener-jar/build.sh; } | grep -v '/jars/' | grep -v "^kernel-comm/wheel-data/data/share/" | sort)
want=$(cat $sources | sha256sum | cut -d' ' -f1)
stamp=.venv/.wheel.sha
if [ "$(cat "$stamp" 2>/dev/null)" != "$want" ] || ! .venv/bin/sparkscope listener-jar >/dev/null 2>&1; then
  wheel=$(bash scripts/wheel.sh | tail -1)
  .venv/bin/pip uninstall -q -y sparkscope >/dev/null 2>&1 || true
  .venv/bin/pip install -q "$wheel"
  echo "$want" > "$stamp"
  echo "installed $wheel ($(du -h "$wheel" | cut -f1))"
else
  echo "up to date"
fi
