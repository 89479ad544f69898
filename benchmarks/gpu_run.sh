#!/usr/bin/env bash
# The GPU checks and benchmarks in one go, for a lent GPU machine whose Python already holds torch
# (the missing pure-Python packages travel as wheels in .whl/). Everything it writes goes to $OUT.
#   bash benchmarks/gpu_run.sh        (OUT defaults to ./gpu-out)
set -u
OUT=${OUT:-gpu-out}
mkdir -p "$OUT"
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl || exit 1
export PYTHONPATH=/tmp/site:$PWD PYTHONUNBUFFERED=1
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv
python3 -c "import torch, torchvision; print('torch', torch.__version__, 'torchvision', torchvision.__version__)"
# 1. The CUDA tests: every method on CUDA against the CPU, state, memory, half precision, the runner.
timeout 180 python3 -m pytest -q -p no:cacheprovider -rs tests/test_cuda.py tests/test_robustness.py \
  "tests/test_evaluate.py::test_runs_on_gpu_with_the_same_values" 2>&1 | tee "$OUT/gpu_tests.log"
# 2. Method speed against the floor, pytorch-grad-cam and torchcam.
timeout 200 python3 benchmarks/bench_methods.py --device cuda --out "$OUT/methods_cuda.md" 2>&1 | tail -n 12
# 3. The runner's per-image cost on resnet50 and the ImageNet projection.
timeout 160 python3 benchmarks/bench_evaluate.py --device cuda --out "$OUT/evaluate_cuda.md" 2>&1 | tail -n 5
# 4. The rest of the suite on this machine's Python and torch (the notebooks, browser, Binder and
#    Ray tests need packages that are not here).
timeout 120 python3 -m pytest -q -p no:cacheprovider -n 8 tests --ignore=tests/test_notebooks.py \
  --ignore=tests/test_browser.py --ignore=tests/test_binder.py --ignore=tests/test_ray.py -rfE 2>&1 | tail -n 40 | tee "$OUT/suite.log"
