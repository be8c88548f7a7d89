#!/usr/bin/env bash
# Everything that needs a GPU, in one call (under 10 minutes on an H100/H200): the CUDA tests,
# the training benchmark (published replica vs ours, batch 64: fp32 and bf16 eager, then bf16
# eager and compiled) and the codec benchmark (CPU, then GPU). Each benchmark prints its ratios
# against a baseline measured in the same run. Logs go to ${OUT:-.}/gpu_*.txt.
#
# It runs from the source tree (no pip install): a lent machine has PyTorch, NumPy, PyYAML,
# tqdm and pytest but no registry. Fetch the other wheels here first, then carry them:
#
#   bash benchmarks/device_wheels.sh                       # here, once: writes .whl/
#   bash benchmarks/gpu_check.sh                           # there, carry [".whl"]; the steps
#                                                          # are capped at 90+150+240+90 s
set -u
out="${OUT:-.}"
mkdir -p "$out"
export PYTHONUNBUFFERED=1 PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
if [ -d .whl ]; then
    if python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
        --target /tmp/site .whl/*.whl; then
        export PYTHONPATH="/tmp/site:$PYTHONPATH"
    else
        echo "gpu_check: the wheels in .whl/ do not install on $(python3 -V);" \
            "rerun benchmarks/device_wheels.sh with PYVER set to that version" >&2
    fi
fi
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv 2>&1 | tee "$out/gpu_env.txt"
python3 -c "import torch; print('torch', torch.__version__, 'cuda', torch.cuda.is_available())" \
    2>&1 | tee -a "$out/gpu_env.txt"
# --noconftest: the shared fixtures build RMOD libraries (rmod's audio stack is not there);
# the CUDA tests use only tests/dose_fixtures.py.
timeout 90 python3 -m pytest -q -p no:cacheprovider --noconftest tests/test_dac_codec.py \
    tests/test_generate.py tests/test_train.py tests/test_model.py tests/test_extract.py \
    -k cuda -rs 2>&1 | tee "$out/gpu_tests.txt"
# The table first (eager, fp32 and bf16, ratios to the published eager row of the same
# precision), then bf16 again with compiled rows (compiling takes a minute or two per model),
# then the codec. Each step is capped so that a slow one still leaves the others' logs.
timeout 150 python3 benchmarks/bench_train.py 2>&1 | tee "$out/gpu_bench_train.txt"
timeout 240 python3 benchmarks/bench_train.py --precisions bf16 --compile 2>&1 \
    | tee "$out/gpu_bench_train_compile.txt"
timeout 90 python3 benchmarks/bench_codec.py --json "$out/gpu_bench_codec.json" 2>&1 \
    | tee "$out/gpu_bench_codec.txt"
