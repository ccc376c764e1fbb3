#!/usr/bin/env bash
# The prepared GPU run, for one call of a short GPU lease on a machine with the project's
# dependencies (torch with CUDA, triton) but no network:
# install the project, check the Triton kernels and the fast path on CUDA against the reference,
# time the CUDA suite, and print its summary table last. Logs and JSON go to $OUT (or /tmp/out).
#   bash benchmarks/gpu_session.sh
set -euo pipefail
out="${OUT:-/tmp/out}"
mkdir -p "$out"
export PYTHONUNBUFFERED=1
python -m pip install -q --no-deps --no-build-isolation -e .
python -m pytest -q -x -p no:cacheprovider tests/test_triton_window.py \
    tests/test_fast_propagation.py 2>&1 | tee "$out/kernel-tests.log" | tail -n 3
python -m benchmarks.latency --device cuda --sizes 480p --batches 1 --dims 256,1280 \
    --contexts 50 --warmup 3 --runs 20 --e2e-frames 240 --memory-lengths 100,1000,10000 \
    --memory-grid 60x107 --agreement-frames 40 \
    --backends torch-eager-fp32,torch-eager-half-cl,torch-cudagraphs-half-cl,torch-compile,torch-compile-cudagraphs,torchscript \
    --out "$out/cuda-480p" 2>&1 | tee "$out/latency.log" | sed -n '/\*\*Summary\*\*/,$p'
