//! Where the model runs: `cpu`, `cuda` or `cuda:N`. By default the first GPU when spangrad is
//! built with the `cuda` feature and one answers, else the CPU.

use candle_core::Device;

use crate::error::InvalidOption;
use crate::error::{Error, Result};

pub fn parse(spec: &str) -> Result<Device> {
    let spec = spec.trim().to_ascii_lowercase();
    let spec = spec.as_str();
    let ordinal = match spec {
        "cpu" => return Ok(Device::Cpu),
        "cuda" => 0,
        other => other
            .strip_prefix("cuda:")
            .and_then(|n| n.parse::<usize>().ok())
            .ok_or_else(|| {
                Error::InvalidOption(InvalidOption::says(
                    "device",
                    format!(": unknown device {other:?} (cpu, cuda or cuda:N)"),
                ))
            })?,
    };
    if !cfg!(feature = "cuda") {
        return Err(Error::Device(format!(
            "{spec}: this spangrad was built without the `cuda` feature"
        )));
    }
    Device::new_cuda(ordinal).map_err(|e| Error::Device(format!("{spec}: {e}")))
}

/// The first GPU if there is one (and the `cuda` feature is built), else the CPU.
pub fn default_device() -> Device {
    if cfg!(feature = "cuda") {
        Device::new_cuda(0).unwrap_or(Device::Cpu)
    } else {
        Device::Cpu
    }
}

/// The device a user named, or the default when none was named.
pub fn select(spec: Option<&str>) -> Result<Device> {
    spec.map_or_else(|| Ok(default_device()), parse)
}

/// Devices named by a comma-separated list (`cuda:0,cuda:1`; `cpu,cpu` runs two models on the
/// CPU), or the default device when none was named.
pub fn select_all(spec: Option<&str>) -> Result<Vec<Device>> {
    match spec {
        None => Ok(vec![default_device()]),
        Some(list) => list.split(',').map(parse).collect(),
    }
}

/// `cpu` or `cuda:N`, as `parse` reads it.
pub fn name(device: &Device) -> String {
    match device.location() {
        candle_core::DeviceLocation::Cuda { gpu_id } => format!("cuda:{gpu_id}"),
        _ => "cpu".to_string(),
    }
}

/// This machine's CPU, for benchmark records: its model name, its cores, the x86 extensions
/// that set the speed of the products and loops (flags of `/proc/cpuinfo`), and the one
/// spangrad's loops run on.
pub fn cpu_description() -> String {
    /// Extensions that change how fast the ops can run: vector width, bf16/fp16 arithmetic and
    /// the AMX tile units.
    const NOTABLE: [&str; 9] = [
        "avx2",
        "fma",
        "avx512f",
        "avx512_vnni",
        "avx512_bf16",
        "avx512_fp16",
        "amx_tile",
        "amx_bf16",
        "amx_int8",
    ];
    let info = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let field = |name: &str| {
        info.lines()
            .filter_map(|l| l.split_once(':'))
            .find(|(key, _)| key.trim() == name)
            .map(|(_, value)| value.trim())
    };
    let flags: Vec<&str> = field("flags").unwrap_or("").split_whitespace().collect();
    let notable: Vec<&str> = NOTABLE.into_iter().filter(|f| flags.contains(f)).collect();
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    format!(
        "{}, {cores} cores ({}; spangrad's loops: {})",
        field("model name").unwrap_or("unknown CPU"),
        if notable.is_empty() {
            "no AVX2, AVX-512 or AMX".to_string()
        } else {
            notable.join(" ")
        },
        crate::ops::vector_unit().name(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_device_names() {
        assert!(parse("cpu").unwrap().is_cpu());
        assert!(parse("CPU").unwrap().is_cpu());
        assert!(matches!(parse("gpu"), Err(Error::InvalidOption(_))));
        assert!(matches!(parse("cuda:x"), Err(Error::InvalidOption(_))));
        // Without the feature or without a GPU, asking for CUDA is an error, never a panic.
        if let Err(e) = parse("cuda:7") {
            assert!(matches!(e, Error::Device(_)), "{e}");
        }
    }
}
