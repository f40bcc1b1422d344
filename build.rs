//! Without the `cuda` feature there is nothing to build. With it, every `cuda/*.cu` is compiled
//! by nvcc (`NVCC`, else `nvcc` on the PATH) to a fatbin in `OUT_DIR` for the crate to embed:
//! machine code for sm_90 (H100, H200: no JIT at load) and PTX that the driver compiles for any
//! other card of `CUDA_COMPUTE_CAP` (default 90) or newer. And
//! bindgen turns `cuda/params.h` (parameter structs and tile sizes) into `params.rs`, so kernels
//! and launchers share one definition.

fn main() {
    println!("cargo::rerun-if-changed=cuda");
    println!("cargo::rerun-if-env-changed=NVCC");
    println!("cargo::rerun-if-env-changed=CUDA_COMPUTE_CAP");
    #[cfg(feature = "cuda")]
    cuda::build();
    #[cfg(feature = "cudnn")]
    cudnn::build();
}

/// `cuda/cudnn/attention.cpp` against cudnn-frontend's headers, in its dynamic-loading mode:
/// nothing of cuDNN is linked, `libcudnn.so.9` is opened when the engine first asks for it.
#[cfg(feature = "cudnn")]
mod cudnn {
    pub fn build() {
        println!("cargo::rerun-if-env-changed=CUDNN_FRONTEND_INCLUDE");
        println!("cargo::rerun-if-env-changed=CUDNN_INCLUDE");
        println!("cargo::rerun-if-env-changed=CUDA_HOME");
        let var = |name: &str| {
            std::env::var(name).unwrap_or_else(|_| {
                panic!(
                    "the cudnn feature needs {name}: `source scripts/cuda-env.sh`, which fetches \
                     cuDNN's headers (see the README)"
                )
            })
        };
        let cuda = var("CUDA_HOME");
        cc::Build::new()
            .cpp(true)
            .std("c++17")
            .file("cuda/cudnn/attention.cpp")
            // System headers: their own warnings are not ours to print on every build.
            .flag(format!("-isystem{}", var("CUDNN_FRONTEND_INCLUDE")))
            .flag(format!("-isystem{}", var("CUDNN_INCLUDE")))
            .flag(format!("-isystem{cuda}/include"))
            .define("NV_CUDNN_FRONTEND_USE_DYNAMIC_LOADING", None)
            .flag_if_supported("-Wno-unused-parameter")
            .compile("spangrad_cudnn");
        println!("cargo::rustc-link-lib=dl");
    }
}

#[cfg(feature = "cuda")]
mod cuda {
    use std::path::{Path, PathBuf};
    use std::process::Command;

    pub fn build() {
        let out_dir = PathBuf::from(std::env::var_os("OUT_DIR").expect("cargo sets OUT_DIR"));
        let nvcc = std::env::var_os("NVCC").unwrap_or_else(|| "nvcc".into());
        let arch: u32 = std::env::var("CUDA_COMPUTE_CAP")
            .map_or(Ok(90), |v| v.parse())
            .expect("CUDA_COMPUTE_CAP is a compute capability such as 90");
        let mut sources: Vec<PathBuf> = std::fs::read_dir("cuda")
            .expect("cuda/ is part of the crate")
            .map(|e| e.expect("readable cuda/ entry").path())
            .filter(|p| p.extension().is_some_and(|e| e == "cu"))
            .collect();
        sources.sort();
        for source in &sources {
            compile(Path::new(&nvcc), source, &out_dir, arch);
        }
        bindgen::Builder::default()
            .header("cuda/params.h")
            .derive_default(true)
            .generate()
            .expect("bindgen reads cuda/params.h (it needs libclang)")
            .write_to_file(out_dir.join("params.rs"))
            .expect("OUT_DIR is writable");
    }

    /// PTX of `compute_{arch}`, and machine code for sm_90 (where `arch` allows) and `sm_{arch}`.
    fn compile(nvcc: &Path, source: &Path, out_dir: &Path, arch: u32) {
        let stem = source.file_stem().expect("a .cu file has a name");
        let fatbin = out_dir.join(stem).with_extension("fatbin");
        let mut codes = vec![format!("compute_{arch}"), format!("sm_{arch}")];
        if arch < 90 {
            codes.push("sm_90".into());
        }
        let status = Command::new(nvcc)
            .args(["--fatbin", "-O3", "-std=c++17", "-Icuda"])
            .arg(format!(
                "--generate-code=arch=compute_{arch},code=[{}]",
                codes.join(",")
            ))
            .arg(source)
            .arg("-o")
            .arg(&fatbin)
            .status()
            .unwrap_or_else(|e| {
                panic!(
                    "the cuda feature needs nvcc ({e}): install a CUDA toolkit, set NVCC, or \
                     `source scripts/cuda-env.sh` (see the README)"
                )
            });
        assert!(status.success(), "nvcc failed on {}", source.display());
    }
}
