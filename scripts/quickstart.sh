#!/usr/bin/env bash
# The main job from a fresh clone: a virtual environment in .venv with grounded-sam installed, then the sample photos
# in samples/ labeled with ontologies/samples.yaml into samples_labeled/ (YOLO-seg + COCO), with its review page.
#
# The first run downloads the fast preset (Florence-2-base and SAM 2.1 tiny, about 1 GB) into the Hugging Face cache.
# GROUNDED_SAM_MODELS=tiny uses tiny random models written locally instead: nothing is downloaded, and the labels
# mean nothing. A second run resumes (nothing left to do); VENV=... puts the environment elsewhere.
set -euo pipefail
cd "$(dirname "$0")/.."
venv="${VENV:-.venv}"
[ -x "$venv/bin/python" ] || python3 -m venv "$venv"
"$venv/bin/python" -m pip install --quiet --upgrade pip
"$venv/bin/python" -m pip install --quiet -e .
models=(--preset fast)
if [ "${GROUNDED_SAM_MODELS:-}" = tiny ]; then
  if [ ! -d .tiny_models ]; then  # written into a new folder and renamed: an interrupted build never looks complete
    partial=$(mktemp -d .tiny_models.XXXXXX)  # new each time: nothing is ever deleted to make room
    "$venv/bin/grounded-sam" models tiny "$partial"
    mv "$partial" .tiny_models
  fi
  models=(--florence .tiny_models/florence --sam .tiny_models/sam)
fi
"$venv/bin/grounded-sam" label samples --ontology ontologies/samples.yaml -o samples_labeled --review "${models[@]}"
echo "Open samples_labeled/review/index.html in a browser; the dataset is in samples_labeled/."
