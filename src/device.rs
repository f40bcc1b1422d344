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
