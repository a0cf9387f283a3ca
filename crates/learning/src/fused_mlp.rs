//! The MLP training step, fused by hand on buffers allocated once per run.
//!
//! candle's op-by-op autograd allocates and zero-fills a fresh tensor for every
//! intermediate and spends most of a small MLP step outside the matrix products. This
//! step calls the same `gemm` kernel candle uses, but writes into reused buffers, adds the
//! bias and applies ReLU in one pass, computes the softmax cross-entropy gradient in
//! place, and folds the SGD update into the weight-gradient product (`W += -lr * dZ^T A`),
//! so a step is three matrix products per layer and a few linear passes.
//!
//! Determinism: `gemm` splits work across threads by output tiles and reduces along the
//! inner dimension in a fixed order, and every other pass here is sequential, so the
//! result does not depend on the thread count.

use gemm::{gemm, Parallelism};

use crate::error::Result;
use crate::model::{Model, ModelSpec};
use crate::samples::Samples;
use crate::train::{Stepper, TrainConfig};

/// One fully connected layer's state during a run.
struct Layer {
    /// Inputs and outputs.
    fan_in: usize,
    fan_out: usize,
    /// `[fan_out, fan_in]` row-major, as in the model.
    weight: Vec<f32>,
    bias: Vec<f32>,
    /// Whether this layer's segment is being trained.
    trainable: bool,
    /// Momentum buffers (empty unless trainable with momentum).
    weight_velocity: Vec<f32>,
    bias_velocity: Vec<f32>,
    /// Column sums of the output gradient, reused every step.
    bias_grad: Vec<f32>,
}

pub(crate) struct MlpStepper<'a> {
    shard: &'a Samples,
    layers: Vec<Layer>,
    /// Index of the lowest trained layer: backpropagation stops there.
    first_trainable: usize,
    /// `activations[0]` is the input batch, `activations[l + 1]` layer `l`'s output
    /// (after ReLU for hidden layers; the logits for the last).
    activations: Vec<Vec<f32>>,
    /// Gradient w.r.t. the current layer's pre-activation, and the one below it.
    grad: Vec<f32>,
    grad_below: Vec<f32>,
    labels: Vec<u32>,
    batch: usize,
    lr: f32,
    momentum: f32,
    parallelism: Parallelism,
}

impl<'a> MlpStepper<'a> {
    pub(crate) fn new(
        model: &Model,
        trainable: &[bool],
        shard: &'a Samples,
        config: &TrainConfig,
    ) -> Result<Self> {
        let ModelSpec::Mlp { .. } = model.spec() else {
            unreachable!("train() routes only MLPs here");
        };
        let params = model.params();
        let layers: Vec<Layer> = params
            .chunks_exact(2)
            .zip(trainable.chunks_exact(2))
            .map(|(pair, flags)| {
                let with_velocity = flags[0] && config.momentum > 0.0;
                Layer {
                    fan_in: pair[0].shape[1],
                    fan_out: pair[0].shape[0],
                    weight: pair[0].values.clone(),
                    bias: pair[1].values.clone(),
                    trainable: flags[0],
                    weight_velocity: if with_velocity {
                        vec![0.0; pair[0].values.len()]
                    } else {
                        Vec::new()
                    },
                    bias_velocity: if with_velocity {
                        vec![0.0; pair[1].values.len()]
                    } else {
                        Vec::new()
                    },
                    bias_grad: vec![0.0; pair[1].values.len()],
                }
            })
            .collect();
        let first_trainable = layers
            .iter()
            .position(|l| l.trainable)
            .expect("train() checked that a segment is trained");
        let batch = config.batch;
        let activations = std::iter::once(layers[0].fan_in)
            .chain(layers.iter().map(|l| l.fan_out))
            .map(|width| vec![0.0; batch * width])
            .collect();
        let widest = layers
            .iter()
            .map(|l| l.fan_out.max(l.fan_in))
            .max()
            .unwrap_or(0);
        let threads = rayon::current_num_threads();
        Ok(Self {
            shard,
            layers,
            first_trainable,
            activations,
            grad: vec![0.0; batch * widest],
            grad_below: vec![0.0; batch * widest],
            labels: vec![0; batch],
            batch,
            lr: config.lr,
            momentum: config.momentum,
            parallelism: if threads > 1 {
                Parallelism::Rayon(threads)
            } else {
                Parallelism::None
            },
        })
    }

    fn gather(&mut self, indices: &[usize]) {
        let width = self.shard.feature_count();
        for ((row, label), &index) in self.activations[0]
            .chunks_exact_mut(width)
            .zip(&mut self.labels)
            .zip(indices)
        {
            row.copy_from_slice(self.shard.row(index));
            *label = self.shard.labels()[index];
        }
    }

    fn forward(&mut self) {
        let last = self.layers.len() - 1;
        for (l, layer) in self.layers.iter().enumerate() {
            let (below, above) = self.activations.split_at_mut(l + 1);
            let input = &below[l];
            let output = &mut above[0];
            // output[b, j] = sum_i input[b, i] * weight[j, i]
            // SAFETY: the slices hold exactly batch*fan_in, fan_out*fan_in and
            // batch*fan_out values, matching the dimensions and strides passed.
            unsafe {
                gemm(
                    self.batch,
                    layer.fan_out,
                    layer.fan_in,
                    output.as_mut_ptr(),
                    1,
                    layer.fan_out as isize,
                    false,
                    input.as_ptr(),
                    1,
                    layer.fan_in as isize,
                    layer.weight.as_ptr(),
                    layer.fan_in as isize,
                    1,
                    0.0,
                    1.0,
                    false,
                    false,
                    false,
                    self.parallelism,
                );
            }
            let relu = l < last;
            for row in output.chunks_exact_mut(layer.fan_out) {
                for (value, bias) in row.iter_mut().zip(&layer.bias) {
                    let z = *value + bias;
                    *value = if relu && z <= 0.0 { 0.0 } else { z };
                }
            }
        }
    }

    /// Mean softmax cross-entropy of the logits; leaves `dLoss/dLogits` in `self.grad`.
    fn loss_and_output_grad(&mut self) -> f32 {
        let classes = self.layers[self.layers.len() - 1].fan_out;
        let logits = &self.activations[self.layers.len()];
        let scale = 1.0 / self.batch as f32;
        let mut total = 0f64;
        for ((row, grad), &label) in logits
            .chunks_exact(classes)
            .zip(self.grad.chunks_exact_mut(classes))
            .zip(&self.labels)
        {
            let max = row.iter().copied().fold(f32::NEG_INFINITY, f32::max);
            let mut sum = 0f32;
            for (g, &z) in grad.iter_mut().zip(row) {
                *g = (z - max).exp();
                sum += *g;
            }
            total += f64::from(sum.ln() + max - row[label as usize]);
            let inv = scale / sum;
            for g in grad.iter_mut() {
                *g *= inv;
            }
            grad[label as usize] -= scale;
        }
        (total / self.batch as f64) as f32
    }

    fn backward_and_update(&mut self) {
        for l in (self.first_trainable..self.layers.len()).rev() {
            let layer = &mut self.layers[l];
            let (fan_in, fan_out) = (layer.fan_in, layer.fan_out);
            let grad = &self.grad[..self.batch * fan_out];
            let input = &self.activations[l];
            if l > self.first_trainable {
                // grad_below[b, i] = sum_j grad[b, j] * weight[j, i], masked by ReLU'.
                let below = &mut self.grad_below[..self.batch * fan_in];
                // SAFETY: dimensions and strides match the slice lengths.
                unsafe {
                    gemm(
                        self.batch,
                        fan_in,
                        fan_out,
                        below.as_mut_ptr(),
                        1,
                        fan_in as isize,
                        false,
                        grad.as_ptr(),
                        1,
                        fan_out as isize,
                        layer.weight.as_ptr(),
                        1,
                        fan_in as isize,
                        0.0,
                        1.0,
                        false,
                        false,
                        false,
                        self.parallelism,
                    );
                }
                for (g, &a) in below.iter_mut().zip(input.iter()) {
                    if a <= 0.0 {
                        *g = 0.0;
                    }
                }
            }
            if layer.trainable {
                update_layer(
                    layer,
                    grad,
                    input,
                    self.batch,
                    self.lr,
                    self.momentum,
                    self.parallelism,
                );
            }
            std::mem::swap(&mut self.grad, &mut self.grad_below);
        }
    }
}

/// SGD on one layer from the gradient w.r.t. its pre-activation and its input.
fn update_layer(
    layer: &mut Layer,
    grad: &[f32],
    input: &[f32],
    batch: usize,
    lr: f32,
    momentum: f32,
    parallelism: Parallelism,
) {
    let (fan_in, fan_out) = (layer.fan_in, layer.fan_out);
    // dW[j, i] = sum_b grad[b, j] * input[b, i]; with plain SGD it goes straight into
    // the weights (dst = 1 * W + (-lr) * dW), with momentum into the velocity.
    let (dst, alpha, beta) = if momentum > 0.0 {
        (&mut layer.weight_velocity, momentum, 1.0)
    } else {
        (&mut layer.weight, 1.0, -lr)
    };
    // SAFETY: dst is [fan_out, fan_in], grad [batch, fan_out], input [batch, fan_in].
    unsafe {
        gemm(
            fan_out,
            fan_in,
            batch,
            dst.as_mut_ptr(),
            1,
            fan_in as isize,
            true,
            grad.as_ptr(),
            fan_out as isize,
            1,
            input.as_ptr(),
            1,
            fan_in as isize,
            alpha,
            beta,
            false,
            false,
            false,
            parallelism,
        );
    }
    if momentum > 0.0 {
        for (w, v) in layer.weight.iter_mut().zip(&layer.weight_velocity) {
            *w -= lr * v;
        }
    }
    layer.bias_grad.fill(0.0);
    for row in grad.chunks_exact(fan_out) {
        for (s, g) in layer.bias_grad.iter_mut().zip(row) {
            *s += g;
        }
    }
    if momentum > 0.0 {
        for ((b, v), g) in layer
            .bias
            .iter_mut()
            .zip(layer.bias_velocity.iter_mut())
            .zip(&layer.bias_grad)
        {
            *v = momentum * *v + g;
            *b -= lr * *v;
        }
    } else {
        for (b, g) in layer.bias.iter_mut().zip(&layer.bias_grad) {
            *b -= lr * g;
        }
    }
}

impl Stepper for MlpStepper<'_> {
    fn step(&mut self, batch: &[usize]) -> Result<f32> {
        self.gather(batch);
        self.forward();
        let loss = self.loss_and_output_grad();
        self.backward_and_update();
        Ok(loss)
    }

    fn finish(self, model: &mut Model) -> Result<()> {
        let params = model.params_mut();
        for (pair, layer) in params.chunks_exact_mut(2).zip(self.layers) {
            if layer.trainable {
                pair[0].values = layer.weight;
                pair[1].values = layer.bias;
            }
        }
        Ok(())
    }
}
