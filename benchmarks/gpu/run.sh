#!/usr/bin/env bash
# benchmarks/gpu/run.sh OUTDIR [--cpu-smoke] [--no-install]: the whole GPU check in one command.
#
# On the lent GPU machine (bare: torch 2.11, transformers 5.17, no supervision/pycocotools, no package index), after
# benchmarks/gpu/prepare.sh filled benchmarks/gpu/wheels/ on a normal machine:
#   1. installs those wheels with no index (pip --target into a scratch folder put on PYTHONPATH: the machine's own
#      environment, torch included, is left as it is);
#   2. runs, in order, each under its own time limit and all under one deadline (RUN_BUDGET_S, default 530 s, so the
#      whole run ends within 9 minutes): the GPU tests (pytest -m gpu), the real-size model build, the host ceiling,
#      decoding overhead eager vs compiled, the usual loop on the default pair, the engine on the default pair
#      compiled (the ratio), the accurate pair compiled (fraction of the bf16 FLOP floor), then, if time is left, the
#      default pair eager with its stage profile;
#   3. after every step appends its figures to OUTDIR/results.jsonl and rewrites OUTDIR/summary.md, so a run cut
#      short still leaves what it measured; prints summary.md at the end (markdown, ready for BENCHMARKS.md).
#
# OUTDIR holds at most 5 plain files, no subfolder (what the device tool brings back: 8 files, simple names):
#   summary.md  results.jsonl (one JSON object per step)  run.log (every step's output)  env.txt  junit-gpu.xml
#
# --cpu-smoke: the same steps on the CPU with tiny models and a few images, in under 5 minutes (RUN_BUDGET_S 280),
# so that CI keeps the script working; installs the wheels only where they are there and the Python is 3.12.
set -uo pipefail

usage() { echo "usage: $0 OUTDIR [--cpu-smoke] [--no-install]" >&2; exit 2; }
outdir="" smoke=0 install=1
for argument in "$@"; do
  case $argument in
    --cpu-smoke) smoke=1 ;;
    --no-install) install=0 ;;
    -h|--help) usage ;;
    -*) usage ;;
    *) [ -z "$outdir" ] && outdir=$argument || usage ;;
  esac
done
[ -n "$outdir" ] || usage

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
here="$root/benchmarks/gpu"
cd "$root"
mkdir -p "$outdir" && outdir=$(cd "$outdir" && pwd)
rm -f "$outdir"/{summary.md,results.jsonl,run.log,env.txt,junit-gpu.xml}
log="$outdir/run.log"
python=${PYTHON:-python3}
work=$(mktemp -d "${TMPDIR:-/tmp}/gs-gpu.XXXXXX")
site="$work/site" models="${GS_BENCH_MODELS:-$work/models}"
trap 'rm -rf "$work"' EXIT
export PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1 TOKENIZERS_PARALLELISM=false
started_at=$(date +%s)
budget=${RUN_BUDGET_S:-$([ $smoke = 1 ] && echo 280 || echo 530)}
deadline=$((started_at + budget))
report() { "$python" "$here/report.py" "$@"; }

# step NAME LIMIT_S COMMAND: runs COMMAND (a bash string) under `timeout`, at most LIMIT_S and never past the
# deadline; its output goes to run.log (and the screen) as it comes; then its figures go to results.jsonl.
step() {
  local name=$1 limit=$2 command=$3 left begin end rc status shown
  shown=${command//"$python"/python}; shown=${shown//"$models"/MODELS}; shown=${shown//"$outdir"/OUTDIR}
  shown=${shown//"$work"/WORK}; shown=${shown//"$root"/.}; shown=${shown//\'/}
  limit=$((limit * ${RUN_LIMIT_SCALE:-1}))  # RUN_LIMIT_SCALE: more time per step on a slow or busy machine
  left=$((deadline - $(date +%s) - 5))
  [ "$left" -lt "$limit" ] && limit=$left
  if [ "$limit" -lt 20 ]; then
    echo "=== $name: skipped, ${left}s left before the deadline" | tee -a "$log"
    report record "$outdir" "$name" skipped 0 0 0 "" "$shown"
    report summary "$outdir" >/dev/null
    return 0
  fi
  echo "=== $name (at most ${limit}s): $shown" | tee -a "$log"
  : > "$work/$name.log"
  begin=$(date +%s.%N)
  timeout -k 15 "$limit" bash -c "$command" 2>&1 | tee -a "$log" "$work/$name.log"
  rc=${PIPESTATUS[0]}
  end=$(date +%s.%N)
  case $rc in 0) status=ok ;; 124|137) status=timeout ;; *) status=failed ;; esac
  [ "$name" = gpu-tests ] && [ "$rc" = 5 ] && status=skipped  # pytest: no test collected (marker not used yet)
  echo "=== $name: $status (rc $rc) in $(awk -v a="$begin" -v b="$end" 'BEGIN { printf "%.0f", b - a }')s" | tee -a "$log"
  report record "$outdir" "$name" "$status" "$rc" "$(awk -v a="$begin" -v b="$end" 'BEGIN { print b - a }')" \
    "$limit" "$work/$name.log" "$shown"
  report summary "$outdir" >/dev/null
  return 0
}

# --- 1. install --------------------------------------------------------------------------------------------------
wheels="$here/wheels"
if [ $install = 1 ] && ls "$wheels"/*.whl >/dev/null 2>&1 \
   && { [ $smoke = 0 ] || "$python" -c 'import sys; sys.exit(sys.version_info[:2] != (3, 12))'; }; then
  step install 120 "cd '$wheels' && sha256sum --quiet -c SHA256SUMS && '$python' -m pip install --no-index --no-deps \
--no-compile --no-cache-dir --upgrade --disable-pip-version-check -q --target '$site' ./*.whl && echo installed: ./*.whl"
  # PYTHONSAFEPATH: no script folder or working directory first on sys.path, so that what runs is the installed
  # wheel, not the checkout's grounded_sam/ (the benchmarks add their own folder for their sibling imports).
  export PYTHONPATH="$site${PYTHONPATH:+:$PYTHONPATH}" PYTHONSAFEPATH=1 PATH="$site/bin:$PATH"  # bin: grounded-sam
elif [ $smoke = 0 ] && [ $install = 1 ]; then
  echo "no wheels in $wheels: run benchmarks/gpu/prepare.sh on a machine with PyPI first (or --no-install)" >&2
  exit 2
else
  echo "=== install: skipped (--no-install, no wheels, or not Python 3.12): the current environment is used" | tee -a "$log"
fi

# --- 2. the machine, and a check that what the steps import is there ---------------------------------------------
step env 60 "'$python' '$here/report.py' env '$outdir' $smoke && cat '$outdir/env.txt'"
if ! grep -q '^torch:' "$outdir/env.txt" 2>/dev/null; then
  echo "the environment check failed: see $log" >&2
  report summary "$outdir"
  exit 1
fi
if [ $smoke = 0 ] && grep -q '^gpu: none' "$outdir/env.txt"; then
  echo "no CUDA device here: run with --cpu-smoke" >&2
  report summary "$outdir"
  exit 1
fi

# --- 3. the measurements, most needed first ------------------------------------------------------------------------
tests=${GPU_TESTS:-tests/test_gpu.py}  # one file: collecting tests/ whole would import nbformat etc., absent there
gpu_tests() {  # gpu_tests LIMIT_S
  if [ -e "$tests" ]; then
    step gpu-tests "$1" "'$python' -m pytest -m gpu -q -p no:cacheprovider --junitxml='$outdir/junit-gpu.xml' $tests"
  else
    step gpu-tests 1000 "echo 'no $tests yet'; exit 5"
  fi
}
# The real-size models are built (random weights, on the CPU: ~45 s, 4 GB written) in the background while the GPU
# tests run; the "models" step waits for that build and shows its output.
build() {  # build COMMAND LIMIT_S
  local shown=${1//"$python"/python}; shown=${shown//"$models"/MODELS}; shown=${shown//\'/}
  echo "=== models: building in the background: $shown" | tee -a "$log"
  (SECONDS=0; timeout -k 15 "$2" bash -c "$1" > "$work/build.log" 2>&1; rc=$?
   echo "(built in ${SECONDS}s)" >> "$work/build.log"; echo $rc > "$work/build.rc") &
}
wait_build="while [ ! -e '$work/build.rc' ]; do sleep 1; done; cat '$work/build.log'; exit \$(cat '$work/build.rc')"
bench="'$python' benchmarks/throughput.py --models '$models'"
compiled_logs="TORCH_LOGS=recompiles,perf_hints"
if [ $smoke = 0 ]; then
  build "'$python' benchmarks/real_size.py '$models' --florence large --sam base_plus large" 240
  gpu_tests 150
  step models 150 "$wait_build"
  step host 60 "$bench --sides host --images 256 --workers 8"
  step decode 120 "$compiled_logs '$python' benchmarks/decode_overhead.py --device cuda"
  step usual 90 "$bench --pair default --sides usual --images 16"
  step default-compiled 150 "$compiled_logs $bench --pair default --sides engine --images 128 --batch-size 16 --compile"
  # batch 16 as above: the Florence-2-large graphs (same shapes) come from inductor's on-disk cache, not compiled again
  step accurate 150 "$compiled_logs $bench --pair accurate --sides engine --images 256 --batch-size 16 --workers 8 --compile"
  step default-eager 90 "$bench --pair default --sides engine --images 64 --batch-size 16 --profile"
else
  tiny="--pair tiny --tokens 4"  # needs throughput.py's --pair tiny (grounded_sam.testing's tiny models)
  build "'$python' benchmarks/real_size.py '$models' --florence --sam tiny" 120
  gpu_tests 60
  step models 60 "$wait_build"
  step host 60 "$bench --sides host --images 16 --workers 2"
  step decode 90 "$compiled_logs '$python' benchmarks/decode_overhead.py --depth base --rows 2 --tokens 3 --device cpu"
  step usual 60 "$bench $tiny --sides usual --images 2 --device cpu"
  step default-compiled 150 "$compiled_logs $bench $tiny --sides engine --images 4 --batch-size 2 --compile --device cpu"
  step accurate 60 "$bench $tiny --sides engine --images 4 --batch-size 2 --workers 2 --device cpu"
  step default-eager 60 "$bench $tiny --sides engine --images 2 --batch-size 2 --profile --device cpu"
fi

echo "=== done in $(($(date +%s) - started_at))s; summary ($outdir/summary.md):" | tee -a "$log"
report summary "$outdir"
# exit status: 1 if a step failed or ran out of time (skipped steps and a missing test file do not count)
! grep -q '"status": "\(failed\|timeout\)"' "$outdir/results.jsonl"
