//! Launchers of `layer_norm_forward.cu` and `layer_norm_backward.cu` (twins in
//! `ops::layer_norm`).

use candle_core::{DType, Result, Tensor};

use super::launch::{device, launch, output, output_of, read, tensor, vectorisable};
use super::{
    row_blocks, typed, LayerNormParams, LAYER_NORM_BACKWARD, LAYER_NORM_FORWARD, ROW_THREADS,
};
use crate::ops::LayerNormSaved;

pub fn layer_norm_forward(
    x: &Tensor,
    residual: Option<&Tensor>,
    bias: Option<&Tensor>,
    gamma: &Tensor,
    beta: &Tensor,
    eps: f32,
) -> Result<(Tensor, LayerNormSaved)> {
    let (rows, hidden) = x.dims2()?;
    let dev = device(x)?;
    let inputs: Vec<&Tensor> = [Some(x), residual, bias, Some(gamma), Some(beta)]
        .into_iter()
        .flatten()
        .collect();
    let p = LayerNormParams {
        rows: rows as u32,
        hidden: hidden as u32,
        eps,
        has_residual: residual.is_some().into(),
        has_bias: bias.is_some().into(),
        vectorised: vectorisable(hidden, &inputs),
    };
    let (y, xhat) = (
        output_of(&dev, x.dtype(), rows * hidden)?,
        output_of(&dev, x.dtype(), rows * hidden)?,
    );
    let rstd = output(&dev, rows)?;
    // An absent input is passed as `x` and never read (its flag is 0).
    let reads = [
        Some(x),
        residual.or(Some(x)),
        bias.or(Some(gamma)),
        Some(gamma),
        Some(beta),
    ];
    let [xr, rr, br, gr, betar] = reads.map(|t| read(t.expect("present")));
    let (xr, rr, br, gr, betar) = (xr?, rr?, br?, gr?, betar?);
    let (xv, rv, bv, gv, betav) = (
        xr.view()?,
        rr.view()?,
        br.view()?,
        gr.view()?,
        betar.view()?,
    );
    let name = typed("layer_norm_forward", x.dtype())?;
    launch!(dev, LAYER_NORM_FORWARD, name, row_blocks(rows), ROW_THREADS;
        &xv, &rv, &bv, &gv, &betav, &y, &xhat, &rstd, &p)?;
    Ok((
        y.into_tensor(&dev, (rows, hidden))?,
        LayerNormSaved {
            xhat: xhat.into_tensor(&dev, (rows, hidden))?,
            rstd: tensor(rstd, &dev, rows)?,
        },
    ))
}

pub fn layer_norm_backward(
    dout: &Tensor,
    dresidual: Option<&Tensor>,
    saved: &LayerNormSaved,
    gamma: &Tensor,
) -> Result<Tensor> {
    let (rows, hidden) = dout.dims2()?;
    if saved.rstd.dtype() != DType::F32 {
        candle_core::bail!("layer_norm_backward: rstd must be f32");
    }
    let dev = device(dout)?;
    let inputs: Vec<&Tensor> = [Some(dout), dresidual, Some(&saved.xhat), Some(gamma)]
        .into_iter()
        .flatten()
        .collect();
    let p = LayerNormParams {
        rows: rows as u32,
        hidden: hidden as u32,
        eps: 0.0,
        has_residual: dresidual.is_some().into(),
        has_bias: 0,
        vectorised: vectorisable(hidden, &inputs),
    };
    let dx = output_of(&dev, dout.dtype(), rows * hidden)?;
    let (dr, rr, xr, sr, gr) = (
        read(dout)?,
        read(dresidual.unwrap_or(dout))?,
        read(&saved.xhat)?,
        read(&saved.rstd)?,
        read(gamma)?,
    );
    let (dv, rv, xv, sv, gv) = (dr.view()?, rr.view()?, xr.view()?, sr.view()?, gr.view()?);
    let name = typed("layer_norm_backward", dout.dtype())?;
    launch!(dev, LAYER_NORM_BACKWARD, name, row_blocks(rows), ROW_THREADS;
        &dv, &rv, &xv, &sv, &gv, &dx, &p)?;
    dx.into_tensor(&dev, (rows, hidden))
}
