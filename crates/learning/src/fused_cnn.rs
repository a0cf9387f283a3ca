//! The CNN training step and forward pass on the reproducible kernel, written out by hand:
//! convolution as im2col plus one matrix product, bias and ReLU in one pass, 2x2 max pooling
//! that remembers its argmax, and the backward pass as two more products per layer and the
//! adjoint of im2col. Buffers are allocated once per run.
//!
//! Layout: activations are channels-last (NHWC), so a convolution over a batch is
//! `patches [n·h·w, k·k·c_in] · Wpᵀ` with `Wp [c_out, k·k·c_in]`, patch columns ordered
//! `(kh, kw, c_in)`. The model keeps PyTorch's layouts (conv `[c_out, c_in, k, k]`, and the
//! linear layer reading the C,H,W flatten); they are permuted in on start and back out on
//! `state` and `finish`, which copies values and never changes them.
//!
//! Determinism: every product is the kernel's (one FMA chain per element in ascending order,
//! whatever the SIMD level or thread count); im2col, pooling and its backward pass only copy
//! values; the adjoint of im2col and the bias gradients are sums in a fixed sequential order,
//! one sample per task. So the bits depend only on the inputs, as for the MLP.

use rayon::prelude::*;

use crate::error::Result;
use crate::fused_mlp::softmax_cross_entropy;
use crate::kernel::{matmul, Accumulate, Kernel, MatRef};
use crate::model::{Model, ModelSpec};
use crate::samples::Samples;
use crate::train::{Stepper, TrainConfig};

/// One `conv -> relu -> maxpool 2` stage on channels-last `[h, w, c_in]` images.
#[derive(Debug, Clone, Copy)]
struct Stage {
    h: usize,
    w: usize,
    c_in: usize,
    c_out: usize,
    k: usize,
}

impl Stage {
    /// Values of one unfolded patch: `k·k·c_in`.
    fn patch(&self) -> usize {
        self.k * self.k * self.c_in
    }
    fn pixels(&self) -> usize {
        self.h * self.w
    }
    fn pooled(&self) -> usize {
        (self.h / 2) * (self.w / 2)
    }
}

/// The CNN's shapes.
#[derive(Debug, Clone, Copy)]
struct Geometry {
    stages: [Stage; 2],
    /// Inputs of the linear layer: `c1 · (h / 4) · (w / 4)`.
    flat: usize,
    classes: usize,
}

impl Geometry {
    fn of(spec: &ModelSpec) -> Self {
        let ModelSpec::Cnn {
            height,
            width,
            channels,
            kernel,
            classes,
        } = *spec
        else {
            unreachable!("only CNNs are routed here");
        };
        let first = Stage {
            h: height,
            w: width,
            c_in: 1,
            c_out: channels[0],
            k: kernel,
        };
        let second = Stage {
            h: height / 2,
            w: width / 2,
            c_in: channels[0],
            c_out: channels[1],
            k: kernel,
        };
        Geometry {
            stages: [first, second],
            flat: second.pooled() * second.c_out,
            classes,
        }
    }

    /// Model layout (`[c_out, c_in, k, k]` conv weights, C,H,W-flatten linear weight) to
    /// ours (`[c_out, (kh, kw, c_in)]`, H,W,C-flatten), for parameter `index` in model order.
    fn ours_from_model(&self, index: usize, values: &[f32]) -> Vec<f32> {
        let mut out = vec![0.0; values.len()];
        self.permute(index, values, &mut out, false);
        out
    }

    /// The inverse of [`Geometry::ours_from_model`].
    fn model_from_ours(&self, index: usize, values: &[f32]) -> Vec<f32> {
        let mut out = vec![0.0; values.len()];
        self.permute(index, values, &mut out, true);
        out
    }

    fn permute(&self, index: usize, from: &[f32], to: &mut [f32], back: bool) {
        if !matches!(index, 0 | 2 | 4) {
            // Biases keep their layout.
            to.copy_from_slice(from);
            return;
        }
        let mut place = |model: usize, ours: usize| {
            if back {
                to[model] = from[ours];
            } else {
                to[ours] = from[model];
            }
        };
        match index {
            0 | 2 => {
                let s = self.stages[index / 2];
                for co in 0..s.c_out {
                    for ci in 0..s.c_in {
                        for kh in 0..s.k {
                            for kw in 0..s.k {
                                let model = ((co * s.c_in + ci) * s.k + kh) * s.k + kw;
                                let ours = co * s.patch() + (kh * s.k + kw) * s.c_in + ci;
                                place(model, ours);
                            }
                        }
                    }
                }
            }
            4 => {
                let s = self.stages[1];
                let (area, c) = (s.pooled(), s.c_out);
                for class in 0..self.classes {
                    for ch in 0..c {
                        for pixel in 0..area {
                            place(
                                class * self.flat + ch * area + pixel,
                                class * self.flat + pixel * c + ch,
                            );
                        }
                    }
                }
            }
            _ => unreachable!("biases returned above"),
        }
    }
}

/// Every intermediate of a forward pass over up to `capacity` samples (and what the backward
/// pass reads back).
#[derive(Default)]
pub(crate) struct CnnBuffers {
    capacity: usize,
    patches: [Vec<f32>; 2],
    /// After bias and ReLU, `[n·h·w, c_out]` per stage.
    act: [Vec<f32>; 2],
    /// Pooled, `[n·(h/2)·(w/2), c_out]`; the second is the linear layer's input.
    pooled: [Vec<f32>; 2],
    /// Where in its 2x2 window each pooled value's maximum is (0 to 3, row by row); as
    /// wide as a value, so the backward pass's select vectorises.
    argmax: [Vec<u32>; 2],
    logits: Vec<f32>,
}

impl CnnBuffers {
    fn fit(&mut self, geo: &Geometry, rows: usize) {
        if self.capacity >= rows {
            return;
        }
        for (i, s) in geo.stages.iter().enumerate() {
            self.patches[i].resize(rows * s.pixels() * s.patch(), 0.0);
            self.act[i].resize(rows * s.pixels() * s.c_out, 0.0);
            self.pooled[i].resize(rows * s.pooled() * s.c_out, 0.0);
            self.argmax[i].resize(rows * s.pooled() * s.c_out, 0);
        }
        self.logits.resize(rows * geo.classes, 0.0);
        self.capacity = rows;
    }
}

/// Unfolds `rows` channels-last images into `patches`, zero outside the image ("same"
/// padding of `k / 2`).
fn im2col(s: Stage, input: &[f32], rows: usize, patches: &mut [f32]) {
    let pad = s.k / 2;
    let (image, unfolded) = (s.pixels() * s.c_in, s.pixels() * s.patch());
    patches[..rows * unfolded]
        .par_chunks_mut(unfolded)
        .zip(input[..rows * image].par_chunks(image))
        .for_each(|(out, img)| {
            for y in 0..s.h {
                for x in 0..s.w {
                    let patch = &mut out[(y * s.w + x) * s.patch()..][..s.patch()];
                    for kh in 0..s.k {
                        for kw in 0..s.k {
                            let dst = &mut patch[(kh * s.k + kw) * s.c_in..][..s.c_in];
                            let (yy, xx) = ((y + kh).wrapping_sub(pad), (x + kw).wrapping_sub(pad));
                            let inside = yy < s.h && xx < s.w;
                            if s.c_in == 1 {
                                // One value: a slice copy would be a memmove call per value.
                                dst[0] = if inside { img[yy * s.w + xx] } else { 0.0 };
                            } else if inside {
                                dst.copy_from_slice(&img[(yy * s.w + xx) * s.c_in..][..s.c_in]);
                            } else {
                                dst.fill(0.0);
                            }
                        }
                    }
                }
            }
        });
}

/// The adjoint of [`im2col`]: each input value's gradient is the sum of its patch copies'
/// gradients, added in ascending (pixel, kh, kw) order, one sample per task.
fn col2im(s: Stage, dpatches: &[f32], rows: usize, dinput: &mut [f32]) {
    let pad = s.k / 2;
    let (image, unfolded) = (s.pixels() * s.c_in, s.pixels() * s.patch());
    dinput[..rows * image]
        .par_chunks_mut(image)
        .zip(dpatches[..rows * unfolded].par_chunks(unfolded))
        .for_each(|(img, grads)| {
            img.fill(0.0);
            for y in 0..s.h {
                for x in 0..s.w {
                    let patch = &grads[(y * s.w + x) * s.patch()..][..s.patch()];
                    for kh in 0..s.k {
                        for kw in 0..s.k {
                            let (yy, xx) = ((y + kh).wrapping_sub(pad), (x + kw).wrapping_sub(pad));
                            if yy < s.h && xx < s.w {
                                let src = &patch[(kh * s.k + kw) * s.c_in..][..s.c_in];
                                let dst = &mut img[(yy * s.w + xx) * s.c_in..][..s.c_in];
                                for (d, g) in dst.iter_mut().zip(src) {
                                    *d += g;
                                }
                            }
                        }
                    }
                }
            }
        });
}

/// `act = relu(act + bias)` per row of `c` channels (`z <= 0` gives `+0.0`, as the MLP).
fn bias_relu(act: &mut [f32], bias: &[f32]) {
    act.par_chunks_mut(bias.len() * 64).for_each(|rows| {
        for row in rows.chunks_exact_mut(bias.len()) {
            for (value, b) in row.iter_mut().zip(bias) {
                let z = *value + b;
                *value = if z <= 0.0 { 0.0 } else { z };
            }
        }
    });
}

/// 2x2 max pooling of `rows` images `[h, w, c]`; the first maximum in (0,0), (0,1), (1,0),
/// (1,1) order wins, and its position in the window (0 to 3, in that order) is kept for the
/// backward pass. Channels-last, so the four window rows are contiguous runs of `c` values
/// compared lane by lane.
fn pool(s: Stage, act: &[f32], rows: usize, pooled: &mut [f32], argmax: &mut [u32]) {
    let c = s.c_out;
    let (image, out) = (s.pixels() * c, s.pooled() * c);
    pooled[..rows * out]
        .par_chunks_mut(out)
        .zip(argmax[..rows * out].par_chunks_mut(out))
        .zip(act[..rows * image].par_chunks(image))
        .for_each(|((dst, arg), img)| {
            for y in 0..s.h / 2 {
                for x in 0..s.w / 2 {
                    let at =
                        |dy: usize, dx: usize| &img[((2 * y + dy) * s.w + 2 * x + dx) * c..][..c];
                    let o = (y * (s.w / 2) + x) * c;
                    let window = at(0, 0).iter().zip(at(0, 1)).zip(at(1, 0)).zip(at(1, 1));
                    for ((((a, b), d), e), (value, code)) in
                        window.zip(dst[o..o + c].iter_mut().zip(&mut arg[o..o + c]))
                    {
                        let (mut best, mut at) = (*a, 0u32);
                        if *b > best {
                            (best, at) = (*b, 1);
                        }
                        if *d > best {
                            (best, at) = (*d, 2);
                        }
                        if *e > best {
                            (best, at) = (*e, 3);
                        }
                        *value = best;
                        *code = at;
                    }
                }
            }
        });
}

/// Gradient of [`pool`] then of ReLU: each pooled gradient goes to its window's maximum
/// (windows do not overlap), masked where that maximum (the pooled value) was clipped to
/// zero; every other activation gets `+0.0`. One sample per task, each value written once;
/// only copies, so the split cannot change a bit.
fn unpool_relu(
    s: Stage,
    dpooled: &[f32],
    argmax: &[u32],
    pooled: &[f32],
    rows: usize,
    dact: &mut [f32],
) {
    let c = s.c_out;
    let (image, out) = (s.pixels() * c, s.pooled() * c);
    // Images are divisible by 4 (`ModelSpec::validate`), so the windows tile every stage
    // and every activation is written.
    debug_assert!(s.h.is_multiple_of(2) && s.w.is_multiple_of(2));
    dact[..rows * image]
        .par_chunks_mut(image)
        .zip(dpooled[..rows * out].par_chunks(out))
        .zip(argmax[..rows * out].par_chunks(out))
        .zip(pooled[..rows * out].par_chunks(out))
        .for_each(|(((dst, grads), arg), values)| unpool_relu_image(s, grads, arg, values, dst));
}

/// [`unpool_relu`] of one image.
fn unpool_relu_image(s: Stage, grads: &[f32], arg: &[u32], values: &[f32], dst: &mut [f32]) {
    let c = s.c_out;
    for y in 0..s.h / 2 {
        for x in 0..s.w / 2 {
            let o = (y * (s.w / 2) + x) * c;
            let (grads, arg, values) = (&grads[o..o + c], &arg[o..o + c], &values[o..o + c]);
            for (position, (dy, dx)) in [(0u32, (0, 0)), (1, (0, 1)), (2, (1, 0)), (3, (1, 1))] {
                let row = &mut dst[((2 * y + dy) * s.w + 2 * x + dx) * c..][..c];
                for (((d, g), code), value) in row.iter_mut().zip(grads).zip(arg).zip(values) {
                    // A select by bit mask (`g` or `+0.0`, exactly): LLVM turns the
                    // `if` form into a branch per value, this into vector ands.
                    let routed = (*code == position) & (*value > 0.0);
                    *d = f32::from_bits(g.to_bits() & u32::from(routed).wrapping_neg());
                }
            }
        }
    }
}

/// Logits `[rows, classes]` of the CNN with parameters `params` (our layout) on `rows`
/// row-major images, leaving every intermediate in `buffers`.
fn forward<'b>(
    kernel: Kernel,
    geo: &Geometry,
    params: &[Vec<f32>],
    input: &[f32],
    rows: usize,
    buffers: &'b mut CnnBuffers,
) -> &'b [f32] {
    buffers.fit(geo, rows);
    for (i, s) in geo.stages.iter().enumerate() {
        let m = rows * s.pixels();
        let stage_input: &[f32] = if i == 0 {
            input
        } else {
            &buffers.pooled[i - 1]
        };
        im2col(*s, stage_input, rows, &mut buffers.patches[i]);
        let act = &mut buffers.act[i][..m * s.c_out];
        matmul(
            kernel,
            act,
            s.c_out,
            MatRef::row_major(&buffers.patches[i][..m * s.patch()], m, s.patch()),
            MatRef::row_major(&params[2 * i], s.c_out, s.patch()).t(),
            Accumulate::Overwrite,
        );
        bias_relu(act, &params[2 * i + 1]);
        pool(
            *s,
            &buffers.act[i],
            rows,
            &mut buffers.pooled[i],
            &mut buffers.argmax[i],
        );
    }
    let logits = &mut buffers.logits[..rows * geo.classes];
    matmul(
        kernel,
        logits,
        geo.classes,
        MatRef::row_major(&buffers.pooled[1][..rows * geo.flat], rows, geo.flat),
        MatRef::row_major(&params[4], geo.classes, geo.flat).t(),
        Accumulate::Overwrite,
    );
    for row in logits.chunks_exact_mut(geo.classes) {
        for (value, b) in row.iter_mut().zip(&params[5]) {
            *value += b;
        }
    }
    logits
}

/// The model's parameters in our layout.
fn ours(geo: &Geometry, model: &Model) -> Vec<Vec<f32>> {
    model
        .params()
        .iter()
        .enumerate()
        .map(|(i, p)| geo.ours_from_model(i, &p.values))
        .collect()
}

/// Evaluation's forward pass: the model's parameters permuted into our layout once, then
/// logits of batch after batch on the kernel (the same products and passes as training).
pub(crate) struct CnnForward {
    geo: Geometry,
    params: Vec<Vec<f32>>,
    buffers: CnnBuffers,
}

impl CnnForward {
    pub(crate) fn new(model: &Model) -> Self {
        let geo = Geometry::of(model.spec());
        CnnForward {
            params: ours(&geo, model),
            geo,
            buffers: CnnBuffers::default(),
        }
    }

    /// Logits `[rows, classes]` of `rows` row-major images.
    pub(crate) fn logits(&mut self, kernel: Kernel, input: &[f32], rows: usize) -> &[f32] {
        forward(
            kernel,
            &self.geo,
            &self.params,
            input,
            rows,
            &mut self.buffers,
        )
    }
}

pub(crate) struct CnnStepper<'a> {
    shard: &'a Samples,
    geo: Geometry,
    /// Every parameter in model order, our layout.
    params: Vec<Vec<f32>>,
    /// Per parameter: trained, and its velocity (empty without momentum or when frozen).
    trainable: Vec<bool>,
    velocity: Vec<Vec<f32>>,
    /// Lowest trained segment (0 conv0, 1 conv1, 2 linear): backpropagation stops there.
    first_trainable: usize,
    buffers: CnnBuffers,
    input: Vec<f32>,
    labels: Vec<u32>,
    batch: usize,
    /// Gradients w.r.t. the logits, the linear input, each stage's activation, and
    /// the unfolded patches of the second stage.
    dlogits: Vec<f32>,
    dpooled: [Vec<f32>; 2],
    dact: Vec<f32>,
    dpatches: Vec<f32>,
    /// One parameter's gradient.
    grad: Vec<f32>,
    lr: f32,
    momentum: f32,
    kernel: Kernel,
}

impl<'a> CnnStepper<'a> {
    pub(crate) fn new(
        model: &Model,
        trainable: &[bool],
        shard: &'a Samples,
        config: &TrainConfig,
        kernel: Kernel,
    ) -> Result<Self> {
        let geo = Geometry::of(model.spec());
        let params = ours(&geo, model);
        let velocity = params
            .iter()
            .zip(trainable)
            .map(|(p, t)| {
                if *t && config.momentum > 0.0 {
                    vec![0.0; p.len()]
                } else {
                    Vec::new()
                }
            })
            .collect();
        let first_trainable = trainable
            .iter()
            .position(|t| *t)
            .expect("train() checked that a segment is trained")
            / 2;
        let batch = config.batch;
        let mut buffers = CnnBuffers::default();
        buffers.fit(&geo, batch);
        let [s0, s1] = geo.stages;
        let largest = params.iter().map(Vec::len).max().unwrap_or(0);
        Ok(Self {
            shard,
            params,
            trainable: trainable.to_vec(),
            velocity,
            first_trainable,
            buffers,
            input: vec![0.0; batch * s0.pixels()],
            labels: vec![0; batch],
            batch,
            dlogits: vec![0.0; batch * geo.classes],
            dpooled: [
                vec![0.0; batch * s0.pooled() * s0.c_out],
                vec![0.0; batch * geo.flat],
            ],
            dact: vec![0.0; batch * (s0.pixels() * s0.c_out).max(s1.pixels() * s1.c_out)],
            dpatches: vec![0.0; batch * s1.pixels() * s1.patch()],
            grad: vec![0.0; largest],
            lr: config.lr,
            momentum: config.momentum,
            kernel,
            geo,
        })
    }

    /// Weight gradient `dW = dYᵀ · X` of parameter `index` into `self.grad`, then its SGD
    /// update; the bias (`index + 1`) from the column sums of `dY`.
    fn update(&mut self, index: usize, dy: &[f32], x: &[f32], rows: usize, inner: usize) {
        let outputs = self.params[index + 1].len();
        let grad = &mut self.grad[..outputs * inner];
        matmul(
            self.kernel,
            grad,
            inner,
            MatRef::row_major(&dy[..rows * outputs], rows, outputs).t(),
            MatRef::row_major(&x[..rows * inner], rows, inner),
            Accumulate::Overwrite,
        );
        sgd(
            &mut self.params[index],
            &mut self.velocity[index],
            grad,
            self.lr,
            self.momentum,
        );
        let bias_grad = &mut self.grad[..outputs];
        bias_grad.fill(0.0);
        for row in dy[..rows * outputs].chunks_exact(outputs) {
            for (s, g) in bias_grad.iter_mut().zip(row) {
                *s += g;
            }
        }
        sgd(
            &mut self.params[index + 1],
            &mut self.velocity[index + 1],
            bias_grad,
            self.lr,
            self.momentum,
        );
    }

    fn backward_and_update(&mut self) {
        let (b, geo) = (self.batch, self.geo);
        // Linear layer: the gradient of its input with the weights before their update.
        if self.first_trainable < 2 {
            matmul(
                self.kernel,
                &mut self.dpooled[1][..b * geo.flat],
                geo.flat,
                MatRef::row_major(&self.dlogits, b, geo.classes),
                MatRef::row_major(&self.params[4], geo.classes, geo.flat),
                Accumulate::Overwrite,
            );
        }
        if self.trainable[4] {
            let dlogits = std::mem::take(&mut self.dlogits);
            let flat = std::mem::take(&mut self.buffers.pooled[1]);
            self.update(4, &dlogits, &flat, b, geo.flat);
            self.dlogits = dlogits;
            self.buffers.pooled[1] = flat;
        }
        for i in (self.first_trainable..2).rev() {
            let s = geo.stages[i];
            let m = b * s.pixels();
            unpool_relu(
                s,
                &self.dpooled[i],
                &self.buffers.argmax[i],
                &self.buffers.pooled[i],
                b,
                &mut self.dact,
            );
            if i > self.first_trainable {
                // Gradient of the stage's input, through the patches, before the update.
                matmul(
                    self.kernel,
                    &mut self.dpatches[..m * s.patch()],
                    s.patch(),
                    MatRef::row_major(&self.dact[..m * s.c_out], m, s.c_out),
                    MatRef::row_major(&self.params[2 * i], s.c_out, s.patch()),
                    Accumulate::Overwrite,
                );
                let (below, _) = self.dpooled.split_at_mut(i);
                col2im(s, &self.dpatches, b, &mut below[i - 1]);
            }
            if self.trainable[2 * i] {
                let dact = std::mem::take(&mut self.dact);
                let patches = std::mem::take(&mut self.buffers.patches[i]);
                self.update(2 * i, &dact, &patches, m, s.patch());
                self.dact = dact;
                self.buffers.patches[i] = patches;
            }
        }
    }
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

impl Stepper for CnnStepper<'_> {
    fn step(&mut self, batch: &[usize]) -> Result<f32> {
        let width = self.shard.feature_count();
        for ((row, label), &index) in self
            .input
            .chunks_exact_mut(width)
            .zip(&mut self.labels)
            .zip(batch)
        {
            row.copy_from_slice(self.shard.row(index));
            *label = self.shard.labels()[index];
        }
        let logits = forward(
            self.kernel,
            &self.geo,
            &self.params,
            &self.input,
            self.batch,
            &mut self.buffers,
        );
        let loss = softmax_cross_entropy(logits, &self.labels, self.geo.classes, &mut self.dlogits);
        self.backward_and_update();
        Ok(loss)
    }

    fn state(&self) -> Result<Vec<(Vec<f32>, Vec<f32>)>> {
        Ok((0..self.params.len())
            .filter(|i| self.trainable[*i])
            .map(|i| {
                let velocity = if self.velocity[i].is_empty() {
                    Vec::new()
                } else {
                    self.geo.model_from_ours(i, &self.velocity[i])
                };
                (self.geo.model_from_ours(i, &self.params[i]), velocity)
            })
            .collect())
    }

    fn set_velocity(&mut self, velocity: &[Vec<f32>]) -> Result<()> {
        let trained: Vec<usize> = (0..self.params.len())
            .filter(|i| self.trainable[*i])
            .collect();
        for (i, values) in trained.into_iter().zip(velocity) {
            self.velocity[i] = self.geo.ours_from_model(i, values);
        }
        Ok(())
    }

    fn finish(self: Box<Self>, model: &mut Model) -> Result<()> {
        let geo = self.geo;
        for (i, param) in model.params_mut().iter_mut().enumerate() {
            if self.trainable[i] {
                param.values = geo.model_from_ours(i, &self.params[i]);
            }
        }
        Ok(())
    }
}
