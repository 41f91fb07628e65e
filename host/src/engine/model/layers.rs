//! Layer descriptions for the model: where each layer's tensors live in the arenas, and the
//! names they get. The arithmetic is the backend's.

use crate::engine::arena::{Modality, TensorKind, TensorTable};
use crate::engine::backend::{ConvGeom, Region};

/// Batch-norm epsilon (PyTorch's default).
pub const BN_EPS: f64 = 1e-5;
/// Batch-norm momentum (PyTorch's default).
pub const BN_MOMENTUM: f64 = 0.1;

/// A bias-free square convolution.
#[derive(Debug, Clone)]
pub struct Conv {
    pub(crate) cin: usize,
    pub(crate) cout: usize,
    pub(crate) k: usize,
    pub(crate) stride: usize,
    pub(crate) pad: usize,
    pub(crate) w: Region,
}

impl Conv {
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn register(
        params: &mut TensorTable,
        name: &str,
        modality: Modality,
        cin: usize,
        cout: usize,
        k: usize,
        stride: usize,
        pad: usize,
    ) -> Conv {
        let w = params.push(
            format!("{name}.weight"),
            vec![cout, cin, k, k],
            TensorKind::ConvWeight,
            modality,
        );
        Conv {
            cin,
            cout,
            k,
            stride,
            pad,
            w,
        }
    }

    pub(crate) fn geom(&self, n: usize, h: usize, w: usize) -> ConvGeom {
        ConvGeom {
            cin: self.cin,
            cout: self.cout,
            k: self.k,
            stride: self.stride,
            pad: self.pad,
            n,
            h,
            w,
        }
    }
}

/// A batch normalisation: weight and bias adjacent in the parameters, running mean and
/// variance adjacent in the state, and a `num_batches_tracked` counter.
#[derive(Debug, Clone)]
pub struct Bn {
    pub(crate) c: usize,
    pub(crate) gb: Region,
    pub(crate) rs: Region,
    pub(crate) counter: usize,
    pub(crate) name: String,
}

impl Bn {
    pub(crate) fn register(
        params: &mut TensorTable,
        state: &mut TensorTable,
        counters: &mut Vec<(String, u64)>,
        name: &str,
        modality: Modality,
        c: usize,
    ) -> Bn {
        let g = params.push(
            format!("{name}.weight"),
            vec![c],
            TensorKind::BnWeight,
            modality,
        );
        params.push(
            format!("{name}.bias"),
            vec![c],
            TensorKind::BnBias,
            modality,
        );
        let m = state.push(
            format!("{name}.running_mean"),
            vec![c],
            TensorKind::RunningMean,
            modality,
        );
        state.push(
            format!("{name}.running_var"),
            vec![c],
            TensorKind::RunningVar,
            modality,
        );
        counters.push((format!("{name}.num_batches_tracked"), 0));
        Bn {
            c,
            gb: Region {
                offset: g.offset,
                len: 2 * c,
            },
            rs: Region {
                offset: m.offset,
                len: 2 * c,
            },
            counter: counters.len() - 1,
            name: name.to_string(),
        }
    }
}

/// A linear layer `y = x W^T + b` with `W` of shape `[out, inp]`.
#[derive(Debug, Clone)]
pub struct Linear {
    pub(crate) inp: usize,
    pub(crate) out: usize,
    pub(crate) w: Region,
    pub(crate) b: Region,
}

impl Linear {
    pub(crate) fn register(params: &mut TensorTable, name: &str, inp: usize, out: usize) -> Linear {
        let w = params.push(
            format!("{name}.weight"),
            vec![out, inp],
            TensorKind::LinearWeight,
            Modality::Fusion,
        );
        let b = params.push(
            format!("{name}.bias"),
            vec![out],
            TensorKind::LinearBias,
            Modality::Fusion,
        );
        Linear { inp, out, w, b }
    }

    /// The whole weight as a GEMM operand.
    pub(crate) fn spec(&self) -> crate::engine::backend::LinearSpec {
        self.block(0, self.inp)
    }

    /// Input columns `col0..col0 + inp` of the weight (the concat head's halves).
    pub(crate) fn block(&self, col0: usize, inp: usize) -> crate::engine::backend::LinearSpec {
        crate::engine::backend::LinearSpec {
            out: self.out,
            inp,
            ld: self.inp,
            off: self.w.offset + col0,
        }
    }
}
