# Source this file (bash): it installs, once, a CUDA 13.0 build environment from NVIDIA's PyPI
# wheels and exports what `cargo build --features cuda` needs on a machine without a GPU or a
# CUDA install. With a normal CUDA toolkit on the PATH none of this is needed.
#
#   source scripts/cuda-env.sh && cargo build --release --features cuda[,cudnn]
#
# SPANGRAD_CUDA_ENV (default ~/.cache/spangrad/cuda-13.0.2) holds the venv; CUDA_COMPUTE_CAP
# defaults to 90 (H100/H200). nvcc stays at 13.0: the target GPUs' driver 580 rejects PTX from
# newer compilers.

spangrad_cuda_env() {
    local env_dir="${SPANGRAD_CUDA_ENV:-$HOME/.cache/spangrad/cuda-13.0.2}"
    local spec='cuda-toolkit[nvcc,crt,nvvm,cudart,cublas,curand,nvrtc,cccl,profiler]==13.0.2'
    if [ ! -x "$env_dir/venv/bin/python" ]; then
        python3 -m venv "$env_dir/venv" || return 1
    fi
    local root
    # Nothing there yet on a new machine: under `set -o pipefail` (as .ci/run sets it) the
    # failing ls would end the shell that sources this.
    root=$(ls -d "$env_dir"/venv/lib/python3*/site-packages/nvidia/cu13 2>/dev/null | head -n 1 || true)
    if [ -z "$root" ] || [ ! -x "$root/bin/nvcc" ]; then
        echo "cuda-env: installing $spec (about 1.2 GB) into $env_dir" >&2
        "$env_dir/venv/bin/pip" install -q "$spec" || return 1
        root=$(ls -d "$env_dir"/venv/lib/python3*/site-packages/nvidia/cu13 | head -n 1)
    fi

    # The wheels ship only versioned libraries; the linker wants unversioned names.
    mkdir -p "$root/lib64/stubs"
    local lib base
    for lib in "$root"/lib/*.so.*; do
        base=$(basename "$lib")
        ln -sf "$lib" "$root/lib64/${base%%.so.*}.so"
    done

    # No wheel ships the driver library: link against a stub exporting every CUresult entry
    # point of cuda.h (never loaded at run time, where the real libcuda.so.1 is used).
    if [ ! -f "$root/lib64/stubs/libcuda.so" ]; then
        printf '#include <cuda.h>\n#include <cudaProfiler.h>\n' |
            gcc -E -P -I"$root/include" -x c - |
            grep -oE 'CUresult +cu[A-Za-z0-9_]+ *\(' |
            sed -E 's/CUresult +//; s/ *\($//' | sort -u |
            awk '{ printf "int %s(void) { return 999; }\n", $1 }' >"$root/lib64/stubs/cuda_stub.c"
        gcc -shared -fPIC -Wl,-soname,libcuda.so.1 -o "$root/lib64/stubs/libcuda.so" \
            "$root/lib64/stubs/cuda_stub.c" || return 1
    fi

    # cuDNN's headers for the `cudnn` feature: the frontend (header-only) and cudnn.h, taken
    # from their wheels (the libraries are not kept: libcudnn.so.9 is opened at run time, from
    # the GPU machine's PyTorch or CUDA install).
    local cudnn="$env_dir/cudnn"
    if [ ! -f "$cudnn/frontend/include/cudnn_frontend.h" ] || [ ! -f "$cudnn/include/cudnn.h" ]; then
        echo "cuda-env: fetching cuDNN headers (nvidia-cudnn-frontend 1.32.0, nvidia-cudnn-cu13 9.28.1.4)" >&2
        local wheels="$cudnn/wheels"
        mkdir -p "$wheels" "$cudnn/frontend" "$cudnn/include" || return 1
        "$env_dir/venv/bin/pip" download -q --no-deps -d "$wheels" \
            'nvidia-cudnn-frontend==1.32.0' 'nvidia-cudnn-cu13==9.28.1.4' || return 1
        "$env_dir/venv/bin/python" - "$wheels" "$cudnn" <<'PY' || return 1
import pathlib, sys, zipfile
wheels, out = map(pathlib.Path, sys.argv[1:])
for wheel in wheels.glob("*.whl"):
    with zipfile.ZipFile(wheel) as z:
        for name in z.namelist():
            if name.startswith("include/"):
                z.extract(name, out / "frontend")
            elif name.startswith("nvidia/cudnn/include/"):
                target = out / "include" / name[len("nvidia/cudnn/include/"):]
                target.parent.mkdir(parents=True, exist_ok=True)
                target.write_bytes(z.read(name))
PY
        rm -rf "$wheels"
    fi
    export CUDNN_FRONTEND_INCLUDE="$cudnn/frontend/include"
    export CUDNN_INCLUDE="$cudnn/include"

    export CUDA_HOME="$root"
    export CUDA_PATH="$root"
    export PATH="$root/bin:$PATH"
    export LIBRARY_PATH="$root/lib64:$root/lib64/stubs${LIBRARY_PATH:+:$LIBRARY_PATH}"
    export CUDA_COMPUTE_CAP="${CUDA_COMPUTE_CAP:-90}"
    export CUDARC_CUDA_VERSION=13000
    export CUDAFORGE_THREADS="${CUDAFORGE_THREADS:-2}"
    echo "cuda-env: $(nvcc --version | tail -n 2 | head -n 1) at $root" >&2
}

spangrad_cuda_env
