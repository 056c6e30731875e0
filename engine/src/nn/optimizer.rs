//! SGD, Adam and AdamW with their state in plain tensors, so a checkpoint can save and restore it exactly.
//!
//! tch's optimisers keep their state inside libtorch with no way to read it back; resuming a killed run with
//! bit-identical results needs the momentum and moment buffers. The update rules follow `torch.optim` (SGD with
//! dampening 0, Adam/AdamW with bias correction) and run as in-place tensor ops without autograd.

use std::collections::BTreeMap;
use std::path::Path;

use anyhow::{bail, Context as _};
use tch::{nn::VarStore, Kind, Tensor};

use super::optim::OptimizerConfig;

pub struct Optimizer {
    config: OptimizerConfig,
    lr: f64,
    /// Trainable parameters by name (sorted: the state files list them in a fixed order).
    params: Vec<(String, Tensor)>,
    /// Per parameter: SGD's momentum buffer, or Adam's first and second moments.
    state: BTreeMap<String, Vec<Tensor>>,
    /// Completed update steps (Adam's bias correction).
    steps: i64,
}

impl Optimizer {
    pub fn new(config: &OptimizerConfig, vs: &VarStore) -> Optimizer {
        let mut params: Vec<(String, Tensor)> = vs.variables().into_iter().filter(|(_, t)| t.requires_grad()).collect();
        params.sort_by(|a, b| a.0.cmp(&b.0));
        Optimizer { config: config.clone(), lr: config.lr(), params, state: BTreeMap::new(), steps: 0 }
    }

    pub fn set_lr(&mut self, lr: f64) {
        self.lr = lr;
    }

    pub fn zero_grad(&mut self) {
        for (_, p) in &self.params {
            let mut g = p.grad();
            if g.defined() {
                let _ = g.zero_();
            }
        }
    }

    /// Scales all gradients so their global L2 norm is at most `max` (as `torch.nn.utils.clip_grad_norm_`).
    pub fn clip_grad_norm(&mut self, max: f64) {
        let grads: Vec<Tensor> = self.params.iter().map(|(_, p)| p.grad()).filter(Tensor::defined).collect();
        if grads.is_empty() {
            return;
        }
        tch::no_grad(|| {
            let norms: Vec<Tensor> = grads.iter().map(|g| g.norm().to_kind(Kind::Float)).collect();
            let total = Tensor::stack(&norms, 0).norm().double_value(&[]);
            let coef = max / (total + 1e-6);
            if coef < 1.0 {
                for g in &grads {
                    let _ = g.shallow_clone().g_mul_scalar_(coef);
                }
            }
        });
    }

    pub fn step(&mut self) {
        self.steps += 1;
        let t = self.steps as f64;
        let lr = self.lr;
        tch::no_grad(|| {
            for (name, p) in &self.params {
                let grad = p.grad();
                if !grad.defined() {
                    continue;
                }
                let mut p = p.shallow_clone();
                match self.config {
                    OptimizerConfig::Sgd { momentum, nesterov, weight_decay, .. } => {
                        let mut g = if weight_decay > 0.0 { &grad + &p * weight_decay } else { grad.shallow_clone() };
                        if momentum > 0.0 {
                            let state = self.state.entry(name.clone()).or_default();
                            if state.is_empty() {
                                state.push(g.detach().copy());
                            } else {
                                let _ = state[0].g_mul_scalar_(momentum).g_add_(&g);
                            }
                            g = if nesterov { &g + &state[0] * momentum } else { state[0].shallow_clone() };
                        }
                        let _ = p.g_add_(&(g * -lr));
                    }
                    OptimizerConfig::Adam { betas, weight_decay, eps, .. }
                    | OptimizerConfig::AdamW { betas, weight_decay, eps, .. } => {
                        let decoupled = matches!(self.config, OptimizerConfig::AdamW { .. });
                        let g = if weight_decay > 0.0 && !decoupled {
                            &grad + &p * weight_decay
                        } else {
                            grad.shallow_clone()
                        };
                        if weight_decay > 0.0 && decoupled {
                            let _ = p.g_mul_scalar_(1.0 - lr * weight_decay);
                        }
                        let state =
                            self.state.entry(name.clone()).or_insert_with(|| vec![p.zeros_like(), p.zeros_like()]);
                        let [b1, b2] = betas;
                        let _ = state[0].g_mul_scalar_(b1).g_add_(&(&g * (1.0 - b1)));
                        let _ = state[1].g_mul_scalar_(b2).g_add_(&(&g * &g * (1.0 - b2)));
                        let bias1 = 1.0 - b1.powf(t);
                        let bias2 = 1.0 - b2.powf(t);
                        let denom = state[1].sqrt() / bias2.sqrt() + eps;
                        let _ = p.g_add_(&(&state[0] / denom * (-lr / bias1)));
                    }
                }
            }
        });
    }

    /// Writes the optimiser's state (buffers and step count) to `path` (safetensors).
    pub fn save(&self, path: &Path) -> anyhow::Result<()> {
        let mut named: Vec<(String, Tensor)> = vec![("__steps".into(), Tensor::from_slice(&[self.steps]))];
        for (name, buffers) in &self.state {
            for (i, b) in buffers.iter().enumerate() {
                named.push((format!("{name}/{i}"), b.to_device(tch::Device::Cpu)));
            }
        }
        Tensor::write_safetensors(&named, path).with_context(|| format!("writing {}", path.display()))?;
        Ok(())
    }

    /// Restores what [`save`](Self::save) wrote, onto the parameters' device.
    pub fn load(&mut self, path: &Path) -> anyhow::Result<()> {
        let tensors = Tensor::read_safetensors(path).with_context(|| format!("reading {}", path.display()))?;
        let device = self.params.first().map(|(_, p)| p.device()).unwrap_or(tch::Device::Cpu);
        let mut state: BTreeMap<String, Vec<(usize, Tensor)>> = BTreeMap::new();
        for (name, t) in tensors {
            if name == "__steps" {
                self.steps = t.int64_value(&[0]);
                continue;
            }
            let Some((param, index)) = name.rsplit_once('/') else { bail!("{}: bad entry `{name}`", path.display()) };
            if !self.params.iter().any(|(n, _)| n == param) {
                bail!("{}: state for unknown parameter `{param}`", path.display());
            }
            state.entry(param.to_string()).or_default().push((index.parse()?, t.to_device(device)));
        }
        self.state = state
            .into_iter()
            .map(|(k, mut v)| {
                v.sort_by_key(|(i, _)| *i);
                (k, v.into_iter().map(|(_, t)| t).collect())
            })
            .collect();
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn one_param(value: f32) -> (VarStore, Tensor) {
        let vs = VarStore::new(tch::Device::Cpu);
        let w = vs.root().var_copy("w", &Tensor::from_slice(&[value]));
        (vs, w)
    }

    /// Runs `steps` updates of loss = w² and returns w.
    fn run(config: OptimizerConfig, steps: usize) -> f64 {
        let (vs, w) = one_param(1.0);
        let mut opt = Optimizer::new(&config, &vs);
        for _ in 0..steps {
            opt.zero_grad();
            (&w * &w).sum(Kind::Float).backward();
            opt.step();
        }
        w.double_value(&[0])
    }

    #[test]
    fn sgd_momentum_nesterov_match_hand_computation() {
        // grad = 2w. Plain: w ← w − 0.1·2w = 0.8w.
        let plain = OptimizerConfig::Sgd { lr: 0.1, momentum: 0.0, nesterov: false, weight_decay: 0.0 };
        assert!((run(plain, 2) - 0.64).abs() < 1e-6);
        // Momentum 0.9: step 1: buf=2, w=0.8; step 2: g=1.6, buf=0.9·2+1.6=3.4, w=0.8−0.34=0.46.
        let momentum = OptimizerConfig::Sgd { lr: 0.1, momentum: 0.9, nesterov: false, weight_decay: 0.0 };
        assert!((run(momentum, 2) - 0.46).abs() < 1e-6);
        // Nesterov: step 1: buf=2, g=2+0.9·2=3.8, w=0.62; step 2: g=1.24, buf=3.04, g=1.24+2.736=3.976, w=0.2224.
        let nesterov = OptimizerConfig::Sgd { lr: 0.1, momentum: 0.9, nesterov: true, weight_decay: 0.0 };
        assert!((run(nesterov, 2) - 0.2224).abs() < 1e-6);
    }

    #[test]
    fn adam_first_step_moves_by_lr() {
        // Bias-corrected first Adam step is lr·sign(grad) (up to eps).
        let adam = OptimizerConfig::Adam { lr: 0.01, betas: [0.9, 0.999], weight_decay: 0.0, eps: 1e-8 };
        assert!((run(adam, 1) - 0.99).abs() < 1e-6);
        // AdamW decays the weight first: w·(1 − lr·wd) then the same step.
        let adamw = OptimizerConfig::AdamW { lr: 0.01, betas: [0.9, 0.999], weight_decay: 0.5, eps: 1e-8 };
        assert!((run(adamw, 1) - (0.995 - 0.01)).abs() < 1e-6);
    }

    #[test]
    fn state_round_trips_through_a_file() {
        let config = OptimizerConfig::Adam { lr: 0.01, betas: [0.9, 0.999], weight_decay: 0.0, eps: 1e-8 };
        let dir = tempfile::tempdir().unwrap();
        let (vs, w) = one_param(1.0);
        let mut a = Optimizer::new(&config, &vs);
        for _ in 0..3 {
            a.zero_grad();
            (&w * &w).sum(Kind::Float).backward();
            a.step();
        }
        a.save(&dir.path().join("opt.safetensors")).unwrap();
        let mut b = Optimizer::new(&config, &vs);
        b.load(&dir.path().join("opt.safetensors")).unwrap();
        assert_eq!(b.steps, 3);
        assert!(b.state["w"][1].equal(&a.state["w"][1]));
    }
}
