#!/usr/bin/env bash
# benchmarks/gpu/prepare.sh: run on a normal machine (pip reaching PyPI), from the repository root.
#
# Puts into benchmarks/gpu/wheels/ every wheel the lent GPU machine lacks, so that benchmarks/gpu/run.sh can install
# there with no index: this project's own wheel, transformers (we need >= 5.23, the machine has 5.17), supervision,
# pycocotools, and the dependencies of theirs that the machine does not have. Not torch, numpy, huggingface_hub,
# tokenizers or safetensors: the machine's versions (torch 2.11.0, numpy 2.5.2, huggingface_hub 1.33.0,
# tokenizers 0.23.2, safetensors 0.8.0) satisfy everything pinned below. Prints the list and the total size, and
# fails if the total is over 60 MiB (what travels to the machine is limited to 64 MiB, the repository included).
#
#     bash benchmarks/gpu/prepare.sh            # without PyAV (supervision imports it only to read videos)
#     WITH_AV=1 bash benchmarks/gpu/prepare.sh  # with PyAV (+33 MiB)
#
# The GPU machine: Python 3.12 (CPython, x86-64 Linux, glibc manylinux_2_28 wheels run there); its packages are
# listed in KNOWN below (the device notes' "Python packages already there" list, with the versions read there).
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
[ -f "$root/pyproject.toml" ] || root=$PWD
grep -q '^name = "grounded-sam"' "$root/pyproject.toml" || { echo "not the grounded-sam repository: $root" >&2; exit 2; }
cd "$root"
python=${PYTHON:-python3}
wheels=benchmarks/gpu/wheels
limit_mib=60

# Pins: versions that install over the GPU machine's own packages without upgrading any of them (checked below).
pins=(
  "transformers==5.24.0"   # needs huggingface-hub>=1.31,<3 (1.33.0 there), tokenizers>=0.23.1,<0.24 (0.23.2),
                           # safetensors>=0.8.0 (0.8.0), regex>=2025.10.22 (transformers 5.17 there needs the same)
  "supervision==0.31.2"    # needs av, defusedxml, pydeprecate, matplotlib, scipy, pillow, requests, pyyaml, tqdm
  "pycocotools==2.0.11"    # abi3 wheel, needs numpy
  "defusedxml==0.7.1"      # supervision imports it at import time (dataset/formats/pascal_voc.py)
  "pydeprecate==0.13.0"    # supervision imports it at import time (module "deprecate"), needs nothing
)
[ "${WITH_AV:-0}" = 1 ] && pins+=("av==19.0.2")  # imported by supervision only inside its video reader

target=(--only-binary=:all: --python-version 3.12 --implementation cp --abi cp312 --abi abi3 --abi none
        --platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 --platform manylinux_2_17_x86_64
        --platform manylinux2014_x86_64 --platform manylinux1_x86_64)

rm -rf "$wheels"
mkdir -p "$wheels"
scratch=$(mktemp -d)
trap 'rm -rf "$scratch"' EXIT

# 1. This project's wheel, built from a copy of the working tree (a build writes build/ and *.egg-info beside the
#    sources; the copy keeps them out of the checkout). Uncommitted edits are included.
echo "building the grounded-sam wheel..."
tar -c --exclude=./.git --exclude="./$wheels" --exclude='*.egg-info' --exclude=./build --exclude=./dist \
    --exclude=__pycache__ --exclude=.pytest_cache . | tar -x -C "$scratch"
"$python" -m pip wheel --quiet --no-deps --wheel-dir "$wheels" "$scratch" >/dev/null

# 2. What the GPU machine lacks, for its Python and platform; --no-deps: each dependency is named above on purpose
#    (resolving here would pull torch, numpy, ... which the machine has).
echo "downloading ${#pins[@]} wheels for CPython 3.12, manylinux x86-64..."
"$python" -m pip download --quiet --no-deps "${target[@]}" --dest "$wheels" "${pins[@]}"

# 3. Every requirement of every wheel here (markers evaluated for the GPU machine) must be met by a wheel here or by
#    a package the machine has, at the version it has where that version is known.
"$python" - "$wheels" <<'EOF'
import sys, zipfile
from pathlib import Path

try:
    from packaging.requirements import Requirement
    from packaging.utils import canonicalize_name
except ImportError:  # pip vendors packaging
    from pip._vendor.packaging.requirements import Requirement
    from pip._vendor.packaging.utils import canonicalize_name

# The GPU machine's packages (device notes, KINDS.md, read 2026-11-17); None: there, version not read.
KNOWN = {"torch": "2.11.0", "torchvision": "0.26.0", "transformers": "5.17.0", "numpy": "2.5.2",
         "huggingface-hub": "1.33.0", "tokenizers": "0.23.2", "safetensors": "0.8.0", "triton": "3.6.0",
         "accelerate": "1.15.0"}
for name in ("pillow pyyaml opencv-python-headless typer tqdm scipy matplotlib requests regex packaging rich "
             "scikit-image timm pytest psutil filelock fsspec click typing-extensions lxml").split():
    KNOWN.setdefault(name, None)
ENV = {"python_version": "3.12", "python_full_version": "3.12.3", "sys_platform": "linux", "platform_system": "Linux",
       "platform_machine": "x86_64", "os_name": "posix", "implementation_name": "cpython",
       "platform_python_implementation": "CPython", "extra": ""}

folder = Path(sys.argv[1])
here = {}
metadata = {}
for wheel in sorted(folder.glob("*.whl")):
    with zipfile.ZipFile(wheel) as archive:
        name = next(n for n in archive.namelist() if n.endswith(".dist-info/METADATA"))
        text = archive.read(name).decode()
    fields = dict(line.split(": ", 1) for line in text.splitlines()[:10] if ": " in line)
    here[canonicalize_name(fields["Name"])] = fields["Version"]
    metadata[wheel.name] = [line.split(": ", 1)[1] for line in text.splitlines() if line.startswith("Requires-Dist: ")]
    requires_python = next((l.split(": ", 1)[1] for l in text.splitlines() if l.startswith("Requires-Python: ")), "")
    if requires_python:
        from pip._vendor.packaging.specifiers import SpecifierSet
        assert "3.12.3" in SpecifierSet(requires_python), f"{wheel.name} needs Python {requires_python}"
problems, unknown = [], []
for wheel, requirements in metadata.items():
    for line in requirements:
        requirement = Requirement(line)
        if requirement.marker is not None and not requirement.marker.evaluate(ENV):
            continue  # an extra, or another platform
        name = canonicalize_name(requirement.name)
        version = here.get(name) or KNOWN.get(name)
        if name not in here and name not in KNOWN:
            problems.append(f"{wheel}: needs {line}, which neither these wheels nor the GPU machine have")
        elif version is None:
            unknown.append(f"{name} ({requirement.specifier or 'any'})")
        elif requirement.specifier and not requirement.specifier.contains(version, prereleases=True):
            problems.append(f"{wheel}: needs {line}, the GPU machine has {name} {version}")
if unknown:
    print("met by the GPU machine's own packages (versions there not recorded here):", ", ".join(sorted(set(unknown))))
if problems:
    print("\n".join(problems))
    if any("needs av" not in p for p in problems):
        sys.exit("dependency check failed")
    print("(PyAV left out: supervision imports it only to read videos; WITH_AV=1 brings it)")
EOF

# 4. The list, sizes and total; a checksum file that run.sh verifies.
(cd "$wheels" && sha256sum -- *.whl > SHA256SUMS)
total=0
printf '%10s  %s\n' "bytes" "wheel"
for wheel in "$wheels"/*.whl; do
  size=$(stat -c %s "$wheel")
  total=$((total + size))
  printf '%10d  %s\n' "$size" "$(basename "$wheel")"
done
mib=$(awk -v b="$total" 'BEGIN { printf "%.1f", b / 1048576 }')
echo "total: $total bytes = $mib MiB in $(ls "$wheels"/*.whl | wc -l) wheels ($wheels); limit $limit_mib MiB"
if [ "$total" -gt $((limit_mib * 1048576)) ]; then
  echo "over the $limit_mib MiB limit" >&2
  exit 1
fi
