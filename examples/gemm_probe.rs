use candle_core::{Device, Tensor};
use std::time::Instant;
fn t(name: &str, a: &Tensor, b: &Tensor, flops: f64) {
    let _ = a.matmul(b).unwrap();
    let n = 5;
    let s = Instant::now();
    for _ in 0..n {
        let _ = a.matmul(b).unwrap();
    }
    let dt = s.elapsed().as_secs_f64() / n as f64;
    println!(
        "{name:40} {:8.2} ms {:6.1} GFLOP/s",
        dt * 1e3,
        flops / dt / 1e9
    );
}
fn main() {
    let d = Device::Cpu;
    let r = |s: &[usize]| Tensor::randn(0f32, 1.0, s, &d).unwrap();
    let (n, h, i) = (3072usize, 768usize, 3072usize);
    let x = r(&[n, h]);
    let w = r(&[3 * h, h]);
    let wo = r(&[h, h]);
    let w1 = r(&[i, h]);
    let w2 = r(&[h, i]);
    let u = r(&[n, i]);
    t(
        "x Wqkv^T",
        &x,
        &w.t().unwrap(),
        2.0 * (n * h * 3 * h) as f64,
    );
    t("x Wo^T", &x, &wo.t().unwrap(), 2.0 * (n * h * h) as f64);
    t("x W1^T", &x, &w1.t().unwrap(), 2.0 * (n * h * i) as f64);
    t("u W2^T", &u, &w2.t().unwrap(), 2.0 * (n * h * i) as f64);
    let dqkv = r(&[n, 3 * h]);
    t("dqkv Wqkv", &dqkv, &w, 2.0 * (n * h * 3 * h) as f64);
    t("du W1", &u, &w1, 2.0 * (n * h * i) as f64);
    t("dy W2", &x, &w2, 2.0 * (n * h * i) as f64);
    let q = r(&[8, 12, 384, 64]);
    let k = r(&[8, 12, 384, 64]);
    let p = r(&[8, 12, 384, 384]);
    let f = 2.0 * (96 * 384 * 384 * 64) as f64;
    t("Q K^T", &q, &k.t().unwrap(), f);
    t("P V", &p, &k, f);
    t("P^T dC", &p.t().unwrap(), &k, f);
    t("dC V^T", &q, &k.t().unwrap(), f);
    let woc = wo.t().unwrap().contiguous().unwrap();
    t(
        "x Wo^T (pre-transposed)",
        &x,
        &woc,
        2.0 * (n * h * h) as f64,
    );
    let w1c = w1.t().unwrap().contiguous().unwrap();
    t(
        "x W1^T (pre-transposed)",
        &x,
        &w1c,
        2.0 * (n * h * i) as f64,
    );
    t(
        "x Wo^T again",
        &x,
        &wo.t().unwrap(),
        2.0 * (n * h * h) as f64,
    );
    // single-threaded gemm per batch, rayon over batches
    use rayon::prelude::*;
    let qv = q.flatten_all().unwrap().to_vec1::<f32>().unwrap();
    let kv = k.flatten_all().unwrap().to_vec1::<f32>().unwrap();
    for (name, rhs_cs, rhs_rs) in [
        ("QK^T batch-par", 64isize, 1isize),
        ("PV-like batch-par", 1, 64),
    ] {
        let mut out = vec![0f32; 96 * 384 * 384];
        let s = Instant::now();
        for _ in 0..5 {
            out.par_chunks_mut(384 * 384)
                .enumerate()
                .for_each(|(b, o)| unsafe {
                    gemm::gemm(
                        384,
                        384,
                        64,
                        o.as_mut_ptr(),
                        1,
                        384,
                        false,
                        qv[b * 384 * 64..].as_ptr(),
                        1,
                        64,
                        kv[b * 384 * 64..].as_ptr(),
                        rhs_cs,
                        rhs_rs,
                        0.0,
                        1.0,
                        false,
                        false,
                        false,
                        gemm::Parallelism::None,
                    );
                });
        }
        let dt = s.elapsed().as_secs_f64() / 5.0;
        println!("{name:40} {:8.2} ms {:6.1} GFLOP/s", dt * 1e3, f / dt / 1e9);
    }
}
