#!/usr/bin/env bash
# Installs what compressor's build and tests need on a fresh Debian machine: the system
# libraries of design.md and the tools the tests call (apt), and a Python virtual environment
# (.venv) with ONNX Runtime for the interop tests. Does nothing that is already done.
set -euo pipefail
cd "$(dirname "$0")/.."

# chromium and a font: the HTML report is rendered headless in the tests (Tests/interop/test_pipeline.py).
packages=(make pkg-config libprotobuf-c-dev protobuf-c-compiler libopenblas-dev zlib1g-dev strace time chromium fonts-dejavu-core)
python3 -c "import venv, ensurepip" 2>/dev/null || packages+=(python3 python3-venv)
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
  sudo=""
  [ "$(id -u)" = 0 ] || sudo=sudo
  echo "bootstrap: installing ${missing[*]}" >&2
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

requirements=${REQUIREMENTS:-Tests/interop/requirements.txt}
if [ ! -x .venv/bin/python ] || ! cmp -s "$requirements" .venv/installed-requirements.txt; then
  echo "bootstrap: preparing .venv from $requirements" >&2
  python3 -m venv .venv
  (cd "$(dirname "$requirements")" && "$OLDPWD/.venv/bin/pip" install -q --disable-pip-version-check -r "$(basename "$requirements")")
  cp "$requirements" .venv/installed-requirements.txt
fi
