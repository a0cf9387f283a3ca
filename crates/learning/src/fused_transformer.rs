//! The transformer's training step and forward pass, written out by hand on reused buffers
//! (the candle version in [`crate::model`] is the reference the tests check it against).
//!
//! Every large product (qkv, attention output projection, MLP, output layer, and their
//! weight and input gradients) runs on [`crate::kernel`], so its bits do not depend on the
//! SIMD level or the thread count. Attention and LayerNorm are plain scalar loops in a fixed
//! order (Rust never contracts `a * b + c` into an FMA), run in parallel over samples or
//! rows: every value is computed by one task from start to end, so the thread count cannot
//! change it. Per-parameter gradients are reduced over rows in row order, in parallel over
//! the parameter's columns (or an embedding's rows): each element by one task, in order.
//!
//! A batch of `n` samples is `rows = n * seq` positions, sample-major; activations are
//! `[rows, width]` row-major. The qkv row of a position is `[q | k | v]`, each `dim` wide,
//! head `h` owning columns `h * head_dim..(h + 1) * head_dim` of each (PyTorch's
//! `qkv.split(dim, -1)` then `.view(n, seq, heads, head_dim)`).

use rayon::prelude::*;

use crate::error::Result;
use crate::fused_mlp::{linear_forward, softmax_cross_entropy, Activation, LayerRef};
use crate::kernel::{matmul, Accumulate, Kernel, MatRef};
use crate::model::{Model, ModelSpec, LAYER_NORM_EPS};
use crate::samples::Samples;
use crate::train::{Stepper, TrainConfig};

/// Parameters of one block, and their offsets in it (model order, see
/// [`ModelSpec::param_shapes`]).
const BLOCK_PARAMS: usize = 12;
const LN1_W: usize = 0;
const LN1_B: usize = 1;
const QKV_W: usize = 2;
const QKV_B: usize = 3;
const PROJ_W: usize = 4;
const PROJ_B: usize = 5;
const LN2_W: usize = 6;
const LN2_B: usize = 7;
const FC_W: usize = 8;
const FC_B: usize = 9;
const MLP_PROJ_W: usize = 10;
const MLP_PROJ_B: usize = 11;
/// Offsets of the head's parameters after the blocks.
const NORM_W: usize = 0;
const NORM_B: usize = 1;
const OUT_W: usize = 2;
const OUT_B: usize = 3;
/// The embeddings.
const TOK: usize = 0;
const POS: usize = 1;

/// Sizes of a transformer spec.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Geometry {
    pub(crate) context: usize,
    pub(crate) vocab: usize,
    dim: usize,
    heads: usize,
    layers: usize,
}

impl Geometry {
    pub(crate) fn of(spec: &ModelSpec) -> Self {
        let ModelSpec::Transformer {
            context,
            vocab,
            dim,
            heads,
            layers,
        } = *spec
        else {
            unreachable!("only transformers are routed here");
        };
        Self {
            context,
            vocab,
            dim,
            heads,
            layers,
        }
    }

    fn head_dim(&self) -> usize {
        self.dim / self.heads
    }

    /// Index of block `l`'s first parameter.
    fn block(&self, l: usize) -> usize {
        2 + BLOCK_PARAMS * l
    }

    /// Index of the head's first parameter.
    fn head(&self) -> usize {
        self.block(self.layers)
    }

    /// Segment of parameter `index`: 0 the embeddings, `1 + l` block `l`, `layers + 1` the
    /// head.
    fn segment_of(&self, index: usize) -> usize {
        if index < 2 {
            0
        } else {
            (1 + (index - 2) / BLOCK_PARAMS).min(self.layers + 1)
        }
    }
}

/// What the backward pass needs of one block's forward pass.
#[derive(Default)]
struct BlockActivations {
    /// LayerNorm 1: the normalised input (before gain and bias), `1 / std` per row, and the
    /// output.
    xhat1: Vec<f32>,
    rstd1: Vec<f32>,
    ln1: Vec<f32>,
    /// `[rows, 3 * dim]`.
    qkv: Vec<f32>,
    /// Attention probabilities `[n, heads, seq, seq]` (zero above the diagonal).
    probs: Vec<f32>,
    /// Attention output before its projection, `[rows, dim]`.
    attn: Vec<f32>,
    /// The residual stream after the attention half.
    mid: Vec<f32>,
    xhat2: Vec<f32>,
    rstd2: Vec<f32>,
    ln2: Vec<f32>,
    /// MLP hidden layer after ReLU, `[rows, 4 * dim]`.
    hidden: Vec<f32>,
}

/// The forward pass's buffers, sized for `n` samples of `seq` positions.
#[derive(Default)]
pub(crate) struct Activations {
    n: usize,
    seq: usize,
    tokens: Vec<u32>,
    /// The residual stream: `stream[0]` the embeddings, `stream[l + 1]` block `l`'s output.
    stream: Vec<Vec<f32>>,
    blocks: Vec<BlockActivations>,
    xhat_final: Vec<f32>,
    rstd_final: Vec<f32>,
    normed: Vec<f32>,
    logits: Vec<f32>,
}

fn fit(buffer: &mut Vec<f32>, len: usize) {
    buffer.resize(len, 0.0);
}

impl Activations {
    fn fit(&mut self, geo: &Geometry, n: usize, seq: usize) {
        let (d, rows) = (geo.dim, n * seq);
        self.n = n;
        self.seq = seq;
        self.tokens.resize(rows, 0);
        self.stream.resize_with(geo.layers + 1, Vec::new);
        for s in &mut self.stream {
            fit(s, rows * d);
        }
        self.blocks.resize_with(geo.layers, Default::default);
        for b in &mut self.blocks {
            for (buffer, width) in [
                (&mut b.xhat1, d),
                (&mut b.ln1, d),
                (&mut b.qkv, 3 * d),
                (&mut b.attn, d),
                (&mut b.mid, d),
                (&mut b.xhat2, d),
                (&mut b.ln2, d),
                (&mut b.hidden, 4 * d),
            ] {
                fit(buffer, rows * width);
            }
            fit(&mut b.rstd1, rows);
            fit(&mut b.rstd2, rows);
            fit(&mut b.probs, n * geo.heads * seq * seq);
        }
        fit(&mut self.xhat_final, rows * d);
        fit(&mut self.normed, rows * d);
        fit(&mut self.rstd_final, rows);
        fit(&mut self.logits, rows * geo.vocab);
    }
}

/// `output = input · weightᵀ + bias` (then ReLU) for `rows` rows.
fn linear(
    kernel: Kernel,
    input: &[f32],
    rows: usize,
    weight: &[f32],
    bias: &[f32],
    activation: Activation,
    output: &mut [f32],
) {
    let layer = LayerRef {
        fan_in: weight.len() / bias.len(),
        fan_out: bias.len(),
        weight,
        bias,
    };
    linear_forward(kernel, layer, input, rows, activation, output);
}

/// LayerNorm over rows of `dim`: `xhat = (x - mean) / sqrt(var + eps)` (population
/// variance), `y = xhat * weight + bias`; keeps `xhat` and `1 / sqrt(var + eps)`.
fn layer_norm(
    x: &[f32],
    weight: &[f32],
    bias: &[f32],
    xhat: &mut [f32],
    rstd: &mut [f32],
    y: &mut [f32],
) {
    let d = weight.len();
    x.par_chunks_exact(d)
        .zip(xhat.par_chunks_exact_mut(d))
        .zip(rstd.par_iter_mut())
        .zip(y.par_chunks_exact_mut(d))
        .with_min_len(ROWS_PER_TASK)
        .for_each(|(((x, xhat), rstd), y)| {
            let mean = x.iter().fold(0f32, |acc, v| acc + v) / d as f32;
            let var = x.iter().fold(0f32, |acc, v| acc + (v - mean) * (v - mean)) / d as f32;
            let r = 1.0 / (var + LAYER_NORM_EPS).sqrt();
            *rstd = r;
            for ((((h, y), x), w), b) in xhat.iter_mut().zip(y).zip(x).zip(weight).zip(bias) {
                *h = (x - mean) * r;
                *y = *h * w + b;
            }
        });
}

/// Rows one task of a row-wise pass (LayerNorm and its input gradient) takes at least.
const ROWS_PER_TASK: usize = 64;

/// Columns one task of a reduction over rows (a gain, bias or embedding gradient) owns: it
/// sums them over every row in row order, so splitting by columns cannot change a bit.
const COLUMNS_PER_TASK: usize = 16;

/// Backward of [`layer_norm`] for the output gradient `dy`: adds the input gradient to `dx`
/// when given, and sets the gain and bias gradients when given (summed over rows in order).
fn layer_norm_backward(
    dy: &[f32],
    xhat: &[f32],
    rstd: &[f32],
    weight: &[f32],
    dx: Option<&mut [f32]>,
    grads: Option<(&mut Vec<f32>, &mut Vec<f32>)>,
) {
    let d = weight.len();
    if let Some((dw, db)) = grads {
        dw.par_chunks_mut(COLUMNS_PER_TASK)
            .zip(db.par_chunks_mut(COLUMNS_PER_TASK))
            .enumerate()
            .for_each(|(task, (dw, db))| {
                let start = task * COLUMNS_PER_TASK;
                dw.fill(0.0);
                db.fill(0.0);
                for (dy, xhat) in dy.chunks_exact(d).zip(xhat.chunks_exact(d)) {
                    for (((gw, gb), g), h) in dw
                        .iter_mut()
                        .zip(db.iter_mut())
                        .zip(&dy[start..])
                        .zip(&xhat[start..])
                    {
                        *gw += g * h;
                        *gb += g;
                    }
                }
            });
    }
    if let Some(dx) = dx {
        dx.par_chunks_exact_mut(d)
            .zip(dy.par_chunks_exact(d))
            .zip(xhat.par_chunks_exact(d))
            .zip(rstd.par_iter())
            .with_min_len(ROWS_PER_TASK)
            .for_each(|(((dx, dy), xhat), rstd)| {
                let (mut sum, mut sum_xhat) = (0f32, 0f32);
                for ((g, w), h) in dy.iter().zip(weight).zip(xhat) {
                    let gw = g * w;
                    sum += gw;
                    sum_xhat += gw * h;
                }
                let (mean, mean_xhat) = (sum / d as f32, sum_xhat / d as f32);
                for (((out, g), w), h) in dx.iter_mut().zip(dy).zip(weight).zip(xhat) {
                    *out += rstd * (g * w - mean - h * mean_xhat);
                }
            });
    }
}

/// Causal multi-head attention of each sample's `qkv` rows: probabilities into `probs`,
/// the weighted values into `out` `[rows, dim]`. Parallel over samples.
fn attention_forward(
    geo: &Geometry,
    n: usize,
    seq: usize,
    qkv: &[f32],
    probs: &mut [f32],
    out: &mut [f32],
) {
    let (d, heads, hd) = (geo.dim, geo.heads, geo.head_dim());
    let scale = 1.0 / (hd as f32).sqrt();
    out[..n * seq * d]
        .par_chunks_mut(seq * d)
        .zip(probs[..n * heads * seq * seq].par_chunks_mut(heads * seq * seq))
        .enumerate()
        .for_each_init(Vec::new, |keys, (b, (out, probs))| {
            let qkv = &qkv[b * seq * 3 * d..(b + 1) * seq * 3 * d];
            for h in 0..heads {
                transpose_head(qkv, d, seq, hd, d + h * hd, keys);
                let probs = &mut probs[h * seq * seq..(h + 1) * seq * seq];
                for i in 0..seq {
                    let q = &qkv[i * 3 * d + h * hd..][..hd];
                    let row = &mut probs[i * seq..(i + 1) * seq];
                    let scores = &mut row[..=i];
                    // Each score is `sum over c of q[c] * k[j][c]` from +0.0 in ascending c,
                    // as a dot product would sum it; computed for every key at once against
                    // the transposed keys, so the loop over keys vectorises.
                    scores.fill(0.0);
                    for (c, &qc) in q.iter().enumerate() {
                        for (score, &k) in scores.iter_mut().zip(&keys[c * seq..][..=i]) {
                            *score += qc * k;
                        }
                    }
                    let mut max = f32::NEG_INFINITY;
                    for score in scores.iter_mut() {
                        *score *= scale;
                        max = max.max(*score);
                    }
                    let mut sum = 0f32;
                    for p in scores.iter_mut() {
                        *p = (*p - max).exp();
                        sum += *p;
                    }
                    for p in scores.iter_mut() {
                        *p /= sum;
                    }
                    row[i + 1..].fill(0.0);
                    let o = &mut out[i * d + h * hd..][..hd];
                    o.fill(0.0);
                    for (j, &p) in row[..=i].iter().enumerate() {
                        let v = &qkv[j * 3 * d + 2 * d + h * hd..][..hd];
                        for (o, v) in o.iter_mut().zip(v) {
                            *o += p * v;
                        }
                    }
                }
            }
        });
}

/// Columns `at..at + hd` of a sample's `seq` qkv rows (one head's keys or values), transposed
/// into `out` as `[hd, seq]`.
fn transpose_head(qkv: &[f32], d: usize, seq: usize, hd: usize, at: usize, out: &mut Vec<f32>) {
    out.resize(hd * seq, 0.0);
    for j in 0..seq {
        for (c, &value) in qkv[j * 3 * d + at..][..hd].iter().enumerate() {
            out[c * seq + j] = value;
        }
    }
}

/// Backward of [`attention_forward`]: from the output gradient `dout` `[rows, dim]`, the
/// gradient of the qkv rows into `dqkv`. `scratch` holds `n * seq` values. Parallel over
/// samples.
#[allow(clippy::too_many_arguments)]
fn attention_backward(
    geo: &Geometry,
    n: usize,
    seq: usize,
    qkv: &[f32],
    probs: &[f32],
    dout: &[f32],
    scratch: &mut [f32],
    dqkv: &mut [f32],
) {
    let (d, heads, hd) = (geo.dim, geo.heads, geo.head_dim());
    let scale = 1.0 / (hd as f32).sqrt();
    dqkv[..n * seq * 3 * d]
        .par_chunks_mut(seq * 3 * d)
        .zip(scratch[..n * seq].par_chunks_mut(seq))
        .enumerate()
        .for_each_init(
            || (Vec::new(), Vec::new()),
            |(values, dq), (b, (dqkv, dp))| {
                let qkv = &qkv[b * seq * 3 * d..(b + 1) * seq * 3 * d];
                let dout = &dout[b * seq * d..(b + 1) * seq * d];
                dqkv.fill(0.0);
                dq.resize(hd, 0.0);
                for h in 0..heads {
                    transpose_head(qkv, d, seq, hd, 2 * d + h * hd, values);
                    let probs = &probs[(b * heads + h) * seq * seq..][..seq * seq];
                    for i in 0..seq {
                        let p = &probs[i * seq..][..=i];
                        let g = &dout[i * d + h * hd..][..hd];
                        // dp[j] = g · v[j] (ascending c, every j at once against the
                        // transposed values); then the softmax backward needs
                        // sum_j p[j] dp[j].
                        let dp = &mut dp[..=i];
                        dp.fill(0.0);
                        for (c, &gc) in g.iter().enumerate() {
                            for (x, &v) in dp.iter_mut().zip(&values[c * seq..][..=i]) {
                                *x += gc * v;
                            }
                        }
                        let weighted = p
                            .iter()
                            .zip(dp.iter())
                            .fold(0f32, |acc, (p, dp)| acc + p * dp);
                        let q = &qkv[i * 3 * d + h * hd..][..hd];
                        // Row i's query gradient gets terms only here: summed locally from
                        // +0.0 in ascending j, then stored.
                        dq.fill(0.0);
                        for (j, &p) in p.iter().enumerate() {
                            let ds = p * (dp[j] - weighted) * scale;
                            let k = &qkv[j * 3 * d + d + h * hd..][..hd];
                            for (a, &k) in dq.iter_mut().zip(k) {
                                *a += ds * k;
                            }
                            let (dk, dv) = dqkv[j * 3 * d + d..(j + 1) * 3 * d].split_at_mut(d);
                            for (a, &qc) in dk[h * hd..][..hd].iter_mut().zip(q) {
                                *a += ds * qc;
                            }
                            for (a, &gc) in dv[h * hd..][..hd].iter_mut().zip(g) {
                                *a += p * gc;
                            }
                        }
                        dqkv[i * 3 * d + h * hd..][..hd].copy_from_slice(dq);
                    }
                }
            },
        );
}

/// The forward pass over `acts.tokens` (`acts.n` samples of `acts.seq` positions); leaves
/// the logits in `acts.logits`.
fn forward(kernel: Kernel, geo: &Geometry, params: &[Vec<f32>], acts: &mut Activations) {
    let (d, seq) = (geo.dim, acts.seq);
    let rows = acts.n * seq;
    for (r, (h, &token)) in acts.stream[0]
        .chunks_exact_mut(d)
        .zip(&acts.tokens)
        .enumerate()
    {
        let tok = &params[TOK][token as usize * d..][..d];
        let pos = &params[POS][(r % seq) * d..][..d];
        for ((h, t), p) in h.iter_mut().zip(tok).zip(pos) {
            *h = t + p;
        }
    }
    for l in 0..geo.layers {
        let p = &params[geo.block(l)..geo.block(l + 1)];
        let (below, above) = acts.stream.split_at_mut(l + 1);
        let (x, out) = (&below[l], &mut above[0]);
        let a = &mut acts.blocks[l];
        layer_norm(
            x,
            &p[LN1_W],
            &p[LN1_B],
            &mut a.xhat1,
            &mut a.rstd1,
            &mut a.ln1,
        );
        linear(
            kernel,
            &a.ln1,
            rows,
            &p[QKV_W],
            &p[QKV_B],
            Activation::Identity,
            &mut a.qkv,
        );
        attention_forward(geo, acts.n, seq, &a.qkv, &mut a.probs, &mut a.attn);
        linear(
            kernel,
            &a.attn,
            rows,
            &p[PROJ_W],
            &p[PROJ_B],
            Activation::Identity,
            &mut a.mid,
        );
        for (m, x) in a.mid.iter_mut().zip(x.iter()) {
            *m += x;
        }
        layer_norm(
            &a.mid,
            &p[LN2_W],
            &p[LN2_B],
            &mut a.xhat2,
            &mut a.rstd2,
            &mut a.ln2,
        );
        linear(
            kernel,
            &a.ln2,
            rows,
            &p[FC_W],
            &p[FC_B],
            Activation::Relu,
            &mut a.hidden,
        );
        linear(
            kernel,
            &a.hidden,
            rows,
            &p[MLP_PROJ_W],
            &p[MLP_PROJ_B],
            Activation::Identity,
            out,
        );
        for (o, m) in out.iter_mut().zip(&a.mid) {
            *o += m;
        }
    }
    let p = &params[geo.head()..];
    layer_norm(
        &acts.stream[geo.layers],
        &p[NORM_W],
        &p[NORM_B],
        &mut acts.xhat_final,
        &mut acts.rstd_final,
        &mut acts.normed,
    );
    linear(
        kernel,
        &acts.normed,
        rows,
        &p[OUT_W],
        &p[OUT_B],
        Activation::Identity,
        &mut acts.logits,
    );
}

/// Token ids of `n` samples (`context + 1` byte values each) into `tokens` (the first
/// `context`) and `targets` (the last `context`). The values were checked to be token ids
/// when the samples were checked against the model.
fn gather(features: &[f32], context: usize, tokens: &mut [u32], targets: &mut [u32]) {
    for ((row, tokens), targets) in features
        .chunks_exact(context + 1)
        .zip(tokens.chunks_exact_mut(context))
        .zip(targets.chunks_exact_mut(context))
    {
        for (t, &v) in tokens.iter_mut().zip(&row[..context]) {
            *t = v as u32;
        }
        for (t, &v) in targets.iter_mut().zip(&row[1..]) {
            *t = v as u32;
        }
    }
}

/// A model's weights and forward buffers, for evaluation and sampling.
pub(crate) struct TransformerForward {
    geo: Geometry,
    params: Vec<Vec<f32>>,
    acts: Activations,
}

impl TransformerForward {
    pub(crate) fn new(model: &Model) -> Self {
        Self {
            geo: Geometry::of(model.spec()),
            params: model.params().iter().map(|p| p.values.clone()).collect(),
            acts: Activations::default(),
        }
    }

    /// Logits `[rows * context, vocab]` of `rows` samples (`context + 1` features each), and
    /// the target of every position.
    pub(crate) fn logits(
        &mut self,
        kernel: Kernel,
        features: &[f32],
        rows: usize,
        targets: &mut Vec<u32>,
    ) -> &[f32] {
        let t = self.geo.context;
        self.acts.fit(&self.geo, rows, t);
        targets.resize(rows * t, 0);
        gather(features, t, &mut self.acts.tokens, targets);
        forward(kernel, &self.geo, &self.params, &mut self.acts);
        &self.acts.logits
    }

    /// Logits `[tokens.len(), vocab]` of one sequence of at most `context` tokens.
    pub(crate) fn sequence_logits(&mut self, kernel: Kernel, tokens: &[u8]) -> &[f32] {
        debug_assert!(!tokens.is_empty() && tokens.len() <= self.geo.context);
        self.acts.fit(&self.geo, 1, tokens.len());
        for (t, &b) in self.acts.tokens.iter_mut().zip(tokens) {
            *t = u32::from(b);
        }
        forward(kernel, &self.geo, &self.params, &mut self.acts);
        &self.acts.logits
    }
}

/// Gradient buffers of the backward pass, `[rows, width]`.
#[derive(Default)]
struct Gradients {
    logits: Vec<f32>,
    /// Of the residual stream at the current depth.
    stream: Vec<f32>,
    /// Of a LayerNorm output (`[rows, dim]`).
    normed: Vec<f32>,
    hidden: Vec<f32>,
    attn: Vec<f32>,
    qkv: Vec<f32>,
    /// `n * seq` values for the attention backward.
    scratch: Vec<f32>,
}

pub(crate) struct TransformerStepper<'a> {
    shard: &'a Samples,
    geo: Geometry,
    /// Every parameter in model order, in the model's layout.
    params: Vec<Vec<f32>>,
    trainable: Vec<bool>,
    /// Per parameter: its gradient and velocity (empty when frozen, velocity also empty
    /// without momentum).
    grads: Vec<Vec<f32>>,
    velocity: Vec<Vec<f32>>,
    /// Lowest trained segment (0 embeddings, `1 + l` block `l`, `layers + 1` head):
    /// backpropagation stops there.
    first_segment: usize,
    acts: Activations,
    targets: Vec<u32>,
    d: Gradients,
    lr: f32,
    momentum: f32,
    kernel: Kernel,
}

impl<'a> TransformerStepper<'a> {
    pub(crate) fn new(
        model: &Model,
        trainable: &[bool],
        shard: &'a Samples,
        config: &TrainConfig,
        kernel: Kernel,
    ) -> Result<Self> {
        let geo = Geometry::of(model.spec());
        let params: Vec<Vec<f32>> = model.params().iter().map(|p| p.values.clone()).collect();
        let sized = |on: bool, p: &Vec<f32>| if on { vec![0.0; p.len()] } else { Vec::new() };
        let grads = params
            .iter()
            .zip(trainable)
            .map(|(p, &t)| sized(t, p))
            .collect();
        let velocity = params
            .iter()
            .zip(trainable)
            .map(|(p, &t)| sized(t && config.momentum > 0.0, p))
            .collect();
        let first_segment = geo.segment_of(
            trainable
                .iter()
                .position(|t| *t)
                .expect("train() checked that a segment is trained"),
        );
        let (n, t, dim) = (config.batch, geo.context, geo.dim);
        let rows = n * t;
        let mut acts = Activations::default();
        acts.fit(&geo, n, t);
        let d = Gradients {
            logits: vec![0.0; rows * geo.vocab],
            stream: vec![0.0; rows * dim],
            normed: vec![0.0; rows * dim],
            hidden: vec![0.0; rows * 4 * dim],
            attn: vec![0.0; rows * dim],
            qkv: vec![0.0; rows * 3 * dim],
            scratch: vec![0.0; rows],
        };
        Ok(Self {
            shard,
            geo,
            params,
            trainable: trainable.to_vec(),
            grads,
            velocity,
            first_segment,
            acts,
            targets: vec![0; rows],
            d,
            lr: config.lr,
            momentum: config.momentum,
            kernel,
        })
    }

    /// Gradients of the trained parameters from `self.d.logits`, through every layer above
    /// the lowest trained segment, with the weights of this step.
    fn backward(&mut self) {
        let Self {
            geo,
            params,
            trainable,
            grads,
            first_segment,
            acts,
            d,
            kernel,
            ..
        } = self;
        let (geo, kernel, first) = (*geo, *kernel, *first_segment);
        let (dim, v, rows) = (geo.dim, geo.vocab, acts.n * acts.seq);
        let head = geo.head();
        let head_trained = trainable[head];
        let below = first <= geo.layers;
        if head_trained {
            weight_grad(
                kernel,
                &d.logits,
                &acts.normed,
                rows,
                &mut grads[head + OUT_W],
            );
            column_sums(&d.logits, &mut grads[head + OUT_B]);
        }
        input_grad(
            kernel,
            &d.logits,
            &params[head + OUT_W],
            rows,
            v,
            &mut d.normed,
        );
        d.stream.fill(0.0);
        layer_norm_backward(
            &d.normed,
            &acts.xhat_final,
            &acts.rstd_final,
            &params[head + NORM_W],
            below.then_some(&mut d.stream[..]),
            head_trained.then(|| pair_mut(grads, head + NORM_W)),
        );
        if !below {
            return;
        }
        for l in (first.saturating_sub(1)..geo.layers).rev() {
            let base = geo.block(l);
            let p = &params[base..base + BLOCK_PARAMS];
            let a = &acts.blocks[l];
            let trained = trainable[base];
            // Is a segment below this block trained?
            let need_input = first < l + 1;
            // MLP half: d.stream is the gradient of the block's output.
            if trained {
                weight_grad(
                    kernel,
                    &d.stream,
                    &a.hidden,
                    rows,
                    &mut grads[base + MLP_PROJ_W],
                );
                column_sums(&d.stream, &mut grads[base + MLP_PROJ_B]);
            }
            input_grad(kernel, &d.stream, &p[MLP_PROJ_W], rows, dim, &mut d.hidden);
            for (g, &h) in d.hidden.iter_mut().zip(&a.hidden) {
                if h <= 0.0 {
                    *g = 0.0;
                }
            }
            if trained {
                weight_grad(kernel, &d.hidden, &a.ln2, rows, &mut grads[base + FC_W]);
                column_sums(&d.hidden, &mut grads[base + FC_B]);
            }
            input_grad(kernel, &d.hidden, &p[FC_W], rows, 4 * dim, &mut d.normed);
            layer_norm_backward(
                &d.normed,
                &a.xhat2,
                &a.rstd2,
                &p[LN2_W],
                Some(&mut d.stream[..]),
                trained.then(|| pair_mut(grads, base + LN2_W)),
            );
            // Attention half: d.stream is now the gradient of `mid`.
            if trained {
                weight_grad(kernel, &d.stream, &a.attn, rows, &mut grads[base + PROJ_W]);
                column_sums(&d.stream, &mut grads[base + PROJ_B]);
            }
            input_grad(kernel, &d.stream, &p[PROJ_W], rows, dim, &mut d.attn);
            attention_backward(
                &geo,
                acts.n,
                acts.seq,
                &a.qkv,
                &a.probs,
                &d.attn,
                &mut d.scratch,
                &mut d.qkv,
            );
            if trained {
                weight_grad(kernel, &d.qkv, &a.ln1, rows, &mut grads[base + QKV_W]);
                column_sums(&d.qkv, &mut grads[base + QKV_B]);
            }
            if trained || need_input {
                input_grad(kernel, &d.qkv, &p[QKV_W], rows, 3 * dim, &mut d.normed);
                layer_norm_backward(
                    &d.normed,
                    &a.xhat1,
                    &a.rstd1,
                    &p[LN1_W],
                    need_input.then_some(&mut d.stream[..]),
                    trained.then(|| pair_mut(grads, base + LN1_W)),
                );
            }
        }
        if trainable[TOK] {
            let (tok, pos) = pair_mut(grads, TOK);
            let (tokens, seq) = (&acts.tokens, acts.seq);
            scatter_rows(&d.stream, dim, |r| tokens[r] as usize, tok);
            scatter_rows(&d.stream, dim, |r| r % seq, pos);
        }
    }
}

/// Gradients `i` and `i + 1`, both mutable.
fn pair_mut(grads: &mut [Vec<f32>], i: usize) -> (&mut Vec<f32>, &mut Vec<f32>) {
    let (a, b) = grads[i..].split_at_mut(1);
    (&mut a[0], &mut b[0])
}

/// `grad = dyᵀ · x` for a linear layer with `rows` rows of output gradient `dy` and input
/// `x`; `grad` is `[fan_out, fan_in]`.
fn weight_grad(kernel: Kernel, dy: &[f32], x: &[f32], rows: usize, grad: &mut [f32]) {
    let (fan_out, fan_in) = (dy.len() / rows, x.len() / rows);
    matmul(
        kernel,
        grad,
        fan_in,
        MatRef::row_major(dy, rows, fan_out).t(),
        MatRef::row_major(x, rows, fan_in),
        Accumulate::Overwrite,
    );
}

/// `dx = dy · weight` for a linear layer of `fan_out` outputs (`weight` `[fan_out, fan_in]`).
fn input_grad(
    kernel: Kernel,
    dy: &[f32],
    weight: &[f32],
    rows: usize,
    fan_out: usize,
    dx: &mut [f32],
) {
    let fan_in = weight.len() / fan_out;
    matmul(
        kernel,
        &mut dx[..rows * fan_in],
        fan_in,
        MatRef::row_major(&dy[..rows * fan_out], rows, fan_out),
        MatRef::row_major(weight, fan_out, fan_in),
        Accumulate::Overwrite,
    );
}

/// Bias gradient: the column sums of `dy`, row by row in order (tasks own columns).
fn column_sums(dy: &[f32], out: &mut [f32]) {
    let width = out.len();
    out.par_chunks_mut(COLUMNS_PER_TASK)
        .enumerate()
        .for_each(|(task, out)| {
            let start = task * COLUMNS_PER_TASK;
            out.fill(0.0);
            for row in dy.chunks_exact(width) {
                for (s, g) in out.iter_mut().zip(&row[start..]) {
                    *s += g;
                }
            }
        });
}

/// Embedding gradient: row `r` of `dy` added to row `index(r)` of `out` (`[_, dim]`), rows in
/// ascending order; tasks own ranges of `out`'s rows, each scanning every `r`.
fn scatter_rows(dy: &[f32], dim: usize, index: impl Fn(usize) -> usize + Sync, out: &mut [f32]) {
    const OUT_ROWS_PER_TASK: usize = 16;
    out.par_chunks_mut(OUT_ROWS_PER_TASK * dim)
        .enumerate()
        .for_each(|(task, out)| {
            out.fill(0.0);
            let first = task * OUT_ROWS_PER_TASK;
            let owned = first..first + out.len() / dim;
            for (r, g) in dy.chunks_exact(dim).enumerate() {
                let target = index(r);
                if owned.contains(&target) {
                    let row = &mut out[(target - first) * dim..][..dim];
                    for (t, g) in row.iter_mut().zip(g) {
                        *t += g;
                    }
                }
            }
        });
}

/// As PyTorch's SGD: with momentum `v = momentum·v + g; w -= lr·v`, else `w -= lr·g`.
fn sgd(values: &mut [f32], velocity: &mut [f32], grad: &[f32], lr: f32, momentum: f32) {
    if momentum > 0.0 {
        for ((w, v), g) in values.iter_mut().zip(velocity.iter_mut()).zip(grad) {
            *v = momentum * *v + g;
            *w -= lr * *v;
        }
    } else {
        for (w, g) in values.iter_mut().zip(grad) {
            *w -= lr * g;
        }
    }
}

impl Stepper for TransformerStepper<'_> {
    fn step(&mut self, batch: &[usize]) -> Result<f32> {
        let t = self.geo.context;
        for (b, &index) in batch.iter().enumerate() {
            gather(
                self.shard.row(index),
                t,
                &mut self.acts.tokens[b * t..(b + 1) * t],
                &mut self.targets[b * t..(b + 1) * t],
            );
        }
        forward(self.kernel, &self.geo, &self.params, &mut self.acts);
        let loss = softmax_cross_entropy(
            &self.acts.logits,
            &self.targets,
            self.geo.vocab,
            &mut self.d.logits,
        );
        self.backward();
        for (i, trained) in self.trainable.iter().enumerate() {
            if *trained {
                sgd(
                    &mut self.params[i],
                    &mut self.velocity[i],
                    &self.grads[i],
                    self.lr,
                    self.momentum,
                );
            }
        }
        Ok(loss)
    }

    fn state(&self) -> Result<Vec<(Vec<f32>, Vec<f32>)>> {
        Ok((0..self.params.len())
            .filter(|&i| self.trainable[i])
            .map(|i| (self.params[i].clone(), self.velocity[i].clone()))
            .collect())
    }

    fn set_velocity(&mut self, velocity: &[Vec<f32>]) -> Result<()> {
        let trained: Vec<usize> = (0..self.params.len())
            .filter(|&i| self.trainable[i])
            .collect();
        for (i, values) in trained.into_iter().zip(velocity) {
            self.velocity[i].clone_from(values);
        }
        Ok(())
    }

    fn finish(self: Box<Self>, model: &mut Model) -> Result<()> {
        for ((param, values), trained) in model
            .params_mut()
            .iter_mut()
            .zip(self.params)
            .zip(&self.trainable)
        {
            if *trained {
                param.values = values;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use rand::{Rng, SeedableRng};
    use rand_chacha::ChaCha8Rng;

    use super::*;
    use crate::kernel::Simd;
    use crate::train::{train_with, Budget, Engine};

    fn tiny() -> ModelSpec {
        ModelSpec::Transformer {
            context: 8,
            vocab: 32,
            dim: 16,
            heads: 2,
            layers: 2,
        }
    }

    /// Windows of a repetitive byte stream with noise, so that training has something to
    /// learn and the gradients are not tiny.
    fn shard(count: usize, vocab: u32) -> Samples {
        let mut rng = ChaCha8Rng::seed_from_u64(5);
        let mut features = Vec::new();
        let mut labels = Vec::new();
        for s in 0..count {
            let row: Vec<f32> = (0..9)
                .map(|i| {
                    if rng.gen_bool(0.3) {
                        rng.gen_range(0..vocab) as f32
                    } else {
                        ((s + i * 3) as u32 % vocab) as f32
                    }
                })
                .collect();
            labels.push(row[8] as u32);
            features.extend(row);
        }
        Samples::new(features, labels, 9).unwrap()
    }

    fn kernel() -> Kernel {
        Kernel::Reproducible(Simd::best())
    }

    #[test]
    fn forward_matches_the_candle_transformer() {
        let mut model = Model::new(tiny(), 3).unwrap();
        // Non-trivial gains and biases, so a mix-up of any two parameters shows.
        let mut rng = ChaCha8Rng::seed_from_u64(8);
        for p in model.params_mut() {
            for v in &mut p.values {
                *v += rng.gen_range(-0.3..0.3);
            }
        }
        let samples = shard(5, 32);
        let reference = model.logits_of(samples.features()).unwrap();
        let mut ours = TransformerForward::new(&model);
        let mut targets = Vec::new();
        let logits = ours.logits(kernel(), samples.features(), 5, &mut targets);
        assert_eq!(logits.len(), reference.len());
        for (a, b) in logits.iter().zip(&reference) {
            assert!((a - b).abs() < 1e-5, "{a} vs {b}");
        }
        assert_eq!(
            targets[..8],
            samples.row(0)[1..]
                .iter()
                .map(|&v| v as u32)
                .collect::<Vec<_>>()[..]
        );
        // A shorter sequence gives the first positions' logits of the full one (causality).
        let tokens: Vec<u8> = samples.row(0)[..5].iter().map(|&v| v as u8).collect();
        let short = ours.sequence_logits(kernel(), &tokens).to_vec();
        for (a, b) in short.iter().zip(&reference[..5 * 32]) {
            assert!((a - b).abs() < 1e-5, "{a} vs {b}");
        }
    }

    /// The fused step must compute what candle's autograd computes, for each segment alone
    /// (the backward pass stops at it) and all together, with and without momentum; frozen
    /// parameters keep their bits.
    #[test]
    fn fused_transformer_step_matches_candle_autograd() {
        let samples = shard(40, 32);
        let subsets: [&[&str]; 5] = [
            &["embed"],
            &["block0"],
            &["block1"],
            &["head"],
            &["embed", "block0", "block1", "head"],
        ];
        for momentum in [0.0, 0.9] {
            for segments in subsets {
                let config = TrainConfig {
                    lr: 0.2,
                    momentum,
                    batch: 6,
                    budget: Budget::Steps(6),
                    seed: 3,
                    threads: 2,
                };
                let initial = Model::new(tiny(), 9).unwrap();
                let (mut fused, mut reference) = (initial.clone(), initial.clone());
                let ours = train_with(
                    &mut fused,
                    segments,
                    &samples,
                    &config,
                    Engine::Fastest,
                    kernel(),
                )
                .unwrap();
                let theirs = train_with(
                    &mut reference,
                    segments,
                    &samples,
                    &config,
                    Engine::Autograd,
                    kernel(),
                )
                .unwrap();
                for (a, b) in ours.loss_curve.iter().zip(&theirs.loss_curve) {
                    assert!((a - b).abs() < 1e-5, "{segments:?}: loss {a} vs {b}");
                }
                for ((a, b), start) in fused
                    .params()
                    .iter()
                    .zip(reference.params())
                    .zip(initial.params())
                {
                    let worst = a
                        .values
                        .iter()
                        .zip(&b.values)
                        .map(|(x, y)| (x - y).abs())
                        .fold(0f32, f32::max);
                    assert!(worst < 2e-5, "{segments:?} {}: off by {worst}", a.name);
                    let trained = segments.contains(&crate::model::segment_of(&a.name));
                    assert_eq!(a.values != start.values, trained, "{segments:?} {}", a.name);
                }
            }
        }
    }
}
