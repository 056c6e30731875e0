//! SGD, Adam and AdamW with their state in plain tensors, so a checkpoint can save and restore it exactly.
//!
//! tch's optimisers keep their state inside libtorch with no way to read it back; resuming a killed run with
//! bit-identical results needs the momentum and moment buffers. The update rules follow `torch.optim` (SGD with
//! dampening 0, Adam/AdamW with bias correction) and run without autograd.
//!
//! Two implementations of the same arithmetic:
//! - the general one, a few in-place libtorch ops per parameter (any device, any dtype);
//! - a fused one for contiguous f32 CPU tensors ([`fused`]): one pass over each parameter, its gradient and its
//!   buffers (Adam: two passes around libtorch's own `sqrt`). It performs exactly the f32 roundings of the libtorch
//!   ops, in the same order (no FMA contraction: Rust never fuses), so both give bit-identical weights; a test
//!   checks it. It exists because the general path costs ≈12 libtorch calls and temporaries per parameter: on small
//!   models their dispatch costs more than the arithmetic, on large ones their extra passes over memory.
//!
//! Per step the gradients are touched as little as possible: `zero_grad` drops them (PyTorch's `set_to_none`, so
//! backward writes fresh ones instead of adding into zeros), and gradient clipping only computes the norm, leaving
//! the scaling to the fused pass (the general path scales in place, as `clip_grad_norm_` does).

use std::path::Path;

use anyhow::{bail, Context as _};
use tch::{nn::VarStore, Device, Kind, Tensor};

use super::optimizer_config::OptimizerConfig;

pub struct Optimizer {
    config: OptimizerConfig,
    lr: f64,
    /// Trainable parameters by name (sorted: the state files list them in a fixed order).
    params: Vec<(String, Tensor)>,
    /// Per parameter (same order as `params`): SGD's momentum buffer, or Adam's first and second moments; empty until
    /// the parameter's first update.
    state: Vec<Vec<Tensor>>,
    /// Completed update steps (Adam's bias correction).
    steps: i64,
    /// Whether to use the fused CPU path where it applies (tests turn it off to compare both).
    fused: bool,
    /// Per parameter: the clipping factor `clip_grad_norm` left for the fused pass to apply (1 when none).
    grad_scale: Vec<f32>,
}

/// [`Optimizer::clip_grad_norm`] with the norm and the factor left on the gradients' device: every gradient is
/// multiplied by min(1, max / (norm + 1e-6)) — by 1 when under the limit — so the host never waits for the norm (on
/// CUDA a read-back would stall the stream every step). The CPU keeps the read-back: it costs nothing there and lets
/// the fused pass apply the factor.
pub fn clip_on_device(grads: &[Tensor], max: f64) {
    tch::no_grad(|| {
        let norms: Vec<Tensor> = grads.iter().map(|g| g.norm().to_kind(Kind::Float)).collect();
        let coef = (Tensor::stack(&norms, 0).norm() + 1e-6).reciprocal() * max;
        let coef = coef.clamp_max(1.0);
        for g in grads {
            let _ = g.shallow_clone().g_mul_(&coef.to_kind(g.kind()));
        }
    });
}

extern "C" {
    fn anbiq_reset_grad(t: *mut torch_sys::C_tensor) -> i32;
}

/// Drops `t`'s gradient (`.grad = None`); the next backward creates it afresh.
fn reset_grad(t: &Tensor) {
    let mut handle = t.shallow_clone();
    // SAFETY: the pointer is the live at::Tensor behind `handle`; the C++ side catches every exception.
    if unsafe { anbiq_reset_grad(handle.as_mut_ptr()) } != 0 {
        // Cannot happen for a parameter (it has autograd metadata); zeroing is the safe equivalent.
        let mut g = t.grad();
        if g.defined() {
            let _ = g.zero_();
        }
    }
}

impl Optimizer {
    pub fn new(config: &OptimizerConfig, vs: &VarStore) -> Optimizer {
        let mut params: Vec<(String, Tensor)> = vs.variables().into_iter().filter(|(_, t)| t.requires_grad()).collect();
        params.sort_by(|a, b| a.0.cmp(&b.0));
        let state = params.iter().map(|_| Vec::new()).collect();
        let grad_scale = vec![1.0; params.len()];
        Optimizer { config: config.clone(), lr: config.lr(), params, state, steps: 0, fused: true, grad_scale }
    }

    pub fn set_lr(&mut self, lr: f64) {
        self.lr = lr;
    }

    /// Drops the gradients, as PyTorch's `zero_grad()` (`set_to_none=True`): the next backward writes them afresh
    /// instead of filling zeros and adding into them. A parameter that then gets no gradient is skipped by `step`.
    pub fn zero_grad(&mut self) {
        for (_, p) in &self.params {
            reset_grad(p);
        }
        self.grad_scale.fill(1.0);
    }

    /// Scales all gradients so their global L2 norm is at most `max` (as `torch.nn.utils.clip_grad_norm_`), for the
    /// next [`step`](Self::step). Where the fused pass will update a parameter, the scaling waits for it (the same
    /// f32 product, one pass less), so such a `.grad` reads unscaled until then. Call once per step.
    pub fn clip_grad_norm(&mut self, max: f64) {
        debug_assert!(self.grad_scale.iter().all(|&s| s == 1.0), "clip_grad_norm twice without a step");
        let grads: Vec<(usize, Tensor)> =
            self.params.iter().map(|(_, p)| p.grad()).enumerate().filter(|(_, g)| g.defined()).collect();
        if grads.is_empty() {
            return;
        }
        if grads[0].1.device().is_cuda() {
            let grads: Vec<Tensor> = grads.into_iter().map(|(_, g)| g).collect();
            return clip_on_device(&grads, max);
        }
        tch::no_grad(|| {
            let norms: Vec<Tensor> = grads.iter().map(|(_, g)| g.norm().to_kind(Kind::Float)).collect();
            let total = Tensor::stack(&norms, 0).norm().double_value(&[]);
            let coef = max / (total + 1e-6);
            if coef < 1.0 {
                for (i, g) in &grads {
                    if self.fused && fused::applies(&self.params[*i].1, g, &self.state[*i]) {
                        // libtorch's `mul_` by a scalar multiplies by the scalar rounded to f32.
                        self.grad_scale[*i] = coef as f32;
                    } else {
                        let _ = g.shallow_clone().g_mul_scalar_(coef);
                    }
                }
            }
        });
    }

    pub fn step(&mut self) {
        self.steps += 1;
        let t = self.steps as f64;
        let lr = self.lr;
        let config = self.config.clone();
        tch::no_grad(|| {
            for (((_, p), state), scale) in self.params.iter().zip(self.state.iter_mut()).zip(&mut self.grad_scale) {
                let grad = p.grad();
                if !grad.defined() {
                    continue;
                }
                if self.fused && fused::applies(p, &grad, state) {
                    fused::step(&config, lr, t, p, &grad, *scale, state);
                } else {
                    general_step(&config, lr, t, p, &grad, state);
                }
                *scale = 1.0;
            }
        });
    }

    /// Writes the optimiser's state (buffers and step count) to `path` (safetensors).
    pub fn save(&self, path: &Path) -> anyhow::Result<()> {
        let mut named: Vec<(String, Tensor)> = vec![("__steps".into(), Tensor::from_slice(&[self.steps]))];
        for ((name, _), buffers) in self.params.iter().zip(&self.state) {
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
        let mut state: Vec<Vec<(usize, Tensor)>> = self.params.iter().map(|_| Vec::new()).collect();
        for (name, t) in tensors {
            if name == "__steps" {
                self.steps = t.int64_value(&[0]);
                continue;
            }
            let Some((param, index)) = name.rsplit_once('/') else { bail!("{}: bad entry `{name}`", path.display()) };
            let Some(i) = self.params.iter().position(|(n, _)| n == param) else {
                bail!("{}: state for unknown parameter `{param}`", path.display())
            };
            // Contiguous like the buffers `step` creates, so the fused path applies after a resume too.
            state[i].push((index.parse()?, t.to_device(device).contiguous()));
        }
        self.state = state
            .into_iter()
            .map(|mut v| {
                v.sort_by_key(|(i, _)| *i);
                v.into_iter().map(|(_, t)| t).collect()
            })
            .collect();
        Ok(())
    }
}

/// One parameter's update as in-place libtorch ops: any device and dtype. [`fused::step`] is the same arithmetic.
fn general_step(config: &OptimizerConfig, lr: f64, t: f64, p: &Tensor, grad: &Tensor, state: &mut Vec<Tensor>) {
    let mut p = p.shallow_clone();
    match *config {
        OptimizerConfig::Sgd { momentum, nesterov, weight_decay, .. } => {
            let mut g = if weight_decay > 0.0 { grad + &p * weight_decay } else { grad.shallow_clone() };
            if momentum > 0.0 {
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
            let decoupled = matches!(config, OptimizerConfig::AdamW { .. });
            let g = if weight_decay > 0.0 && !decoupled { grad + &p * weight_decay } else { grad.shallow_clone() };
            if weight_decay > 0.0 && decoupled {
                let _ = p.g_mul_scalar_(1.0 - lr * weight_decay);
            }
            if state.is_empty() {
                *state = vec![p.zeros_like(), p.zeros_like()];
            }
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

/// The update of contiguous f32 CPU tensors in one pass, with the general path's exact roundings.
///
/// libtorch computes `tensor ∘ scalar` in f32 with the f64 scalar rounded to f32 first, and `a.add_(b)` as one
/// rounded f32 addition; each step below is one such operation, in the general path's order.
mod fused {
    use super::*;

    /// Whether `p`, its gradient and its buffers (if any) are all contiguous f32 on the CPU, of one size.
    pub(super) fn applies(p: &Tensor, grad: &Tensor, state: &[Tensor]) -> bool {
        let ok = |t: &Tensor| t.device() == Device::Cpu && t.kind() == Kind::Float && t.is_contiguous();
        let n = p.numel();
        ok(p) && ok(grad) && grad.numel() == n && state.iter().all(|b| ok(b) && b.numel() == n)
    }

    /// # Safety
    /// `t` must be a contiguous f32 CPU tensor that nothing else reads or writes while the slice lives.
    unsafe fn slice_mut<'a>(t: &Tensor) -> &'a mut [f32] {
        let n = t.numel();
        if n == 0 {
            return &mut [];
        }
        std::slice::from_raw_parts_mut(t.data_ptr() as *mut f32, n)
    }

    /// `scale`: the clipping factor to apply to the gradient first (1 for none; `x · 1` is exact).
    pub(super) fn step(
        config: &OptimizerConfig,
        lr: f64,
        t: f64,
        p: &Tensor,
        grad: &Tensor,
        scale: f32,
        state: &mut Vec<Tensor>,
    ) {
        match *config {
            OptimizerConfig::Sgd { momentum, nesterov, weight_decay, .. } => {
                let first = state.is_empty();
                if momentum > 0.0 && first {
                    state.push(p.empty_like());
                }
                // SAFETY: `applies` checked layout and dtype; parameter, gradient and buffer are distinct tensors,
                // and no other thread touches them during the step.
                let (p, g) = unsafe { (slice_mut(p), slice_mut(grad)) };
                let buf = state.first().map(|b| unsafe { slice_mut(b) });
                sgd(p, g, scale, buf, first, momentum as f32, nesterov, weight_decay as f32, -lr as f32);
            }
            OptimizerConfig::Adam { betas, weight_decay, eps, .. }
            | OptimizerConfig::AdamW { betas, weight_decay, eps, .. } => {
                if state.is_empty() {
                    *state = vec![p.zeros_like(), p.zeros_like()];
                }
                let decoupled = matches!(config, OptimizerConfig::AdamW { .. });
                let [b1, b2] = betas;
                let c = AdamConsts {
                    l2: if weight_decay > 0.0 && !decoupled { Some(weight_decay as f32) } else { None },
                    decay: if weight_decay > 0.0 && decoupled { Some((1.0 - lr * weight_decay) as f32) } else { None },
                    b1: b1 as f32,
                    one_minus_b1: (1.0 - b1) as f32,
                    b2: b2 as f32,
                    one_minus_b2: (1.0 - b2) as f32,
                    sqrt_bias2: (1.0 - b2.powf(t)).sqrt() as f32,
                    eps: eps as f32,
                    step: (-lr / (1.0 - b1.powf(t))) as f32,
                };
                // SAFETY: as above.
                let (p_s, g, m, v) =
                    unsafe { (slice_mut(p), slice_mut(grad), slice_mut(&state[0]), slice_mut(&state[1])) };
                adam_moments(p_s, g, scale, m, v, &c);
                // libtorch's vectorised sqrt is not always correctly rounded (it differs from `f32::sqrt` in the
                // last bit for some inputs), so the square root comes from the very op the general path uses.
                let root = state[1].sqrt();
                // SAFETY: as above; `root` is a fresh contiguous f32 CPU tensor.
                let (p_s, m, root_s) = unsafe { (slice_mut(p), slice_mut(&state[0]), slice_mut(&root)) };
                adam_update(p_s, m, root_s, &c);
            }
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn sgd(
        p: &mut [f32],
        g: &[f32],
        scale: f32,
        buf: Option<&mut [f32]>,
        first: bool,
        momentum: f32,
        nesterov: bool,
        wd: f32,
        neg_lr: f32,
    ) {
        // g ← g·scale; g ← g + p·wd (when wd > 0); buf ← g (first step) or buf·μ + g; g ← g + buf·μ (Nesterov) or
        // buf; p ← p + g·(−lr).
        match buf {
            None => {
                for (p, &g) in p.iter_mut().zip(g) {
                    let g = g * scale;
                    let g = if wd > 0.0 { g + *p * wd } else { g };
                    *p += g * neg_lr;
                }
            }
            Some(buf) => {
                for ((p, &g), b) in p.iter_mut().zip(g).zip(buf.iter_mut()) {
                    let g = g * scale;
                    let g = if wd > 0.0 { g + *p * wd } else { g };
                    *b = if first { g } else { *b * momentum + g };
                    let g = if nesterov { g + *b * momentum } else { *b };
                    *p += g * neg_lr;
                }
            }
        }
    }

    pub(super) struct AdamConsts {
        /// Adam's L2 penalty: g ← g + p·wd.
        pub l2: Option<f32>,
        /// AdamW's decoupled decay: p ← p·(1 − lr·wd).
        pub decay: Option<f32>,
        pub b1: f32,
        pub one_minus_b1: f32,
        pub b2: f32,
        pub one_minus_b2: f32,
        pub sqrt_bias2: f32,
        pub eps: f32,
        /// −lr / (1 − β₁ᵗ).
        pub step: f32,
    }

    /// g ← g·scale; g ← g + p·wd (Adam) or p ← p·(1 − lr·wd) (AdamW); m ← m·β₁ + g·(1 − β₁);
    /// v ← v·β₂ + g·g·(1 − β₂).
    fn adam_moments(p: &mut [f32], g: &[f32], scale: f32, m: &mut [f32], v: &mut [f32], c: &AdamConsts) {
        for (((p, &g), m), v) in p.iter_mut().zip(g).zip(m.iter_mut()).zip(v.iter_mut()) {
            let g = g * scale;
            let g = match c.l2 {
                Some(wd) => g + *p * wd,
                None => g,
            };
            if let Some(d) = c.decay {
                *p *= d;
            }
            *m = *m * c.b1 + g * c.one_minus_b1;
            *v = *v * c.b2 + g * g * c.one_minus_b2;
        }
    }

    /// p ← p + m / (√v / √(1 − β₂ᵗ) + ε) · (−lr / (1 − β₁ᵗ)), with `root` = √v.
    fn adam_update(p: &mut [f32], m: &[f32], root: &[f32], c: &AdamConsts) {
        for ((p, &m), &r) in p.iter_mut().zip(m).zip(root) {
            let denom = r / c.sqrt_bias2 + c.eps;
            *p += m / denom * c.step;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::nn::runtime::random::uniform;

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
    fn clipping_on_the_device_scales_as_clipping_with_a_read_back() {
        let grads = || [Tensor::from_slice(&[3.0f32, -4.0]), Tensor::from_slice(&[12.0f32])];
        // Norm 13: clipped to 6.5, every gradient scaled by 6.5 / 13 (up to the 1e-6 both add).
        let clipped = grads();
        clip_on_device(&clipped, 6.5);
        let factor = 6.5 / (13.0 + 1e-6);
        let expected = [vec![3.0 * factor, -4.0 * factor], vec![12.0 * factor]];
        for (g, want) in clipped.iter().zip(&expected) {
            let got = Vec::<f64>::try_from(g.to_kind(Kind::Double)).unwrap();
            assert!(got.iter().zip(want).all(|(a, b)| (a - b).abs() < 1e-6), "{got:?} against {want:?}");
        }
        // Under the limit nothing changes, bit for bit (multiplied by exactly 1).
        let kept = grads();
        clip_on_device(&kept, 100.0);
        assert!(kept.iter().zip(grads()).all(|(a, b)| a.equal(&b)));
        // The same as the read-back path of `clip_grad_norm` (general, unfused update) on the same gradients.
        let vs = VarStore::new(tch::Device::Cpu);
        let a = vs.root().var_copy("a", &Tensor::from_slice(&[0.0f32, 0.0]));
        let b = vs.root().var_copy("b", &Tensor::from_slice(&[0.0f32]));
        let mut opt =
            Optimizer::new(&OptimizerConfig::Sgd { lr: 1.0, momentum: 0.0, nesterov: false, weight_decay: 0.0 }, &vs);
        opt.fused = false;
        opt.zero_grad();
        ((&a * Tensor::from_slice(&[3.0f32, -4.0])).sum(Kind::Float) + (&b * 12.0).sum(Kind::Float)).backward();
        opt.clip_grad_norm(6.5);
        assert!(a.grad().allclose(&clipped[0], 1e-6, 1e-7, false) && b.grad().allclose(&clipped[1], 1e-6, 1e-7, false));
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
        assert!(b.state[0][1].equal(&a.state[0][1]));
    }

    /// The fused CPU path and the general libtorch path give bit-identical weights and buffers.
    #[test]
    fn fused_path_is_bit_identical_to_the_general_path() {
        let configs = [
            OptimizerConfig::Sgd { lr: 0.1, momentum: 0.0, nesterov: false, weight_decay: 0.0 },
            OptimizerConfig::Sgd { lr: 0.05, momentum: 0.9, nesterov: false, weight_decay: 1e-4 },
            OptimizerConfig::Sgd { lr: 0.1, momentum: 0.9, nesterov: true, weight_decay: 0.0 },
            OptimizerConfig::Adam { lr: 0.003, betas: [0.9, 0.999], weight_decay: 0.0, eps: 1e-8 },
            OptimizerConfig::Adam { lr: 0.01, betas: [0.8, 0.99], weight_decay: 0.01, eps: 1e-6 },
            OptimizerConfig::AdamW { lr: 0.001, betas: [0.9, 0.999], weight_decay: 0.01, eps: 1e-8 },
        ];
        for config in configs {
            let run = |fused: bool| {
                // Seeded streams, not libtorch's global generator, which tests running beside this one draw from.
                let values = |seed, shape: &[i64]| (uniform(seed, shape, tch::Device::Cpu) * 2.0 - 1.0) * 3f64.sqrt();
                let vs = VarStore::new(tch::Device::Cpu);
                let w = vs.root().var_copy("w", &values(3, &[37, 19]));
                let b = vs.root().var_copy("b", &values(4, &[19]));
                let x = values(5, &[8, 37]);
                let mut opt = Optimizer::new(&config, &vs);
                opt.fused = fused;
                for i in 0..7 {
                    opt.set_lr(config.lr() * (1.0 - 0.1 * i as f64));
                    opt.zero_grad();
                    (x.mm(&w) + &b).tanh().pow_tensor_scalar(2).sum(Kind::Float).backward();
                    // Clipping that bites on odd steps (the gradient norm here is 17-22), none on even ones.
                    opt.clip_grad_norm(if i % 2 == 1 { 1.5 } else { 1e9 });
                    opt.step();
                }
                (w, b, opt.state)
            };
            let (w1, b1, s1) = run(true);
            let (w2, b2, s2) = run(false);
            assert!(w1.equal(&w2) && b1.equal(&b2), "{config:?}: weights differ");
            for (x, y) in s1.iter().flatten().zip(s2.iter().flatten()) {
                assert!(x.equal(y), "{config:?}: buffers differ");
            }
            assert_eq!(s1.iter().flatten().count(), s2.iter().flatten().count());
        }
    }
}
