#!/usr/bin/env bash
# Everything that needs a GPU, in one call of at most 5 minutes on a bare H100/H200 machine:
# the CUDA tests, then one bf16 table each for generation (bench_generate.py), codec encode on
# the GPU (bench_codec.py) and training, eager and compiled (bench_train.py). Each step has its
# own `timeout`; the caps add up to 265 s (wheels 20, env 10, tests 40, generation 65, codec 30,
# training 100), leaving room for the machine's start and the transfers.
#
# Output under ${OUT:-./gpu_check_out}: one log per step (gpu_<step>.txt), the benchmarks' own
# JSON (gpu_bench_generate.json, gpu_bench_codec.json, written row by row), and gpu_check.json,
# rewritten after every step with each step's exit status and seconds, so a run cut short
# still says what finished. A failed or timed-out step does not stop the later ones; the script
# then exits 1 and names the failed steps (a failed wheel install stops it at once, exit 1).
#
# It runs from the source tree (no pip install of the project): a lent machine has PyTorch,
# NumPy, PyYAML, tqdm and pytest but no registry. Fetch the other wheels here first, then
# carry them:
#
#   bash benchmarks/device_wheels.sh                # here, once: writes .whl/
#   bash benchmarks/gpu_check.sh                    # there, carry [".whl"]
#   GPU_CHECK_DRY_RUN=1 bash benchmarks/gpu_check.sh   # anywhere: every step on the CPU
#                                                      # with tiny sizes (checks the script)
#
# Without CUDA and without GPU_CHECK_DRY_RUN=1 it stops at once with exit status 2.
set -euo pipefail
out="${OUT:-./gpu_check_out}"
py="${PYTHON:-python3}"
dry="${GPU_CHECK_DRY_RUN:-0}"
mkdir -p "$out"
export PYTHONUNBUFFERED=1 PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
status="$out/gpu_check.json"
steps=""
failed=""

record() { # name rc seconds: append the step and rewrite gpu_check.json
    steps="${steps:+$steps,}
  {\"step\": \"$1\", \"rc\": $2, \"seconds\": $3}"
    printf '{"dry_run": %s, "steps": [%s\n]}\n' "$([ "$dry" = 1 ] && echo true || echo false)" \
        "$steps" >"$status.tmp"
    mv "$status.tmp" "$status"
}

step() { # name cap_seconds command...: run with a timeout, log, record; never aborts the script
    local name="$1" cap="$2" start rc
    shift 2
    echo "== gpu_check: $name (cap ${cap} s)"
    start=$(date +%s)
    set +e
    timeout "$cap" "$@" 2>&1 | tee "$out/gpu_$name.txt"
    rc=${PIPESTATUS[0]}
    set -e
    record "$name" "$rc" "$(($(date +%s) - start))"
    if [ "$rc" -ne 0 ]; then
        echo "== gpu_check: $name FAILED (exit $rc$([ "$rc" -eq 124 ] && echo ', timed out'))" >&2
        failed="$failed $name"
    fi
}

if [ -d .whl ]; then
    if ! timeout 20 "$py" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir \
        --upgrade --target /tmp/site .whl/*.whl; then
        record wheels 1 0
        echo "gpu_check: the wheels in .whl/ do not install on $("$py" -V 2>&1);" \
            "rerun benchmarks/device_wheels.sh with PYVER set to that version" >&2
        exit 1
    fi
    export PYTHONPATH="/tmp/site:$PYTHONPATH"
    record wheels 0 0
fi

if [ "$dry" = 1 ]; then
    dev=cpu
elif "$py" -c "import torch, sys; sys.exit(0 if torch.cuda.is_available() else 1)"; then
    dev=cuda
else
    echo "gpu_check: no CUDA device here (run with GPU_CHECK_DRY_RUN=1 to check the script" \
        "on the CPU)" >&2
    exit 2
fi

step env 10 bash -c "nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv \
    || echo 'no nvidia-smi'; $py -c \"import torch; print('torch', torch.__version__, \
    'cuda', torch.cuda.is_available())\""

# --noconftest: the shared fixtures build RMOD libraries (rmod's audio stack is not there);
# the CUDA tests use only tests/dose_fixtures.py. On the CPU (dry run) they are all skipped.
step tests 40 "$py" -m pytest -q -p no:cacheprovider --noconftest tests/dose_model/test_decode.py \
    tests/dose_model/test_generate.py tests/dose_model/test_dac_codec.py tests/dose_model/test_model.py tests/dose_model/test_extract.py \
    -m 'gpu and not slow' -rs

if [ "$dev" = cuda ]; then
    gen_args=(--batches 1,64,256,1024 --precisions fp32,bf16 --eager-max-batch 64 --repeats 1)
    codec_args=(--device cuda --batch-sizes 16,64 --modes fp32,bf16 --repeats 3)
    train_args=(--precisions bf16 --compile --steps 10 --warmup 3 --repeats 1)
else
    gen_args=(--device cpu --batches 1,2 --max-len 6 --layers 1 --d-model 32 --heads 2)
    codec_args=(--device cpu --batch-sizes 1 --seconds 0.5 --repeats 1)
    train_args=(--device cpu --precisions bf16 --steps 1 --warmup 0 --repeats 1 --layers 1
        --d-model 32 --heads 2 --batch-size 2 --target-frames 8)
fi
step bench_generate 65 "$py" benchmarks/bench_generate.py "${gen_args[@]}" \
    --json "$out/gpu_bench_generate.json"
step bench_codec 30 "$py" benchmarks/bench_codec.py "${codec_args[@]}" \
    --json "$out/gpu_bench_codec.json"
step bench_train 100 "$py" benchmarks/bench_train.py "${train_args[@]}"

if [ -n "$failed" ]; then
    echo "gpu_check: failed steps:$failed (logs and gpu_check.json in $out)" >&2
    exit 1
fi
echo "gpu_check: all steps passed (logs and gpu_check.json in $out)"
