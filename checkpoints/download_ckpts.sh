#!/usr/bin/env bash
# Downloads Meta's official SAM 2.1 checkpoints (or SAM 2.0 with --sam2) into this folder, as Meta's own
# checkpoints/download_ckpts.sh does. grounded-sam loads them directly: GroundedSAM2(..., sam="checkpoints/sam2.1_hiera_tiny.pt").
#
#   checkpoints/download_ckpts.sh                 # all four SAM 2.1 sizes
#   checkpoints/download_ckpts.sh tiny base_plus  # only these sizes
#   checkpoints/download_ckpts.sh --sam2 large    # SAM 2.0 (July 2024) instead of 2.1
#   checkpoints/download_ckpts.sh --dry-run       # print the URLs, download nothing
#
# Florence-2 is not here: it comes from the Hugging Face hub (florence-community/Florence-2-base or -large) into the
# Hugging Face cache, with `grounded-sam models download PRESET` or `hf download florence-community/Florence-2-large`.
set -euo pipefail
cd "$(dirname "$0")"

base="https://dl.fbaipublicfiles.com/segment_anything_2/092824"
prefix="sam2.1_hiera_"
dry_run=0
sizes=()
for argument in "$@"; do
  case "$argument" in
    --sam2) base="https://dl.fbaipublicfiles.com/segment_anything_2/072824"; prefix="sam2_hiera_" ;;
    --dry-run) dry_run=1 ;;
    tiny|small|base_plus|large) sizes+=("$argument") ;;
    -h|--help) sed -n '2,11p' "$0"; exit 0 ;;
    *) echo "Unknown argument: $argument (sizes: tiny small base_plus large; flags: --sam2 --dry-run)" >&2; exit 2 ;;
  esac
done
[ ${#sizes[@]} -eq 0 ] && sizes=(tiny small base_plus large)

if command -v wget >/dev/null; then fetch=(wget --continue -O); elif command -v curl >/dev/null; then fetch=(curl -L -C - -o); else
  echo "Please install wget or curl to download the checkpoints." >&2; exit 1
fi

for size in "${sizes[@]}"; do
  file="${prefix}${size}.pt"
  url="${base}/${file}"
  if [ "$dry_run" -eq 1 ]; then echo "$url -> checkpoints/$file"; continue; fi
  echo "Downloading $file ..."
  "${fetch[@]}" "$file.part" "$url" || { echo "Failed to download $url" >&2; exit 1; }
  mv "$file.part" "$file"
done
