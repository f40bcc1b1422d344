//! Without the `cuda` feature there is nothing to build. With it, every `cuda/*.cu` is compiled
//! to PTX in `OUT_DIR` by nvcc (`NVCC` or `nvcc` on the PATH), for the crate to embed.

use std::path::{Path, PathBuf};
use std::process::Command;

fn main() {
    println!("cargo::rerun-if-changed=cuda");
    println!("cargo::rerun-if-env-changed=NVCC");
    println!("cargo::rerun-if-env-changed=CUDA_COMPUTE_CAP");
    if std::env::var_os("CARGO_FEATURE_CUDA").is_none() {
        return;
    }
    let out_dir = PathBuf::from(std::env::var_os("OUT_DIR").expect("cargo sets OUT_DIR"));
    let nvcc = std::env::var_os("NVCC").unwrap_or_else(|| "nvcc".into());
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
                "the cuda feature needs nvcc ({e}); install a CUDA toolkit or set NVCC \
                 (see the README's CUDA section)"
            )
        });
    assert!(status.success(), "nvcc failed on {}", source.display());
}
