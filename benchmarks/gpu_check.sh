#!/usr/bin/env bash
# Everything that needs a GPU, in one call (about 5 minutes on an H100/H200): the CUDA tests,
# then the codec benchmark (CPU, then GPU) and the training benchmark (published replica vs
# ours, fp32 and bf16, batch 64). Each benchmark prints its ratios against a baseline measured
# in the same run; the training table is taken eager and compiled. Logs go to ${OUT:-.}/gpu_*.txt.
#
#   bash benchmarks/gpu_check.sh            # from the repository root, with the package installed
set -u
out="${OUT:-.}"
mkdir -p "$out"
python -c "import torch; print('torch', torch.__version__, 'cuda', torch.cuda.is_available())" \
    | tee "$out/gpu_env.txt"
python -m pytest -q -p no:cacheprovider tests/test_dac_codec.py tests/test_generate.py \
    tests/test_train.py -k "cuda" 2>&1 | tee "$out/gpu_tests.txt"
python benchmarks/bench_codec.py --json "$out/gpu_bench_codec.json" 2>&1 | tee "$out/gpu_bench_codec.txt"
python benchmarks/bench_train.py 2>&1 | tee "$out/gpu_bench_train.txt"
# The same table with torch.compile on both steps (fusion is where eager PyTorch leaves most time).
python benchmarks/bench_train.py --compile 2>&1 | tee "$out/gpu_bench_train_compile.txt"
