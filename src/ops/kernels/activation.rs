//! Launchers of `bias_activation.cu` and `activation_backward.cu` (twins in
//! `ops::activation`).

use candle_core::{Result, Tensor};

use super::launch::{device, grid_stride_blocks, launch, output_of, read, vectorisable};
use super::{params, typed, ActivationParams, ACTIVATION_BACKWARD, BIAS_ACTIVATION};
use crate::ops::Activation;

// The kernels switch on the codes of `cuda/params.h`.
const _: () = assert!(params::ACT_GELU == 0 && params::ACT_GELU_TANH == 1 && params::ACT_RELU == 2);

pub fn bias_activation_forward(
    x: &Tensor,
    bias: &Tensor,
    act: Activation,
) -> Result<(Tensor, Tensor)> {
    let (rows, width) = x.dims2()?;
    let dev = device(x)?;
    let elements = rows * width;
    let p = ActivationParams {
        elements: elements as u64,
        width: width as u32,
        activation: act.code(),
        vectorised: vectorisable(width, &[x, bias]),
    };
    let (u, a) = (
        output_of(&dev, x.dtype(), elements)?,
        output_of(&dev, x.dtype(), elements)?,
    );
    let (xr, br) = (read(x)?, read(bias)?);
    let (xv, bv) = (xr.view()?, br.view()?);
    let name = typed("bias_activation", x.dtype())?;
    launch!(dev, BIAS_ACTIVATION, name, grid_stride_blocks(elements), 256; &xv, &bv, &u, &a, &p)?;
    Ok((
        u.into_tensor(&dev, (rows, width))?,
        a.into_tensor(&dev, (rows, width))?,
    ))
}

pub fn activation_backward(dout: &Tensor, u: &Tensor, act: Activation) -> Result<Tensor> {
    let dev = device(dout)?;
    let elements = dout.elem_count();
    let p = ActivationParams {
        elements: elements as u64,
        width: 1,
        activation: act.code(),
        vectorised: vectorisable(elements, &[dout, u]),
    };
    let du = output_of(&dev, dout.dtype(), elements)?;
    let (dr, ur) = (read(dout)?, read(u)?);
    let (dv, uv) = (dr.view()?, ur.view()?);
    let name = typed("activation_backward", dout.dtype())?;
    launch!(dev, ACTIVATION_BACKWARD, name, grid_stride_blocks(elements), 256; &dv, &uv, &du, &p)?;
    du.into_tensor(&dev, dout.shape())
}
