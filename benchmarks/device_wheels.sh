#!/usr/bin/env bash
# Download, here, the wheels that benchmarks/gpu_check.sh needs on a lent GPU machine that has
# PyTorch but no package registry: soundfile (read by the test fixtures) and what it needs.
# They go to .whl/ (keep it out of git: `echo /.whl/ >> .git/info/exclude`); the device call
# carries .whl and gpu_check.sh installs them to /tmp/site.
#
#   bash benchmarks/device_wheels.sh            # from the repository root, once
#   PYVER=3.13 bash benchmarks/device_wheels.sh # if the lent machine's python3 is not 3.12
set -euo pipefail
python3 -m pip download -q --no-deps --only-binary=:all: --python-version "${PYVER:-3.12}" \
    --implementation cp --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 \
    --platform manylinux2014_x86_64 -d .whl \
    soundfile==0.13.1 cffi==2.0.0 pycparser==2.23
ls .whl
