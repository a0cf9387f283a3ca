//! The device a miner or coordinator runs the chain's training and evaluation on, as
//! `--device cpu|cuda[:N]` names it.
//!
//! The chain's work runs on the CPU, on [`crate::kernel`]: replay verification compares a
//! miner's training bit for bit with a replay on another machine, and the audit recomputes
//! every held-out loss, so the work must give the same bits everywhere. Only the kernel's
//! pinned FMA order guarantees that. candle's CUDA backend (cuBLAS products, its own
//! reductions) pins no summation order: a miner training on a GPU would fail every replay
//! check and lose its bond, and a coordinator scoring on one would publish losses no auditor
//! reproduces. So `cuda[:N]` is checked as far as this binary can (built with the `cuda`
//! feature, the device present) and then refused with that reason, instead of running work
//! that cannot be verified. A GPU kernel with the kernel's order guarantee would be accepted
//! here.

use std::fmt;
use std::str::FromStr;

/// A device named on the command line.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ComputeDevice {
    /// The CPU, on the reproducible kernel (the default).
    #[default]
    Cpu,
    /// A CUDA GPU by ordinal (`cuda` is `cuda:0`).
    Cuda(usize),
}

/// Why a device cannot run the chain's work.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DeviceError {
    /// A name that is no device.
    #[error("unknown device {0:?}: expected `cpu`, `cuda` or `cuda:N` (N a GPU ordinal)")]
    Unknown(String),
    /// A CUDA device asked of a binary built without CUDA.
    #[error(
        "device {0}: this binary was built without CUDA support; rebuild with \
         `cargo build --release --features cuda` on a machine with the CUDA toolkit"
    )]
    NotBuilt(ComputeDevice),
    /// The CUDA runtime could not open the device (no GPU, no driver, a bad ordinal).
    #[error("device {device}: CUDA could not open it: {reason}")]
    Unavailable {
        /// The device asked for.
        device: ComputeDevice,
        /// candle's error.
        reason: String,
    },
    /// A device that opens but cannot give the bits replay verification checks.
    #[error(
        "device {0}: candle's CUDA kernels fix no summation order, so training or scoring \
         there would not replay bit for bit on other machines (every replay check would \
         fail); the chain's work runs on the CPU's reproducible kernel: use --device cpu"
    )]
    NotReproducible(ComputeDevice),
}

impl fmt::Display for ComputeDevice {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Cpu => f.write_str("cpu"),
            Self::Cuda(ordinal) => write!(f, "cuda:{ordinal}"),
        }
    }
}

impl FromStr for ComputeDevice {
    type Err = DeviceError;

    fn from_str(s: &str) -> Result<Self, DeviceError> {
        let unknown = || DeviceError::Unknown(s.to_owned());
        match s.trim() {
            "cpu" => Ok(Self::Cpu),
            "cuda" => Ok(Self::Cuda(0)),
            other => {
                let ordinal = other.strip_prefix("cuda:").ok_or_else(unknown)?;
                // Digits only: `cuda:+1` or `cuda: 1` is a typo, not ordinal 1.
                if ordinal.is_empty() || !ordinal.bytes().all(|b| b.is_ascii_digit()) {
                    return Err(unknown());
                }
                ordinal.parse().map(Self::Cuda).map_err(|_| unknown())
            }
        }
    }
}

impl ComputeDevice {
    /// The device as candle opens it.
    pub fn open(self) -> Result<candle_core::Device, DeviceError> {
        match self {
            Self::Cpu => Ok(candle_core::Device::Cpu),
            Self::Cuda(ordinal) => open_cuda(self, ordinal),
        }
    }

    /// Whether the chain's training and evaluation may run here (see the module docs):
    /// the CPU always; a CUDA device is opened first, so a missing feature or GPU is named
    /// before the reproducibility refusal.
    pub fn check_for_chain_work(self) -> Result<(), DeviceError> {
        match self {
            Self::Cpu => Ok(()),
            Self::Cuda(_) => {
                self.open()?;
                Err(DeviceError::NotReproducible(self))
            }
        }
    }
}

#[cfg(feature = "cuda")]
fn open_cuda(device: ComputeDevice, ordinal: usize) -> Result<candle_core::Device, DeviceError> {
    candle_core::Device::new_cuda(ordinal).map_err(|e| DeviceError::Unavailable {
        device,
        reason: e.to_string(),
    })
}

#[cfg(not(feature = "cuda"))]
fn open_cuda(device: ComputeDevice, _ordinal: usize) -> Result<candle_core::Device, DeviceError> {
    Err(DeviceError::NotBuilt(device))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn device_names_parse_and_print_back() {
        for (name, device) in [
            ("cpu", ComputeDevice::Cpu),
            ("cuda", ComputeDevice::Cuda(0)),
            ("cuda:0", ComputeDevice::Cuda(0)),
            ("cuda:3", ComputeDevice::Cuda(3)),
        ] {
            assert_eq!(name.parse::<ComputeDevice>().unwrap(), device, "{name}");
        }
        assert_eq!(ComputeDevice::Cuda(3).to_string(), "cuda:3");
        assert_eq!(ComputeDevice::default(), ComputeDevice::Cpu);
        for bad in [
            "", "gpu", "CUDA", "cuda:", "cuda:x", "cuda:+1", "cuda:-1", "cuda:1:2",
        ] {
            assert!(
                matches!(bad.parse::<ComputeDevice>(), Err(DeviceError::Unknown(_))),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn the_cpu_runs_the_chain_work() {
        ComputeDevice::Cpu.check_for_chain_work().unwrap();
        assert!(matches!(
            ComputeDevice::Cpu.open(),
            Ok(candle_core::Device::Cpu)
        ));
    }

    /// Without the `cuda` feature (CI's build) a GPU is refused for what it is: not built
    /// in, with the command that builds it.
    #[cfg(not(feature = "cuda"))]
    #[test]
    fn a_binary_without_cuda_says_so_and_how_to_build_it() {
        let err = ComputeDevice::Cuda(1).check_for_chain_work().unwrap_err();
        assert_eq!(err, DeviceError::NotBuilt(ComputeDevice::Cuda(1)));
        let message = err.to_string();
        assert!(message.contains("cuda:1") && message.contains("--features cuda"));
    }

    /// With the `cuda` feature, a GPU that opens is still refused, for reproducibility; one
    /// that does not open names CUDA's reason.
    #[cfg(feature = "cuda")]
    #[test]
    fn a_cuda_build_refuses_the_gpu_for_the_chain_work() {
        let err = ComputeDevice::Cuda(0).check_for_chain_work().unwrap_err();
        assert!(
            matches!(
                err,
                DeviceError::NotReproducible(_) | DeviceError::Unavailable { .. }
            ),
            "{err}"
        );
    }
}
