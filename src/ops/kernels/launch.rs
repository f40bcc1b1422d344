//! What every launcher needs: device views of candle tensors, outputs wrapped back into
//! tensors, modules loaded once per device, launch geometry.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use candle_core::cuda_backend::{CudaDevice, CudaStorage, CudaStorageSlice, DeviceId, WrapErr};
use candle_core::op::BackpropOp;
use candle_core::{DType, Device, Layout, Result, Shape, Storage, StorageRef, Tensor};
use cudarc::driver::{
    CudaFunction, CudaModule, CudaSlice, CudaView, DeviceRepr, LaunchArgs, LaunchConfig,
    PushKernelArg,
};
use cudarc::nvrtc::Ptx;

static POISON: AtomicBool = AtomicBool::new(false);

/// From now on, fill every kernel output with NaN before the kernel runs, so a test sees any
/// element a kernel failed to write. Costs a host-to-device copy per output: tests only.
pub fn poison_outputs(on: bool) {
    POISON.store(on, Ordering::Relaxed);
}

pub fn device(t: &Tensor) -> Result<CudaDevice> {
    match t.device() {
        Device::Cuda(d) => Ok(d.clone()),
        other => candle_core::bail!("a CUDA kernel was given a tensor on {other:?}"),
    }
}

/// A contiguous tensor's storage, held for as long as its view is in use.
pub struct Read<'a> {
    storage: StorageRef<'a>,
    layout: &'a Layout,
}

pub fn read(t: &Tensor) -> Result<Read<'_>> {
    if !t.is_contiguous() {
        candle_core::bail!("CUDA kernels take contiguous tensors");
    }
    let (storage, layout) = t.storage_and_layout();
    Ok(Read { storage, layout })
}

/// A typed device view; only the pointer reaches the kernel, whose parameter has the type.
pub enum View<'a> {
    F32(CudaView<'a, f32>),
    F16(CudaView<'a, half::f16>),
    BF16(CudaView<'a, half::bf16>),
    U32(CudaView<'a, u32>),
}

impl Read<'_> {
    pub fn view(&self) -> Result<View<'_>> {
        let Storage::Cuda(cuda) = &*self.storage else {
            candle_core::bail!("a CUDA kernel was given a tensor that is not on the GPU");
        };
        let start = self.layout.start_offset();
        let end = start + self.layout.shape().elem_count();
        Ok(match &cuda.slice {
            CudaStorageSlice::F32(s) => View::F32(s.slice(start..end)),
            CudaStorageSlice::F16(s) => View::F16(s.slice(start..end)),
            CudaStorageSlice::BF16(s) => View::BF16(s.slice(start..end)),
            CudaStorageSlice::U32(s) => View::U32(s.slice(start..end)),
            _ => candle_core::bail!("CUDA kernels take f32, f16, bf16 or u32 tensors"),
        })
    }
}

/// Anything a launcher passes to a kernel: device views and slices by pointer, parameter
/// structs by value.
pub trait KernelArg {
    fn push<'a>(&'a self, args: &mut LaunchArgs<'a>);
}

impl KernelArg for View<'_> {
    fn push<'a>(&'a self, args: &mut LaunchArgs<'a>) {
        match self {
            View::F32(v) => args.arg(v),
            View::F16(v) => args.arg(v),
            View::BF16(v) => args.arg(v),
            View::U32(v) => args.arg(v),
        };
    }
}

impl<T> KernelArg for CudaSlice<T> {
    fn push<'a>(&'a self, args: &mut LaunchArgs<'a>) {
        args.arg(self);
    }
}

/// Marks the `cuda/params.h` structs, passed by value.
pub trait Params: DeviceRepr {}

impl<P: Params> KernelArg for P {
    fn push<'a>(&'a self, args: &mut LaunchArgs<'a>) {
        args.arg(self);
    }
}

/// An f32 output of `len > 0` elements (poisoned with NaN when tests ask for it).
pub fn output(dev: &CudaDevice, len: usize) -> Result<CudaSlice<f32>> {
    if len == 0 {
        candle_core::bail!("CUDA kernels take non-empty inputs");
    }
    // SAFETY: every launcher's kernels write each element before it is read.
    let mut out = unsafe { dev.alloc::<f32>(len)? };
    if POISON.load(Ordering::Relaxed) {
        dev.memcpy_htod(&vec![f32::NAN; len], &mut out)?;
    }
    Ok(out)
}

/// An output of the model's dtype (poisoned with NaN when tests ask for it).
pub enum Output {
    F32(CudaSlice<f32>),
    F16(CudaSlice<half::f16>),
    BF16(CudaSlice<half::bf16>),
}

/// An output of `len > 0` elements of `dtype` (f32, f16 or bf16).
pub fn output_of(dev: &CudaDevice, dtype: DType, len: usize) -> Result<Output> {
    fn alloc<T: DeviceRepr + Clone + 'static>(
        dev: &CudaDevice,
        len: usize,
        nan: T,
    ) -> Result<CudaSlice<T>> {
        if len == 0 {
            candle_core::bail!("CUDA kernels take non-empty inputs");
        }
        // SAFETY: every launcher's kernels write each element before it is read.
        let mut out = unsafe { dev.alloc::<T>(len)? };
        if POISON.load(Ordering::Relaxed) {
            dev.memcpy_htod(&vec![nan; len], &mut out)?;
        }
        Ok(out)
    }
    Ok(match dtype {
        DType::F32 => Output::F32(alloc(dev, len, f32::NAN)?),
        DType::F16 => Output::F16(alloc(dev, len, half::f16::NAN)?),
        DType::BF16 => Output::BF16(alloc(dev, len, half::bf16::NAN)?),
        other => candle_core::bail!("kernels write f32, f16 or bf16, not {other:?}"),
    })
}

impl Output {
    pub fn into_tensor(self, dev: &CudaDevice, shape: impl Into<Shape>) -> Result<Tensor> {
        let storage = match self {
            Output::F32(s) => CudaStorage::wrap_cuda_slice(s, dev.clone()),
            Output::F16(s) => CudaStorage::wrap_cuda_slice(s, dev.clone()),
            Output::BF16(s) => CudaStorage::wrap_cuda_slice(s, dev.clone()),
        };
        Ok(Tensor::from_storage(
            Storage::Cuda(storage),
            shape,
            BackpropOp::none(),
            false,
        ))
    }
}

impl KernelArg for Output {
    fn push<'a>(&'a self, args: &mut LaunchArgs<'a>) {
        match self {
            Output::F32(s) => args.arg(s),
            Output::F16(s) => args.arg(s),
            Output::BF16(s) => args.arg(s),
        };
    }
}

/// Wraps a kernel's output as a tensor of `shape`.
pub fn tensor(slice: CudaSlice<f32>, dev: &CudaDevice, shape: impl Into<Shape>) -> Result<Tensor> {
    let storage = Storage::Cuda(CudaStorage::wrap_cuda_slice(slice, dev.clone()));
    Ok(Tensor::from_storage(
        storage,
        shape,
        BackpropOp::none(),
        false,
    ))
}

/// Whether a kernel may take its 16-byte-vector path: `width` (the elements a vector must not
/// run past, e.g. a row) a multiple of the vector, and every tensor starting on a vector
/// boundary (allocations themselves are aligned).
pub fn vectorisable(width: usize, tensors: &[&Tensor]) -> u32 {
    let Some(&first) = tensors.first() else {
        return 0;
    };
    let per_vector = 16 / first.dtype().size_in_bytes();
    let aligned = tensors
        .iter()
        .all(|t| t.layout().start_offset() % per_vector == 0);
    u32::from(width % per_vector == 0 && aligned)
}

/// Blocks of 256 threads for a grid-stride loop over `items`: enough to fill any current GPU.
pub fn grid_stride_blocks(items: usize) -> (usize, usize) {
    (items.div_ceil(256).clamp(1, 16_384), 1)
}

/// Launches with `blocks` blocks of `threads` threads and no dynamic shared memory.
pub fn run(mut args: LaunchArgs<'_>, blocks: (usize, usize), threads: u32) -> Result<()> {
    let cfg = LaunchConfig {
        grid_dim: (blocks.0 as u32, blocks.1 as u32, 1),
        block_dim: (threads, 1, 1),
        shared_mem_bytes: 0,
    };
    // SAFETY: each launcher passes the arguments its kernel declares, with sizes in bounds.
    unsafe { args.launch(cfg) }.w()?;
    Ok(())
}

/// The kernel `name` of `module` on `dev`: each module is loaded once per device (the
/// driver picks its sm_90 code or compiles its PTX), each function looked up once.
pub fn function(dev: &CudaDevice, module: super::Module, name: &str) -> Result<CudaFunction> {
    type Modules = HashMap<(DeviceId, &'static str), Arc<CudaModule>>;
    static MODULES: Mutex<Option<Modules>> = Mutex::new(None);
    static FUNCTIONS: Mutex<Option<HashMap<(DeviceId, String), CudaFunction>>> = Mutex::new(None);
    let key = (dev.id(), name.to_string());
    let mut functions = FUNCTIONS.lock().unwrap_or_else(|e| e.into_inner());
    let functions = functions.get_or_insert_with(HashMap::new);
    if let Some(f) = functions.get(&key) {
        return Ok(f.clone());
    }
    let (module_name, image) = module;
    let loaded = {
        let mut modules = MODULES.lock().unwrap_or_else(|e| e.into_inner());
        let modules = modules.get_or_insert_with(HashMap::new);
        match modules.get(&(dev.id(), module_name)) {
            Some(m) => m.clone(),
            None => {
                let context = dev.cuda_stream().context().clone();
                let m = context.load_module(Ptx::from_binary(image.to_vec())).w()?;
                modules.insert((dev.id(), module_name), m.clone());
                m
            }
        }
    };
    let f = loaded.load_function(name).w()?;
    functions.insert(key, f.clone());
    Ok(f)
}

/// `launch!(device, MODULE, name, blocks, threads; args...)`: finds the kernel (loaded once per
/// device) and launches it on candle's stream.
macro_rules! launch {
    ($dev:expr, $module:expr, $name:expr, $blocks:expr, $threads:expr; $($arg:expr),+ $(,)?) => {{
        let func = $crate::ops::kernels::launch::function(&$dev, $module, &$name)?;
        let stream = $dev.cuda_stream();
        let mut args = stream.launch_builder(&func);
        $( $crate::ops::kernels::launch::KernelArg::push($arg, &mut args); )+
        $crate::ops::kernels::launch::run(args, $blocks, $threads)
    }};
}
pub(crate) use launch;
