#!/usr/bin/env bash
# The GPU check, in two steps.
#
#   scripts/gpu-check.sh pack        on the build machine (no GPU needed): builds the GPU test,
#                                    the fused-op benchmark and the spangrad binary with
#                                    --features cuda,cudnn (release) and packs them, compressed,
#                                    into .gpu-pack/ (git-ignored, well under 64 MiB).
#   scripts/gpu-check.sh run [DIR]   on a machine with an NVIDIA GPU, the CUDA 13 libraries,
#                                    PyTorch + transformers (whose wheels bring libcudnn) and no
#                                    Rust, from the repository root: prints the GPU and cuDNN,
#                                    runs the GPU tests with cuDNN's attention and, for the half-
#                                    precision model tests, without it; the fallback when cuDNN
#                                    cannot be opened; the fused-op benchmark; the CLI; `spangrad
#                                    bench` beside PyTorch (tools/reference/bench_pytorch.py) in
#                                    bf16 and f32, at 64 x 384 and on mixed lengths; and `spangrad
#                                    bench-serve` at 1, 8 and 64 clients; `spangrad bench-evaluate`
#                                    beside the ferret-style loop. Writes DIR/gpu-check.md
#                                    (default: $OUT, else .gpu-pack/). About 7 minutes on an H100.
set -euo pipefail
cd "$(dirname "$0")/.."
PACK=.gpu-pack

pack() {
    # shellcheck source=scripts/cuda-env.sh
    source scripts/cuda-env.sh
    local json
    json=$(mktemp)
    cargo build --release --features cuda,cudnn --bin spangrad --test gpu --test backward --bench ops \
        --message-format=json-render-diagnostics >"$json"
    rm -rf "$PACK" && mkdir -p "$PACK/bin"
    # The executables cargo just built, by target name.
    python3 - "$json" "$PACK/bin" <<'PY'
import json, shutil, sys
for line in open(sys.argv[1]):
    msg = json.loads(line)
    if msg.get("reason") == "compiler-artifact" and msg.get("executable"):
        name = msg["target"]["name"]
        if name in ("spangrad", "gpu", "backward", "ops"):
            shutil.copy(msg["executable"], f"{sys.argv[2]}/{name}")
PY
    rm -f "$json"
    strip "$PACK"/bin/*
    # The Python package with the same features, its wheel abi3 (any Python from 3.9); the same
    # flags as above, so that cargo reuses what it built (--strip would rebuild everything).
    local pyenv="$HOME/.cache/spangrad/pyenv"
    [ -x "$pyenv/bin/maturin" ] || { python3 -m venv "$pyenv" && "$pyenv/bin/pip" install -q "maturin>=1.9,<2"; }
    # The CUDA libraries are the GPU machine's (LD_LIBRARY_PATH below), not copied into the wheel.
    "$pyenv/bin/maturin" build -q --release --auditwheel skip -m python/Cargo.toml --features cudnn \
        -o "$PACK/bin"
    # Unpacked (importable from PYTHONPATH as it is): its library then shares the binaries' code
    # in one xz dictionary large enough to hold them all: 13 MB for the five, 49 MB with xz's
    # default dictionary (2026-12-02).
    python3 -m zipfile -e "$PACK"/bin/spangrad-*.whl "$PACK/bin/python" && rm "$PACK"/bin/spangrad-*.whl
    strip --strip-unneeded "$PACK"/bin/python/spangrad/*.so
    ls -la "$PACK/bin"
    tar -C "$PACK" -cf - bin | xz -9 -T2 --lzma2=preset=9,dict=256MiB >"$PACK/bin.tar.xz"
    rm -rf "$PACK/bin"
    du -h "$PACK/bin.tar.xz"
}

# Directories holding the CUDA 13 user-space libraries: a toolkit, or a PyTorch install's wheels.
cuda_libs() {
    local dirs=()
    for d in /usr/local/cuda/lib64 /usr/local/cuda/targets/x86_64-linux/lib; do
        [ -e "$d/libcublas.so.13" ] && dirs+=("$d")
    done
    # The driver library, where the driver is mounted rather than installed.
    for d in /usr/local/nvidia/lib64 /usr/local/nvidia/lib; do
        [ -e "$d/libcuda.so.1" ] && dirs+=("$d")
    done
    local site
    for py in python3 /opt/torch/.venv/bin/python3; do
        site=$("$py" -c 'import nvidia, os; print(os.path.dirname(list(nvidia.__path__)[0]))' 2>/dev/null) || continue
        for d in "$site"/nvidia/cu13/lib "$site"/nvidia/*/lib; do
            [ -d "$d" ] && dirs+=("$d")
        done
        break
    done
    local IFS=:
    echo "${dirs[*]}"
}

run() {
    local out=${1:-${OUT:-$PACK}}
    mkdir -p "$out"
    local report="$out/gpu-check.md"
    local work
    work=$(mktemp -d)
    tar -C "$work" -xJf "$PACK/bin.tar.xz"
    export LD_LIBRARY_PATH="$(cuda_libs)${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
    export SPANGRAD_FIXTURES="$PWD/tests/fixtures"
    local gpu
    gpu=$(nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader)
    echo "LD_LIBRARY_PATH=$LD_LIBRARY_PATH"
    {
        echo "# spangrad GPU check, $(date -u +%Y-%m-%dT%H:%M:%SZ)"
        echo
        echo "GPU: $gpu"
        echo
    } | tee "$report"
    # Each step runs whatever the one before gave; the exit code reports any failure.
    local failed=0
    local cudnn
    cudnn=$(python3 -c 'import nvidia.cudnn, os; print(os.path.dirname(nvidia.cudnn.__file__))' 2>/dev/null || true)
    echo "cuDNN: ${cudnn:-not found} $(ls "$cudnn"/lib/libcudnn.so.* 2>/dev/null | head -1 | xargs -r basename)" | tee -a "$report"
    local bin="$work/bin/spangrad"
    local cli=(explain --device cuda --model tests/fixtures/bert-tiny
        --question "Who wrote the novel?"
        --context "The novel was written by Jane Austen in 1813 and published in London.")
    # A GPU test that finds no GPU (or no cuDNN) fails here instead of skipping.
    export SPANGRAD_REQUIRE_GPU=1
    echo "## GPU tests, cuDNN's attention on (SPANGRAD_CUDNN=1, required)" | tee -a "$report"
    SPANGRAD_CUDNN=1 SPANGRAD_REQUIRE_CUDNN=1 "$work/bin/gpu" --test-threads=1 \
        >"$out/gpu-tests.log" 2>&1 || failed=1
    SPANGRAD_CUDNN=1 "$work/bin/backward" --test-threads=1 _gpu >>"$out/gpu-tests.log" 2>&1 || failed=1
    grep -E '^test |test result|SKIPPED|panicked|cuDNN attention:' "$out/gpu-tests.log" | tee -a "$report"
    echo "## The half-precision model tests on spangrad's attention kernels (SPANGRAD_CUDNN unset)" | tee -a "$report"
    "$work/bin/backward" --test-threads=1 half_precision_tracks_f32_gpu \
        >"$out/gpu-tests-kernels.log" 2>&1 || failed=1
    "$work/bin/gpu" --test-threads=1 bf16_explanations_on_the_gpu_track_f32 \
        >>"$out/gpu-tests-kernels.log" 2>&1 || failed=1
    grep -E '^test |test result|SKIPPED|panicked' "$out/gpu-tests-kernels.log" | tee -a "$report"
    echo "## Fallback: SPANGRAD_CUDNN naming a library that is not there" | tee -a "$report"
    local plain fallback warnings
    plain=$("$bin" "${cli[@]}" 2>/dev/null) || failed=1
    fallback=$(SPANGRAD_CUDNN=/nonexistent/libcudnn.so.9 "$bin" "${cli[@]}" 2>"$out/fallback.err") || failed=1
    warnings=$(grep -c 'cannot be used' "$out/fallback.err" || true)
    if [ "$plain" = "$fallback" ] && [ "$warnings" = 1 ]; then
        echo "fallback: passed (same answer and scores, one warning: $(head -1 "$out/fallback.err"))" | tee -a "$report"
    else
        echo "fallback: FAILED ($warnings warnings; outputs equal: $([ "$plain" = "$fallback" ] && echo yes || echo no))" | tee -a "$report"
        failed=1
    fi
    echo "## Fused ops against their slow twins (criterion, bf16, 64 x 384 tokens; bytes/s or FLOP/s)" | tee -a "$report"
    SPANGRAD_CUDNN=1 "$work/bin/ops" --bench --warm-up-time 1 --measurement-time 2 >"$out/ops-bench.log" 2>&1 || failed=1
    grep -E '^[a-z_]+/|time:|thrpt:|relative difference|cudnn_attention|panicked' "$out/ops-bench.log" | tee -a "$report"
    echo "## The CLI on the GPU (bf16 by default), cuDNN's attention on" | tee -a "$report"
    SPANGRAD_CUDNN=1 "$bin" "${cli[@]}" 2>&1 | tee -a "$report" || failed=1
    echo "## The Python package on the GPU (its wheel, built with cuda and cudnn)" | tee -a "$report"
    SPANGRAD_CUDNN=1 PYTHONPATH="$work/bin/python" python3 - <<'PY' 2>&1 | tee -a "$report" || failed=1
import spangrad

pairs = [{"question": "Who wrote the novel?",
          "context": "The novel was written by Jane Austen in 1813 and published in London. " * k}
         for k in (1, 2, 5)]
model = "tests/fixtures/bert-tiny"
cpu = spangrad.Explainer(model).explain(pairs)
for dtype, tol in (("f32", 1e-4), ("bf16", 5e-2)):
    gpu = spangrad.Explainer(model, device="cuda", dtype=dtype).explain(pairs)
    assert [g["answer"]["text"] for g in gpu] == [c["answer"]["text"] for c in cpu], dtype
    worst = max(abs(a["score"] - b["score"]) for g, c in zip(gpu, cpu)
                for a, b in zip(g["tokens"], c["tokens"]))
    print(f"python, device='cuda', {dtype}: answers equal the CPU's, largest score difference {worst:.2e}")
    assert worst < tol, (dtype, worst)
PY
    echo "## End to end, beside PyTorch on the same GPU" | tee -a "$report"
    python3 -c 'import torch, transformers; print("torch", torch.__version__, "transformers", transformers.__version__)' \
        2>&1 | tee -a "$report"
    # (SPANGRAD_CUDNN, preset, dtype, PyTorch methods or -, extra flags)
    for run in "1 bert-base bf16 seed,best-norm,best-gram" "0 bert-base bf16 -" \
        "1 distilbert-base bf16 best-norm,best-gram" "1 bert-base bf16 best-norm,best-gram --mixed" \
        "0 bert-base bf16 - --mixed" "1 xlm-roberta-base bf16 best-gram" "0 bert-base f32 best-gram"; do
        set -- $run
        local pytorch=()
        [ "$4" != - ] && pytorch=(--pytorch python3 --pytorch-methods "$4")
        echo "### SPANGRAD_CUDNN=$1 $2 $3 ${5:-}" | tee -a "$report"
        SPANGRAD_CUDNN=$1 "$bin" bench --device cuda --preset "$2" --batch 64 --seq-len 384 \
            --dtype "$3" --iters 5 --saliency gram "${pytorch[@]}" ${5:-} 2>&1 | tee -a "$report" || failed=1
    done
    echo "## Where the time goes (bert-base, 64 x 384, bf16, cuDNN's attention)" | tee -a "$report"
    SPANGRAD_CUDNN=1 SPANGRAD_PROFILE=1 "$bin" bench --device cuda --preset bert-base --batch 64 \
        --seq-len 384 --dtype bf16 --iters 3 --saliency gram 2>&1 | tee -a "$report" || failed=1
    echo "## bert-base 256 x 384 in one pass, cuDNN's attention" | tee -a "$report"
    SPANGRAD_CUDNN=1 "$bin" bench --device cuda --preset bert-base --batch 256 --seq-len 384 \
        --dtype bf16 --iters 3 --saliency gram --max-batch-tokens all 2>&1 | tee -a "$report" || failed=1
    echo "## The server under load (bert-base, 384 tokens, bf16, cuDNN's attention)" | tee -a "$report"
    SPANGRAD_CUDNN=1 "$bin" bench-serve --preset bert-base --device cuda --dtype bf16 \
        --clients 1,8,64 --duration 20s --offline-batch 64 2>&1 | tee -a "$report" || failed=1
    echo "## spangrad evaluate (bert-base, 384 tokens, bf16, five methods, every metric) beside the ferret-style loop" | tee -a "$report"
    SPANGRAD_CUDNN=1 "$bin" bench-evaluate --device cuda --preset bert-base --pairs 8 --seq-len 384 \
        --dtype bf16 --pytorch python3 2>&1 | tee -a "$report" || failed=1
    rm -rf "$work"
    echo "gpu-check: $([ $failed = 0 ] && echo passed || echo FAILED), report in $report"
    return $failed
}

case "${1:-}" in
    pack) pack ;;
    run) run "${2:-}" ;;
    *) echo "usage: $0 pack | run [DIR]" >&2; exit 2 ;;
esac
