#!/usr/bin/env bash
# Every test, from a fresh clone: a virtual environment with every test extra (Meta's sam2 built against the
# installed torch, autodistill, Ray, the app), Debian's Chromium for the browser tests, the linter, then pytest with
# the Hugging Face hub offline. Arguments go to pytest (e.g. -m "not slow").
#
# VENV=... puts the environment elsewhere (default .venv-test); it is reused once complete.
set -euo pipefail
cd "$(dirname "$0")/.."
venv="${VENV:-.venv-test}"
# A venv cannot be moved after creation (its scripts hold its path), so it is built in place and marked complete
# only once every install step below succeeded; an unmarked one is rebuilt.
if [ ! -f "$venv/.complete" ]; then
  rm -rf "$venv"
  python3 -m venv "$venv"
  "$venv/bin/python" -m pip install --quiet --upgrade pip
fi
# shellcheck disable=SC1091
source "$venv/bin/activate"
python -m pip install --quiet -e ".[dev,autodistill,ray,app]"
# Meta's sam2 is a source package built against the torch installed above: no second torch, no CUDA extension.
python -m pip install --quiet "setuptools>=77" wheel
SAM2_BUILD_CUDA=0 python -m pip install --quiet --no-build-isolation -e ".[parity]"
touch "$venv/.complete"
if ! command -v chromium >/dev/null; then
  sudo_cmd=$([ "$(id -u)" = 0 ] || echo sudo)  # no sudo when already root (containers, CI)
  $sudo_cmd apt-get update -qq && DEBIAN_FRONTEND=noninteractive $sudo_cmd apt-get install -y -qq chromium >/dev/null
fi
ruff check .
ruff format --check .
export HF_HUB_OFFLINE=1  # nothing may reach for the Hugging Face hub
python -m pytest -q "$@"
