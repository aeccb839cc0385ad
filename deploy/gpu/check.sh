#!/usr/bin/env bash
# The GPU worker path and `skuai bench` on a PyTorch/JAX CUDA image without TensorFlow (see
# deploy/README.md, "Keras backends"). Run from the repository root with the wheels of what the
# image lacks in .whl/ (py3.12 manylinux x86_64); writes at most 8 files to $OUT.
#   OUT=/tmp/out bash deploy/gpu/check.sh [backends...]   (default: jax torch)
set -uo pipefail
OUT=${OUT:-/tmp/skuai-gpu-out}
BUDGET_S=${BUDGET_S:-420}        # the whole script, install included
IMAGES=${IMAGES:-256}            # bench and worker-path images
SIZE=${SIZE:-224}
if (( $# )); then BACKENDS=("$@"); else BACKENDS=(jax torch); fi
PY=${PY:-python3}
mkdir -p "$OUT"
START=$(date +%s)
left() { echo $((BUDGET_S - ($(date +%s) - START))); }
exec > >(tee "$OUT/check.log") 2>&1

echo "== install the wheels the image lacks"
MISSING=$($PY - <<'PY'
import glob, importlib.metadata as md, re
for wheel in sorted(glob.glob(".whl/*.whl")):
    name = re.sub(r"[-_.]+", "-", wheel.split("/")[-1].split("-")[0]).lower()
    try:
        md.version(name)  # the image's own copy wins: never shadow numpy, jax or torch deps
    except md.PackageNotFoundError:
        print(wheel)
PY
)
# shellcheck disable=SC2086
[[ -n $MISSING ]] && $PY -m pip install -q --no-index --no-deps --no-compile --no-cache-dir \
  --upgrade --target /tmp/site $MISSING
export PYTHONPATH=/tmp/site:$PWD
export SKUAI_HOME=${SKUAI_HOME:-/tmp/skuai-home}
export XLA_PYTHON_CLIENT_PREALLOCATE=false
# the bench, its worker and its sync baseline compile the same programs: compile them once
export JAX_COMPILATION_CACHE_DIR=$SKUAI_HOME/jax-cache
echo "installed: $(echo "$MISSING" | wc -w) wheels in $(( $(date +%s) - START )) s"

{
  nvidia-smi || echo "nvidia-smi: not available"
  $PY -c "import sys; print(sys.version)"
  $PY -m pip list 2>/dev/null | grep -iE "^(jax|jaxlib|torch|keras|numpy|celery|redis|flask|pydantic|click) "
  for b in "${BACKENDS[@]}"; do
    KERAS_BACKEND=$b timeout 120 $PY - <<'PY'
import sys, keras
from worker.devices import configure_devices
print(keras.backend.backend(), "keras", keras.__version__, "gpus:", configure_devices(),
      "tensorflow imported:", "tensorflow" in sys.modules)
PY
  done
} > "$OUT/env.txt" 2>&1
cat "$OUT/env.txt"

# SIGINT, not SIGTERM: `skuai bench` then stops the stack it started (API, worker, Redis)
run() { local limit=$1; shift; timeout -s INT -k 20 "$limit" "$@"; }
for b in "${BACKENDS[@]}"; do
  if (( $(left) < 90 )); then echo "== $b: skipped, $(left) s left"; continue; fi
  echo "== $b: the worker path ($(left) s left)"
  limit=$(( $(left) / 3 < 150 ? $(left) / 3 : 150 ))
  KERAS_BACKEND=$b run "$limit" $PY deploy/gpu/worker_path.py "$OUT/worker-$b.json" \
    --images "$IMAGES" --size "$SIZE" || echo "worker path on $b failed or timed out: $?"
  # a backend after this one keeps 100 s for its worker path
  limit=$(( $(left) - 10 ))
  [[ $b != "${BACKENDS[-1]}" ]] && limit=$(( $(left) - 100 ))
  if (( limit < 60 )); then echo "== $b: bench skipped, $(left) s left"; continue; fi
  echo "== $b: skuai bench --size $SIZE --images $IMAGES ($(left) s left)"
  KERAS_BACKEND=$b run "$limit" $PY -m skuai bench --size "$SIZE" --images "$IMAGES" \
    --precisions fp32 --out "$OUT/bench-$b.json" || echo "bench on $b failed or timed out: $?"
done
tar czf "$OUT/logs.tar.gz" -C "$SKUAI_HOME" logs 2>/dev/null
echo "== done in $(( $(date +%s) - START )) s; files: $(ls "$OUT" | tr '\n' ' ')"
