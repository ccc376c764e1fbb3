#!/usr/bin/env bash
# The benchmark suite's GPU figures in one time-budgeted command for a CUDA machine. Each part
# runs in its own process under `timeout` and writes its JSON as soon as it finishes; after every
# part the results so far are merged into OUT/run (latency.json, latency.md, plots; each part's
# own in OUT/parts) and a line is added to OUT/status.jsonl, so a run stopped at its budget, a
# failing test or a part that crashes (a Triton build, say) keeps what was done. Parts, in
# order, with the estimate for an H100/H200 (not yet measured there):
#   tests        the CUDA kernel tests, tests/test_triton_window.py              ~1 min
#   propagation  480p, 1+50: the dense reference (fp32), fast PyTorch and fast Triton with
#                fp32, fp16 and bf16 features, 256-d and 1280-d                   ~1.5 min
#   e2e          240 generated frames, fp16, CUDA-graph encoder, Triton kernel, after an
#                untimed 60-frame warm-up: with decoding and writing, compute only, device only
#                                                                                 ~1 min
#   memory       100 and 1,000 frames, features drawn on the GPU                  ~0.3 min
#   agreement    fast vs dense reference masks on 20 bmx-trees frames, fp32/fp16/bf16, per
#                backend, where a DAVIS-2016 tree is found (--davis; skipped otherwise)  ~1 min
#   encoders     eager fp32/fp16, CUDA graphs, TorchScript, then torch.compile    ~2 min
# About 7 minutes in all; the part timeouts never add up to more than --budget seconds. The exit
# status is 0 when every part ran and passed, 1 otherwise (status.jsonl says which did not).
#
#   bash benchmarks/gpu/benchmark.sh                        # on the CUDA machine
#   bash benchmarks/gpu/benchmark.sh --smoke --device cpu   # the same parts, tiny, on a CPU
# Options:
#   --out DIR         where results go (benchmarks/results/gpu)
#   --budget SECONDS  the whole run's time limit (540)
#   --device DEVICE   cuda (default) or cpu
#   --smoke           tiny sizes, for a CPU; no agreement part unless --davis is given
#   --davis DIR       a DAVIS-2016 root for the agreement part (default: /tmp/hvc-bundle/data/
#                     davis2016, where `python -m benchmarks.gpu.bundle unpack` puts it)
#   --python PYTHON   the interpreter (python3)
# HVC_COMMIT names the commit where the project was copied without .git.
set -uo pipefail
root="$(cd "$(dirname "$0")/../.." && pwd)"
py=python3
out="$root/benchmarks/results/gpu"
device=cuda
smoke=0
budget=540
davis=/tmp/hvc-bundle/data/davis2016
davis_given=0
while (($#)); do
    case $1 in
    --out | --budget | --device | --davis | --python)
        (($# >= 2)) || { echo "error: $1 needs a value" >&2; exit 2; }
        case $1 in
        --out) out=$2 ;;
        --budget) budget=$2 ;;
        --device) device=$2 ;;
        --davis) davis=$2 davis_given=1 ;;
        --python) py=$2 ;;
        esac
        shift 2
        ;;
    --smoke) smoke=1 && shift ;;
    -h | --help) sed -n '2,/^set /{/^set /d;s/^# \{0,1\}//;p}' "$0" && exit 0 ;;
    *) echo "error: unknown option $1 (see --help)" >&2 && exit 2 ;;
    esac
done
if ! [[ $budget =~ ^[0-9]+$ ]]; then
    echo "error: --budget $budget: a whole number of seconds" >&2
    exit 2
fi
mkdir -p "$out"
out="$(cd "$out" && pwd)"
[[ -d $davis ]] && davis="$(cd "$davis" && pwd)"
cd "$root"
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
if [[ -z "${HVC_COMMIT:-}" ]]; then
    HVC_COMMIT="$(git rev-parse HEAD 2>/dev/null || echo unknown)"
fi
export HVC_COMMIT
began=$SECONDS
incomplete=0  # set when a part fails, is cut off or gets no time: the exit status

# part NAME LIMIT_S COMMAND...: run under a timeout (at most what is left of the budget, less
# 20 s to merge), log to $out/NAME.log, record the outcome, merge what exists so far
part() {
    local name=$1 limit=$2 left rc start
    shift 2
    left=$((budget - (SECONDS - began) - 20))
    ((limit > left)) && limit=$left
    if ((limit < 10)); then
        printf '{"part": "%s", "rc": null, "seconds": 0, "skipped": "no time left"}\n' \
            "$name" >>"$out/status.jsonl"
        incomplete=1
        return
    fi
    echo "== $name (≤ ${limit} s)"
    start=$SECONDS
    timeout -k 10 "$limit" "$@" >"$out/$name.log" 2>&1
    rc=$?
    ((rc == 0)) || incomplete=1
    printf '{"part": "%s", "rc": %d, "seconds": %d, "timed_out": %s}\n' "$name" "$rc" \
        $((SECONDS - start)) "$([[ $rc == 124 || $rc == 137 ]] && echo true || echo false)" \
        >>"$out/status.jsonl"
    tail -n 2 "$out/$name.log"
    "$py" -m benchmarks.report "$out/run" "$out"/parts/*/latency.json >>"$out/merge.log" 2>&1
}

bench=("$py" -m benchmarks.latency --device "$device")  # each part into $out/parts/NAME

if [[ $smoke == 1 ]]; then
    tests=(-k "small or long_term")
    sizes=(--sizes 64x96 --dims 256 --contexts 3 --warmup 0 --runs 2)
    dtypes=fp32,bf16
    e2e=(--e2e-frames 6 --e2e-size 64x96 --e2e-precision fp32 --e2e-warmup-frames 2)
    memory=(--memory-lengths 5,20 --memory-grid 4x6)
    encoders=(--sizes 64x96 --batches 1 --warmup 0 --runs 2
        --backends torch-eager-fp32,torch-eager-half-cl,torch-cudagraphs-half-cl,torch-compile-cudagraphs)
    agreement=(--agreement-frames 3 --precisions fp32)
    ((davis_given)) || davis=""  # the dense reference at 480p takes minutes a frame on a CPU
    export TRITON_INTERPRET=1  # kernel tests in Triton's interpreter
else
    tests=()
    sizes=(--sizes 480p --dims 256,1280 --contexts 50 --warmup 3 --runs 20)
    dtypes=fp32,fp16,bf16
    e2e=(--e2e-frames 240 --e2e-precision fp16 --e2e-cuda-graphs --e2e-kernel triton
        --e2e-warmup-frames 60)
    memory=(--memory-lengths 100,1000 --memory-grid 60x107)
    agreement=(--agreement-frames 20)
    encoders=(--sizes 480p --batches 1 --warmup 3 --runs 20
        --backends torch-eager-fp32,torch-eager-half-cl,torch-cudagraphs-half-cl,torchscript,torch-compile,torch-compile-cudagraphs)
fi

{
    echo "commit $HVC_COMMIT, device $device, smoke $smoke"
    "$py" -c "import sys, torch; print(sys.version.split()[0], 'torch', torch.__version__)"
    "$py" -c "import triton; print('triton', triton.__version__)" || echo "triton: not importable"
    [[ $device == cuda ]] && nvidia-smi --query-gpu=name,driver_version --format=csv,noheader
} >"$out/environment.txt" 2>&1

part tests 150 "$py" -m pytest -q -p no:cacheprovider tests/test_triton_window.py "${tests[@]}" \
    --junitxml="$out/tests.xml"
part propagation 150 "${bench[@]}" --out "$out/parts/propagation" --propagation "${sizes[@]}" \
    --feature-dtypes "$dtypes" --implementations reference,fast,fast-triton
part e2e 150 "${bench[@]}" --out "$out/parts/e2e" --e2e "${e2e[@]}" --implementations fast-triton \
    --no-e2e-davis
part memory 60 "${bench[@]}" --out "$out/parts/memory" --memory "${memory[@]}" \
    --implementations fast-triton
part agreement 90 "${bench[@]}" --out "$out/parts/agreement" --agreement "${agreement[@]}" \
    --davis "${davis:-none-given}" --implementations fast-triton
part encoders 240 "${bench[@]}" --out "$out/parts/encoders" --encoder "${encoders[@]}" \
    --implementations fast-triton
echo "== $((SECONDS - began)) s; parts:"
cat "$out/status.jsonl"
sed -n '/\*\*Summary\*\*/,$p' "$out/run/latency.md" 2>/dev/null
exit $incomplete
