//! The generic training step through candle's autograd (used for the CNN, and in tests as
//! the reference the fused MLP step is checked against).

use candle_core::{Device, Tensor, Var};

use crate::error::Result;
use crate::model::{forward, Model, ModelSpec};
use crate::samples::Samples;
use crate::train::{Stepper, TrainConfig};

pub(crate) struct AutogradStepper<'a> {
    shard: &'a Samples,
    spec: ModelSpec,
    /// Every parameter in model order; trained ones share storage with their `Var`.
    params: Vec<Tensor>,
    /// `(index in params, variable, velocity)` of each trained parameter.
    trained: Vec<(usize, Var, Option<Tensor>)>,
    features: Vec<f32>,
    labels: Vec<u32>,
    lr: f64,
    momentum: f64,
}

impl<'a> AutogradStepper<'a> {
    pub(crate) fn new(
        model: &Model,
        trainable: &[bool],
        shard: &'a Samples,
        config: &TrainConfig,
    ) -> Result<Self> {
        let mut params = model.tensors(&Device::Cpu)?;
        let mut trained = Vec::new();
        for (index, _) in trainable.iter().enumerate().filter(|(_, t)| **t) {
            let var = Var::from_tensor(&params[index])?;
            params[index] = var.as_tensor().clone();
            trained.push((index, var, None));
        }
        Ok(Self {
            shard,
            spec: model.spec().clone(),
            params,
            trained,
            features: Vec::with_capacity(config.batch * shard.feature_count()),
            labels: Vec::with_capacity(config.batch),
            lr: f64::from(config.lr),
            momentum: f64::from(config.momentum),
        })
    }
}

impl Stepper for AutogradStepper<'_> {
    fn step(&mut self, batch: &[usize]) -> Result<f32> {
        self.features.clear();
        self.labels.clear();
        for &index in batch {
            let row = self.shard.row(index);
            self.features.extend_from_slice(row);
            if let ModelSpec::Transformer { .. } = self.spec {
                // A language model predicts every next token: the targets are the
                // sample's tokens after the first.
                self.labels.extend(row[1..].iter().map(|&v| v as u32));
            } else {
                self.labels.push(self.shard.labels()[index]);
            }
        }
        let inputs = Tensor::from_slice(
            &self.features,
            (batch.len(), self.shard.feature_count()),
            &Device::Cpu,
        )?;
        let targets = Tensor::from_slice(&self.labels, self.labels.len(), &Device::Cpu)?;
        let logits = forward(&self.spec, &self.params, &inputs)?;
        let loss = candle_nn::loss::cross_entropy(&logits, &targets)?;
        let grads = loss.backward()?;
        for (_, var, velocity) in &mut self.trained {
            let grad = match grads.get(var.as_tensor()) {
                Some(grad) => grad.clone(),
                // A parameter the loss does not reach gets no gradient: nothing to do.
                None => continue,
            };
            let step = match velocity.take() {
                Some(v) if self.momentum > 0.0 => ((v * self.momentum)? + grad)?,
                _ => grad,
            };
            var.set(&(var.as_tensor() - (&step * self.lr)?)?)?;
            if self.momentum > 0.0 {
                *velocity = Some(step);
            }
        }
        Ok(loss.to_scalar::<f32>()?)
    }

    fn state(&self) -> Result<Vec<(Vec<f32>, Vec<f32>)>> {
        self.trained
            .iter()
            .map(|(_, var, velocity)| {
                let values: Vec<f32> = var.as_tensor().flatten_all()?.to_vec1()?;
                let velocity = match velocity {
                    Some(v) => v.flatten_all()?.to_vec1()?,
                    None if self.momentum > 0.0 => vec![0.0; values.len()],
                    None => Vec::new(),
                };
                Ok((values, velocity))
            })
            .collect()
    }

    fn set_velocity(&mut self, velocity: &[Vec<f32>]) -> Result<()> {
        for ((_, var, slot), values) in self.trained.iter_mut().zip(velocity) {
            // v = momentum * 0 + g is exactly g, so a zero velocity and none step alike.
            *slot = Some(Tensor::from_slice(
                values,
                var.as_tensor().shape(),
                &Device::Cpu,
            )?);
        }
        Ok(())
    }

    fn finish(self: Box<Self>, model: &mut Model) -> Result<()> {
        let params = model.params_mut();
        for (index, var, _) in self.trained {
            params[index].values = var.as_tensor().flatten_all()?.to_vec1()?;
        }
        Ok(())
    }
}
