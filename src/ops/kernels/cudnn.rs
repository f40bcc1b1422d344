//! cuDNN's fused attention (feature `cudnn`), through the C shim `cuda/cudnn/attention.cpp`.
//!
//! Layouts are chosen so that no head split or merge runs:
//! - Q, K and V are read in place from the fused QKV product `[b·t, 3h]` (bias added), head
//!   `j` of Q at columns `j·d..(j+1)·d`, of K at `h + j·d`, of V at `2h + j·d`;
//! - the context is written in token layout `[b·t, h]`, ready for the output projection;
//! - the backward reads dO in that layout and writes dQ, dK, dV into one `[b·t, 3h]` buffer laid
//!   out as the QKV product, ready for the input gradient of the fused projection.
//!
//! The padding mask comes from the pairs' lengths (`u32` `[b]`, read as cuDNN's int32): rows
//! past a pair's length get zeros, and its padded keys get no weight. The forward's softmax
//! statistics (`[b, a, t]` f32) replace the probabilities for the backward.

use std::ffi::{c_char, c_void, CStr, CString};
use std::sync::atomic::{AtomicU64, Ordering};

use candle_core::{DType, Result, Tensor};
use cudarc::driver::{CudaSlice, CudaStream, DevicePtr, DevicePtrMut, SyncOnDrop};

use super::launch::{device, output, output_of, read, Output, View};

/// A tensor's raw device address: `stream` waits for the memory's last write, and the guard
/// must outlive the call that reads it.
fn address<'a>(view: &'a View<'a>, stream: &'a CudaStream) -> (u64, SyncOnDrop<'a>) {
    match view {
        View::F32(v) => v.device_ptr(stream),
        View::F16(v) => v.device_ptr(stream),
        View::BF16(v) => v.device_ptr(stream),
        View::U32(v) => v.device_ptr(stream),
    }
}

/// An output's raw device address to write through (see [`address`]).
fn address_mut<'a>(out: &'a mut Output, stream: &'a CudaStream) -> (u64, SyncOnDrop<'a>) {
    match out {
        Output::F32(s) => s.device_ptr_mut(stream),
        Output::F16(s) => s.device_ptr_mut(stream),
        Output::BF16(s) => s.device_ptr_mut(stream),
    }
}

/// One tensor's (b, heads, s, d) dims and strides, in elements.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
struct TensorDesc {
    dims: [i64; 4],
    strides: [i64; 4],
}

/// `spangrad_attention_desc` of the shim.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
struct AttentionDesc {
    /// 0: bf16, 1: f16.
    dtype: i32,
    q: TensorDesc,
    k: TensorDesc,
    v: TensorDesc,
    o: TensorDesc,
    d_o: TensorDesc,
    d_q: TensorDesc,
    d_k: TensorDesc,
    d_v: TensorDesc,
    scale: f32,
}

extern "C" {
    fn spangrad_cudnn_load(path: *const c_char) -> i32;
    fn spangrad_cudnn_version() -> i64;
    fn spangrad_cudnn_error() -> *const c_char;
    fn spangrad_cudnn_attention_prepare(
        device: i32,
        backward: i32,
        desc: *const AttentionDesc,
        workspace: *mut i64,
        built_ms: *mut f64,
    ) -> i32;
    fn spangrad_cudnn_attention_forward(
        device: i32,
        stream: *mut c_void,
        desc: *const AttentionDesc,
        q: *const c_void,
        k: *const c_void,
        v: *const c_void,
        seq_q: *const i32,
        seq_kv: *const i32,
        o: *mut c_void,
        stats: *mut f32,
        workspace: *mut c_void,
    ) -> i32;
    fn spangrad_cudnn_attention_backward(
        device: i32,
        stream: *mut c_void,
        desc: *const AttentionDesc,
        q: *const c_void,
        k: *const c_void,
        v: *const c_void,
        o: *const c_void,
        d_o: *const c_void,
        stats: *const f32,
        seq_q: *const i32,
        seq_kv: *const i32,
        d_q: *mut c_void,
        d_k: *mut c_void,
        d_v: *mut c_void,
        workspace: *mut c_void,
    ) -> i32;
}

/// The shim's message for the failure it just reported on this thread.
fn last_error() -> String {
    // SAFETY: the shim returns a NUL-terminated string owned by this thread, valid until its
    // next call; it is copied at once.
    unsafe { CStr::from_ptr(spangrad_cudnn_error()) }
        .to_string_lossy()
        .into_owned()
}

fn check(status: i32, what: &str) -> Result<()> {
    if status == 0 {
        Ok(())
    } else {
        candle_core::bail!("cuDNN attention {what}: {}", last_error())
    }
}

/// Opens cuDNN for this process (`library`, else `libcudnn.so.9` from the loader's search
/// path): its version (e.g. 91301 for 9.13.1), or why it cannot be used. Later calls return
/// the first success at once.
pub fn load(library: Option<&str>) -> std::result::Result<i64, String> {
    let path = CString::new(library.unwrap_or("")).map_err(|e| e.to_string())?;
    // SAFETY: a NUL-terminated path; the shim serialises its own state.
    if unsafe { spangrad_cudnn_load(path.as_ptr()) } != 0 {
        return Err(last_error());
    }
    // SAFETY: no arguments; valid after a successful load.
    Ok(unsafe { spangrad_cudnn_version() })
}

static GRAPHS_BUILT: AtomicU64 = AtomicU64::new(0);
static GRAPH_MICROS: AtomicU64 = AtomicU64::new(0);

/// Graphs built so far in this process and the milliseconds building them took (each shape
/// is built once, forward and backward, then cached).
pub fn graphs_built() -> (u64, f64) {
    (
        GRAPHS_BUILT.load(Ordering::Relaxed),
        GRAPH_MICROS.load(Ordering::Relaxed) as f64 / 1e3,
    )
}

/// One batch's attention as cuDNN sees it: every layout, the device and its stream.
struct Call {
    desc: AttentionDesc,
    ordinal: i32,
    stream: std::sync::Arc<CudaStream>,
    dev: candle_core::cuda_backend::CudaDevice,
}

impl Call {
    /// `qkv` `[b·t, 3h]` of `heads` heads, `t = tokens`.
    fn new(qkv: &Tensor, tokens: usize, heads: usize, scale: f64) -> Result<Self> {
        let (rows, width) = qkv.dims2()?;
        let dtype = match qkv.dtype() {
            DType::BF16 => 0,
            DType::F16 => 1,
            other => candle_core::bail!("cuDNN attention takes bf16 or f16, not {other:?}"),
        };
        if width % 3 != 0 || tokens == 0 || rows % tokens != 0 || (width / 3) % heads != 0 {
            candle_core::bail!("cuDNN attention: qkv [{rows}, {width}] is not [b·{tokens}, 3h]");
        }
        let (b, t, h) = (rows / tokens, tokens, width / 3);
        let d = h / heads;
        // Heads at a column offset of a token-major buffer `width` wide.
        let heads_of = |width: usize| TensorDesc {
            dims: [b, heads, t, d].map(|x| x as i64),
            strides: [t * width, d, width, 1].map(|x| x as i64),
        };
        let (fused, token) = (heads_of(3 * h), heads_of(h));
        let dev = device(qkv)?;
        let stream = dev.cuda_stream();
        // The shim's handles and graphs are per device, created with it current.
        stream
            .context()
            .bind_to_thread()
            .map_err(candle_core::Error::wrap)?;
        Ok(Self {
            desc: AttentionDesc {
                dtype,
                q: fused,
                k: fused,
                v: fused,
                o: token,
                d_o: token,
                d_q: fused,
                d_k: fused,
                d_v: fused,
                scale: scale as f32,
            },
            ordinal: stream.context().ordinal() as i32,
            stream,
            dev,
        })
    }

    /// `(b, a, t, d)`.
    fn shape(&self) -> (usize, usize, usize, usize) {
        let [b, a, t, d] = self.desc.q.dims.map(|x| x as usize);
        (b, a, t, d)
    }

    /// Builds (or finds) the graph; returns the bytes of workspace its execution needs.
    fn graph(&self, backward: bool) -> Result<usize> {
        let (mut bytes, mut built_ms) = (0i64, 0f64);
        // SAFETY: `desc` and both out-pointers are valid for the call.
        let status = unsafe {
            spangrad_cudnn_attention_prepare(
                self.ordinal,
                backward.into(),
                &self.desc,
                &mut bytes,
                &mut built_ms,
            )
        };
        check(status, if backward { "backward" } else { "forward" })?;
        if built_ms > 0.0 {
            GRAPHS_BUILT.fetch_add(1, Ordering::Relaxed);
            GRAPH_MICROS.fetch_add((built_ms * 1e3) as u64, Ordering::Relaxed);
        }
        Ok(bytes as usize)
    }

    /// A workspace of `bytes` for one execution (none when the graph needs none).
    fn workspace(&self, bytes: usize) -> Result<Option<CudaSlice<u8>>> {
        if bytes == 0 {
            return Ok(None);
        }
        // SAFETY: cuDNN writes its workspace before reading it.
        Ok(Some(unsafe { self.dev.alloc::<u8>(bytes)? }))
    }

    fn raw_stream(&self) -> *mut c_void {
        self.stream.cu_stream() as *mut c_void
    }
}

/// The workspace's address (null when the graph needs none) and its guard.
fn workspace_ptr<'a>(
    workspace: &'a mut Option<CudaSlice<u8>>,
    stream: &'a CudaStream,
) -> (*mut c_void, Option<SyncOnDrop<'a>>) {
    match workspace {
        Some(w) => {
            let (ptr, guard) = w.device_ptr_mut(stream);
            (ptr as *mut c_void, Some(guard))
        }
        None => (std::ptr::null_mut(), None),
    }
}

/// Builds the forward's and the backward's graphs for this shape (cached), so a shape cuDNN
/// does not support is found before anything is saved for a backward.
pub fn attention_prepare(qkv: &Tensor, tokens: usize, heads: usize, scale: f64) -> Result<()> {
    let call = Call::new(qkv, tokens, heads, scale)?;
    call.graph(false)?;
    call.graph(true)?;
    Ok(())
}

/// `(O, stats)`: the context `[b·t, h]` in token layout and each query row's softmax
/// statistics `[b, a, t]` f32, from the fused QKV product `[b·t, 3h]` (bias added).
pub fn attention_forward(
    qkv: &Tensor,
    lengths: &Tensor,
    tokens: usize,
    heads: usize,
    scale: f64,
) -> Result<(Tensor, Tensor)> {
    let call = Call::new(qkv, tokens, heads, scale)?;
    let (b, a, t, d) = call.shape();
    let h = a * d;
    let mut workspace = call.workspace(call.graph(false)?)?;
    let mut o = output_of(&call.dev, qkv.dtype(), b * t * h)?;
    let mut stats = output(&call.dev, b * a * t)?;
    let (qkv_read, lengths_read) = (read(qkv)?, read(lengths)?);
    let (qkv_view, lengths_view) = (qkv_read.view()?, lengths_read.view()?);
    let s = qkv.dtype().size_in_bytes() as u64;
    {
        let stream = &call.stream;
        let (base, _q) = address(&qkv_view, stream);
        let (seq, _l) = address(&lengths_view, stream);
        let (o_ptr, _o) = address_mut(&mut o, stream);
        let (stats_ptr, _s) = stats.device_ptr_mut(stream);
        let (ws, _w) = workspace_ptr(&mut workspace, stream);
        // SAFETY: every pointer is a live device allocation of the sizes `desc` describes,
        // on `stream`, whose guards outlive the call.
        let status = unsafe {
            spangrad_cudnn_attention_forward(
                call.ordinal,
                call.raw_stream(),
                &call.desc,
                base as *const c_void,
                (base + h as u64 * s) as *const c_void,
                (base + 2 * h as u64 * s) as *const c_void,
                seq as *const i32,
                seq as *const i32,
                o_ptr as *mut c_void,
                stats_ptr as *mut f32,
                ws,
            )
        };
        check(status, "forward")?;
    }
    drop(workspace);
    Ok((
        o.into_tensor(&call.dev, (b * t, h))?,
        super::launch::tensor(stats, &call.dev, (b, a, t))?,
    ))
}

/// dQ, dK, dV in one `[b·t, 3h]` buffer laid out as `qkv`, given the context's gradient
/// `dout` `[b·t, h]` and the forward's `output` and `stats`.
#[allow(clippy::too_many_arguments)]
pub fn attention_backward(
    qkv: &Tensor,
    output: &Tensor,
    stats: &Tensor,
    dout: &Tensor,
    lengths: &Tensor,
    tokens: usize,
    heads: usize,
    scale: f64,
) -> Result<Tensor> {
    let call = Call::new(qkv, tokens, heads, scale)?;
    let (b, a, t, d) = call.shape();
    let h = a * d;
    if output.dims() != [b * t, h] || dout.dims() != [b * t, h] || stats.dims() != [b, a, t] {
        candle_core::bail!("cuDNN attention backward: O, dO or the statistics do not match Q");
    }
    let mut workspace = call.workspace(call.graph(true)?)?;
    let mut dqkv = output_of(&call.dev, qkv.dtype(), b * t * 3 * h)?;
    let reads = [qkv, output, stats, dout, lengths].map(read);
    let [qkv_r, o_r, stats_r, do_r, len_r] = reads;
    let (qkv_r, o_r, stats_r, do_r, len_r) = (qkv_r?, o_r?, stats_r?, do_r?, len_r?);
    let views = (
        qkv_r.view()?,
        o_r.view()?,
        stats_r.view()?,
        do_r.view()?,
        len_r.view()?,
    );
    let s = qkv.dtype().size_in_bytes() as u64;
    {
        let stream = &call.stream;
        let (base, _q) = address(&views.0, stream);
        let (o_ptr, _o) = address(&views.1, stream);
        let (stats_ptr, _s) = address(&views.2, stream);
        let (do_ptr, _d) = address(&views.3, stream);
        let (seq, _l) = address(&views.4, stream);
        let (dbase, _dq) = address_mut(&mut dqkv, stream);
        let (ws, _w) = workspace_ptr(&mut workspace, stream);
        let at = |base: u64, part: u64| (base + part * h as u64 * s) as *mut c_void;
        // SAFETY: as in the forward; dQ, dK, dV are disjoint columns of one allocation.
        let status = unsafe {
            spangrad_cudnn_attention_backward(
                call.ordinal,
                call.raw_stream(),
                &call.desc,
                at(base, 0),
                at(base, 1),
                at(base, 2),
                o_ptr as *const c_void,
                do_ptr as *const c_void,
                stats_ptr as *const f32,
                seq as *const i32,
                seq as *const i32,
                at(dbase, 0),
                at(dbase, 1),
                at(dbase, 2),
                ws,
            )
        };
        check(status, "backward")?;
    }
    drop(workspace);
    dqkv.into_tensor(&call.dev, (b * t, 3 * h))
}
