//! Without the `cuda` feature there is nothing to build. With it, every `cuda/*.cu` is compiled
//! to PTX in `OUT_DIR` by nvcc (`NVCC`, else `nvcc` on the PATH) for the crate to embed, and
//! bindgen turns `cuda/params.h` (parameter structs and tile sizes) into `params.rs`, so kernels
//! and launchers share one definition.

fn main() {
    println!("cargo::rerun-if-changed=cuda");
    println!("cargo::rerun-if-env-changed=NVCC");
    println!("cargo::rerun-if-env-changed=CUDA_COMPUTE_CAP");
    #[cfg(feature = "cuda")]
    cuda::build();
}

#[cfg(feature = "cuda")]
mod cuda {
    use std::path::{Path, PathBuf};
    use std::process::Command;

    pub fn build() {
        let out_dir = PathBuf::from(std::env::var_os("OUT_DIR").expect("cargo sets OUT_DIR"));
        let nvcc = std::env::var_os("NVCC").unwrap_or_else(|| "nvcc".into());
        // PTX for the target's virtual architecture; the driver compiles it at module load.
        let arch = std::env::var("CUDA_COMPUTE_CAP").unwrap_or_else(|_| "90".into());
        let mut sources: Vec<PathBuf> = std::fs::read_dir("cuda")
            .expect("cuda/ is part of the crate")
            .map(|e| e.expect("readable cuda/ entry").path())
            .filter(|p| p.extension().is_some_and(|e| e == "cu"))
            .collect();
        sources.sort();
        for source in &sources {
            compile(Path::new(&nvcc), source, &out_dir, &arch);
        }
        bindgen::Builder::default()
            .header("cuda/params.h")
            .derive_default(true)
            .generate()
            .expect("bindgen reads cuda/params.h (it needs libclang)")
            .write_to_file(out_dir.join("params.rs"))
            .expect("OUT_DIR is writable");
    }

    fn compile(nvcc: &Path, source: &Path, out_dir: &Path, arch: &str) {
        let stem = source.file_stem().expect("a .cu file has a name");
        let ptx = out_dir.join(stem).with_extension("ptx");
        let status = Command::new(nvcc)
            .args(["--ptx", "-O3", "-std=c++17", "-Icuda"])
            .arg(format!("--gpu-architecture=compute_{arch}"))
            .arg(source)
            .arg("-o")
            .arg(&ptx)
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
