//! The parameter list of every engine kernel, in the order and types of its `extern "C"`
//! definition in `kernels/engine_*.cu` (and of part 1's OGM-GE kernels, `ogm_sgd` and the
//! scores, balance, statistics and modulation kernels, which the engine reuses). A test
//! compares each list with the kernel's `.entry` in the PTX (feature `cuda`), and the emulator
//! compares it with the C++ function type, so a mismatch cannot go unnoticed.

use super::KernelSpec;
use super::ParamTy::{Ptr, F32, F64, U32, U64};

macro_rules! kernels {
    ($($(#[$doc:meta])* $konst:ident = $module:literal . $name:ident ($($p:ident: $ty:ident),* $(,)?);)*) => {
        $(
            $(#[$doc])*
            pub const $konst: KernelSpec = KernelSpec {
                module: $module,
                name: stringify!($name),
                params: &[$((stringify!($p), $ty)),*],
            };
        )*
        /// Every kernel above.
        pub const ALL: &[KernelSpec] = &[$($konst),*];
    };
}

kernels! {
    /// `C = alpha op(A) op(B) + beta C`, tiled, optional split-K. With `moments` non-null (and
    /// no split), each block also writes its rows' moments for batch norm (three f64 values
    /// per row and column tile: the tile's first value, the sum and the sum of squares of the
    /// deviations from it); every `GEMM*` kernel with that parameter does the same.
    GEMM = "engine_gemm".eng_gemm(m: U32, n: U32, k: U32, alpha: F32, a: Ptr, rsa: U32,
        csa: U32, b: Ptr, rsb: U32, csb: U32, beta: F32, c: Ptr, ldc: U32, k_split: U32,
        split_stride: U64, moments: Ptr);
    /// The same product with 128 x 128 tiles (both output dimensions at least a tile).
    GEMM_BIG = "engine_gemm".eng_gemm_big(m: U32, n: U32, k: U32, alpha: F32, a: Ptr, rsa: U32,
        csa: U32, b: Ptr, rsb: U32, csb: U32, beta: F32, c: Ptr, ldc: U32, k_split: U32,
        split_stride: U64, moments: Ptr);
    /// Sums split-K slices in a fixed order.
    SUM_SLICES = "engine_gemm".eng_sum_slices(p: Ptr, splits: U32, split_stride: U64,
        rows: U32, cols: U32, alpha: F32, beta: F32, c: Ptr, ldc: U32);
    /// Lowers a CNHW input into columns.
    IM2COL = "engine_conv".eng_im2col(x: Ptr, col: Ptr, cin: U32, n: U32, h: U32, w: U32,
        k: U32, stride: U32, pad: U32, oh: U32, ow: U32);
    /// The adjoint of `IM2COL` (a gather).
    COL2IM = "engine_conv".eng_col2im(col: Ptr, dx: Ptr, cin: U32, n: U32, h: U32, w: U32,
        k: U32, stride: U32, pad: U32, oh: U32, ow: U32, accumulate: U32);
    /// Batch norm, training forward: the sums of each slice of a split channel.
    BN_TRAIN_PARTIAL = "engine_norm".eng_bn_train_partial(x: Ptr, part: Ptr, len: U32,
        slices: U32);
    /// Batch norm, training forward, blocks per channel and slice.
    /// `saved`: mean, inverse deviation, scale and shift (c each); `residual` may be null;
    /// `tile_w > 0`: `part` holds the row moments of the GEMM that wrote `x`, in column tiles of
    /// `tile_w`.
    BN_TRAIN = "engine_norm".eng_bn_train(x: Ptr, y: Ptr, gamma: Ptr, beta: Ptr,
        running_mean: Ptr, running_var: Ptr, saved: Ptr, residual: Ptr, len: U32,
        momentum: F64, eps: F64, relu: U32, part: Ptr, slices: U32, tile_w: U32);
    /// Batch norm with running statistics.
    BN_EVAL = "engine_norm".eng_bn_eval(x: Ptr, y: Ptr, gamma: Ptr, beta: Ptr,
        running_mean: Ptr, running_var: Ptr, residual: Ptr, len: U32, eps: F64, relu: U32,
        slices: U32);
    /// The evaluation batch norm's running mean, inverse deviation, scale and shift in
    /// `BN_TRAIN`'s `saved` layout (for `MAXPOOL_FORWARD`'s `bn_saved`).
    BN_EVAL_SAVED = "engine_norm".eng_bn_eval_saved(gamma: Ptr, beta: Ptr, running_mean: Ptr,
        running_var: Ptr, saved: Ptr, c: U32, eps: F64);
    /// Batch norm backward: the sums of each slice of a split channel.
    BN_BACKWARD_PARTIAL = "engine_norm".eng_bn_backward_partial(x: Ptr, saved: Ptr,
        dy: Ptr, relu: U32, part: Ptr, len: U32, slices: U32);
    /// Batch norm backward, blocks per channel and slice.
    BN_BACKWARD = "engine_norm".eng_bn_backward(x: Ptr, gamma: Ptr, saved: Ptr, dy: Ptr,
        relu: U32, dx: Ptr, dgamma: Ptr, dbeta: Ptr, len: U32, part: Ptr, slices: U32);
    /// `buf[..n] = value`.
    FILL = "engine_ew".eng_fill(buf: Ptr, n: U64, value: F32);
    /// `dst[..n] = src[..n]`.
    COPY = "engine_ew".eng_copy(dst: Ptr, src: Ptr, n: U64);
    /// `dy = 0` where `out <= 0`.
    RELU_BACKWARD = "engine_ew".eng_relu_backward(out: Ptr, dy: Ptr, n: U64);
    /// `y += x`.
    ADD_ASSIGN = "engine_ew".eng_add_assign(y: Ptr, x: Ptr, n: U64);
    /// `[a][b][inner]` to `[b][a][inner]`.
    SWAP_OUTER = "engine_ew".eng_swap_outer(x: Ptr, y: Ptr, a: U32, b: U32, inner: U32);
    /// Max pooling with arg-maxima; with `bn_saved` set, of the ReLU'd output of the training
    /// batch norm (over `bn_c` channels) whose input `x` is, applied as each value is read.
    MAXPOOL_FORWARD = "engine_ew".eng_maxpool_forward(x: Ptr, y: Ptr, idx: Ptr, planes: U32,
        h: U32, w: U32, k: U32, stride: U32, pad: U32, oh: U32, ow: U32, bn_saved: Ptr,
        bn_c: U32);
    /// Max pooling backward (a gather).
    MAXPOOL_BACKWARD = "engine_ew".eng_maxpool_backward(dy: Ptr, idx: Ptr, dx: Ptr,
        planes: U32, h: U32, w: U32, k: U32, stride: U32, pad: U32, oh: U32, ow: U32);
    /// Average over runs into `[b][c]` features.
    AVGPOOL_FORWARD = "engine_ew".eng_avgpool_forward(x: Ptr, feat: Ptr, c: U32, b: U32,
        run: U32);
    /// Backward of `AVGPOOL_FORWARD`.
    AVGPOOL_BACKWARD = "engine_ew".eng_avgpool_backward(dfeat: Ptr, dx: Ptr, c: U32, b: U32,
        run: U32);
    /// `y[r][o] += scale * bias[o]`.
    BIAS_ADD = "engine_ew".eng_bias_add(y: Ptr, bias: Ptr, rows: U32, out: U32, scale: F32);
    /// Column sums (bias gradients).
    COL_SUM = "engine_ew".eng_col_sum(dy: Ptr, db: Ptr, rows: U32, out: U32);
    /// Gated fusion forward.
    GATE_FORWARD = "engine_ew".eng_gate_forward(gx: Ptr, y: Ptr, gate: Ptr, z: Ptr, n: U64);
    /// Gated fusion backward.
    GATE_BACKWARD = "engine_ew".eng_gate_backward(gate: Ptr, y: Ptr, dz: Ptr, dgx: Ptr,
        dy: Ptr, n: U64);
    /// FiLM forward.
    FILM_FORWARD = "engine_ew".eng_film_forward(h: Ptr, x: Ptr, z: Ptr, rows: U32, d: U32);
    /// FiLM backward.
    FILM_BACKWARD = "engine_ew".eng_film_backward(h: Ptr, x: Ptr, dz: Ptr, dh: Ptr, dx: Ptr,
        rows: U32, d: U32);
    /// Softmax cross-entropy: per-row losses and (optionally) the logit gradient.
    SOFTMAX_XENT = "engine_ew".eng_softmax_xent(logits: Ptr, labels: Ptr, rows: U32,
        classes: U32, dlogits: Ptr, losses: Ptr, status: Ptr);
    /// Mean of the per-row losses into one slot.
    SUM_LOSSES = "engine_ew".eng_sum_losses(losses: Ptr, rows: U32, out: Ptr);
    /// Adam / AdamW.
    ADAM = "engine_ew".eng_adam(p: Ptr, g: Ptr, m: Ptr, v: Ptr, n: U64, step_size: F32,
        bc2_sqrt: F32, b1: F32, b2: F32, eps: F32, wd: F32, decay: F32, decoupled: U32);
    /// SGD with momentum and weight decay (part 1's kernel, kernels/sgd.cu).
    SGD = "sgd".ogm_sgd(params: Ptr, grads: Ptr, momentum_buf: Ptr, n: U64, lr: F32,
        momentum: F32, weight_decay: F32, first_step: U32);
    /// OGM-GE's per-modality true-class scores into a `BalanceState` (part 1's kernel,
    /// kernels/scores.cu): grid 2 (audio, visual), block `SCORES_BLOCK`.
    SCORES = "scores".ogm_batch_scores(logits_audio: Ptr, logits_visual: Ptr, labels: Ptr,
        batch: U32, classes: U32, state: Ptr, status: Ptr);
    /// A step's loss stage in one pass (kernels/scores.cu): the fused, audio-only and
    /// visual-only mean cross-entropies into `losses[0..3)`, the fused logits' gradient, the
    /// scores and the balance; grid 1, block `SCORES_BLOCK`.
    STEP_LOSSES = "scores".ogm_step_losses(logits: Ptr, logits_audio: Ptr, logits_visual: Ptr,
        labels: Ptr, batch: U32, classes: U32, dlogits: Ptr, row_losses: Ptr, state: Ptr,
        status: Ptr, losses: Ptr, alpha: F64, active: U32);
    /// Ratios and coefficients from the scores (kernels/balance.cu): one thread.
    BALANCE = "balance".ogm_balance(st: Ptr, alpha: F64, active: U32);
    /// Per-tensor gradient statistics (kernels/stats.cu): one warp per chunk.
    TENSOR_STATS = "stats".ogm_tensor_stats(grads: Ptr, tensors: Ptr, num_tensors: U32,
        total_chunks: U64, partials: Ptr, counters: Ptr, out: Ptr, status: Ptr);
    /// Scale and Gaussian noise in place (kernels/modulate.cu).
    MODULATE = "modulate".ogm_modulate(grads: Ptr, tensors: Ptr, num_tensors: U32, stats: Ptr,
        state: Ptr, step_key: U64, total_chunks: U64, noise: U32, max_z: F32, status: Ptr);
    /// `GEMM` with TF32 tensor cores (`mma.sync` m16n8k8, f32 accumulation), 128 x 128 tiles;
    /// same parameters and split-K convention.
    GEMM_TF32 = "engine_gemm".eng_gemm_tf32(m: U32, n: U32, k: U32, alpha: F32, a: Ptr, rsa: U32,
        csa: U32, b: Ptr, rsb: U32, csb: U32, beta: F32, c: Ptr, ldc: U32, k_split: U32,
        split_stride: U64, moments: Ptr);
    /// `GEMM` with BF16 tensor cores (`mma.sync` m16n8k16, operands rounded to BF16 with ties to
    /// even, f32 accumulation), 128 x 128 tiles; same parameters and split-K convention.
    GEMM_BF16 = "engine_gemm".eng_gemm_bf16(m: U32, n: U32, k: U32, alpha: F32, a: Ptr, rsa: U32,
        csa: U32, b: Ptr, rsb: U32, csb: U32, beta: F32, c: Ptr, ldc: U32, k_split: U32,
        split_stride: U64, moments: Ptr);
    /// `GEMM` with B gathered from a convolution's input (implicit GEMM, forward):
    /// `C = alpha A col + beta C`, `col` the `eng_im2col` lowering of `x` (never materialised);
    /// 64 x 64 tiles, same arithmetic and split-K convention as `GEMM`.
    GEMM_CONV_FWD = "engine_gemm".eng_gemm_conv_fwd(m: U32, n: U32, k: U32, alpha: F32, a: Ptr,
        rsa: U32, csa: U32, x: Ptr, cin: U32, batch: U32, h: U32, w: U32, ksize: U32,
        stride: U32, pad: U32, oh: U32, ow: U32, beta: F32, c: Ptr, ldc: U32, k_split: U32,
        split_stride: U64, moments: Ptr);
    /// `GEMM_CONV_FWD` with the 128 x 128 tiles of `GEMM_BIG`.
    GEMM_BIG_CONV_FWD = "engine_gemm".eng_gemm_big_conv_fwd(m: U32, n: U32, k: U32, alpha: F32,
        a: Ptr, rsa: U32, csa: U32, x: Ptr, cin: U32, batch: U32, h: U32, w: U32, ksize: U32,
        stride: U32, pad: U32, oh: U32, ow: U32, beta: F32, c: Ptr, ldc: U32, k_split: U32,
        split_stride: U64, moments: Ptr);
    /// Implicit-GEMM weight gradient: `C = alpha A col^T + beta C` (A: dy), `col` gathered from
    /// `x`; 64 x 64 tiles, same arithmetic and split-K convention as `GEMM`.
    GEMM_CONV_WGRAD = "engine_gemm".eng_gemm_conv_wgrad(m: U32, n: U32, k: U32, alpha: F32,
        a: Ptr, rsa: U32, csa: U32, x: Ptr, cin: U32, batch: U32, h: U32, w: U32, ksize: U32,
        stride: U32, pad: U32, oh: U32, ow: U32, beta: F32, c: Ptr, ldc: U32, k_split: U32,
        split_stride: U64);
    /// `GEMM_CONV_WGRAD` with the 128 x 128 tiles of `GEMM_BIG`.
    GEMM_BIG_CONV_WGRAD = "engine_gemm".eng_gemm_big_conv_wgrad(m: U32, n: U32, k: U32,
        alpha: F32, a: Ptr, rsa: U32, csa: U32, x: Ptr, cin: U32, batch: U32, h: U32, w: U32,
        ksize: U32, stride: U32, pad: U32, oh: U32, ow: U32, beta: F32, c: Ptr, ldc: U32,
        k_split: U32, split_stride: U64);
    /// `eng_gemm_tf32` with B gathered from a convolution's input: the forward product.
    GEMM_TF32_CONV_FWD = "engine_gemm".eng_gemm_tf32_conv_fwd(m: U32, n: U32, k: U32,
        alpha: F32, a: Ptr, rsa: U32, csa: U32, x: Ptr, cin: U32, batch: U32, h: U32, w: U32,
        ksize: U32, stride: U32, pad: U32, oh: U32, ow: U32, beta: F32, c: Ptr, ldc: U32,
        k_split: U32, split_stride: U64, moments: Ptr);
    /// `eng_gemm_tf32` with B gathered from a convolution's input: the weight gradient.
    GEMM_TF32_CONV_WGRAD = "engine_gemm".eng_gemm_tf32_conv_wgrad(m: U32, n: U32, k: U32,
        alpha: F32, a: Ptr, rsa: U32, csa: U32, x: Ptr, cin: U32, batch: U32, h: U32, w: U32,
        ksize: U32, stride: U32, pad: U32, oh: U32, ow: U32, beta: F32, c: Ptr, ldc: U32,
        k_split: U32, split_stride: U64);
    /// `eng_gemm_bf16` with B gathered from a convolution's input: the forward product.
    GEMM_BF16_CONV_FWD = "engine_gemm".eng_gemm_bf16_conv_fwd(m: U32, n: U32, k: U32,
        alpha: F32, a: Ptr, rsa: U32, csa: U32, x: Ptr, cin: U32, batch: U32, h: U32, w: U32,
        ksize: U32, stride: U32, pad: U32, oh: U32, ow: U32, beta: F32, c: Ptr, ldc: U32,
        k_split: U32, split_stride: U64, moments: Ptr);
    /// `eng_gemm_bf16` with B gathered from a convolution's input: the weight gradient.
    GEMM_BF16_CONV_WGRAD = "engine_gemm".eng_gemm_bf16_conv_wgrad(m: U32, n: U32, k: U32,
        alpha: F32, a: Ptr, rsa: U32, csa: U32, x: Ptr, cin: U32, batch: U32, h: U32, w: U32,
        ksize: U32, stride: U32, pad: U32, oh: U32, ow: U32, beta: F32, c: Ptr, ldc: U32,
        k_split: U32, split_stride: U64);
    /// Implicit-GEMM data gradient of a stride-1 convolution: `C = alpha A B + beta C` with
    /// `A` the weights with their outer dimensions swapped (`cin x cout k k`), `B` gathered from
    /// `dy` (`cout x batch x oh x ow`) and `C` the input gradient (`cin x batch h w`); 64 x 64
    /// tiles, same arithmetic and split-K convention as `GEMM`.
    GEMM_CONV_DGRAD = "engine_gemm".eng_gemm_conv_dgrad(m: U32, n: U32, k: U32, alpha: F32,
        a: Ptr, rsa: U32, csa: U32, dy: Ptr, cout: U32, batch: U32, oh: U32, ow: U32,
        ksize: U32, pad: U32, h: U32, w: U32, beta: F32, c: Ptr, ldc: U32, k_split: U32,
        split_stride: U64);
    /// `GEMM_CONV_DGRAD` with the 128 x 128 tiles of `GEMM_BIG`.
    GEMM_BIG_CONV_DGRAD = "engine_gemm".eng_gemm_big_conv_dgrad(m: U32, n: U32, k: U32,
        alpha: F32, a: Ptr, rsa: U32, csa: U32, dy: Ptr, cout: U32, batch: U32, oh: U32,
        ow: U32, ksize: U32, pad: U32, h: U32, w: U32, beta: F32, c: Ptr, ldc: U32,
        k_split: U32, split_stride: U64);
    /// `GEMM_CONV_DGRAD` on the TF32 tensor cores (`eng_gemm_tf32`'s tiles).
    GEMM_TF32_CONV_DGRAD = "engine_gemm".eng_gemm_tf32_conv_dgrad(m: U32, n: U32, k: U32,
        alpha: F32, a: Ptr, rsa: U32, csa: U32, dy: Ptr, cout: U32, batch: U32, oh: U32,
        ow: U32, ksize: U32, pad: U32, h: U32, w: U32, beta: F32, c: Ptr, ldc: U32,
        k_split: U32, split_stride: U64);
    /// `GEMM_CONV_DGRAD` on the BF16 tensor cores (`eng_gemm_bf16`'s tiles).
    GEMM_BF16_CONV_DGRAD = "engine_gemm".eng_gemm_bf16_conv_dgrad(m: U32, n: U32, k: U32,
        alpha: F32, a: Ptr, rsa: U32, csa: U32, dy: Ptr, cout: U32, batch: U32, oh: U32,
        ow: U32, ksize: U32, pad: U32, h: U32, w: U32, beta: F32, c: Ptr, ldc: U32,
        k_split: U32, split_stride: U64);
}
