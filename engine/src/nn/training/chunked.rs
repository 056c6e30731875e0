//! A language model's loss a chunk of positions at a time, with the output projection inside the chunk.
//!
//! A student's logits `[B, T, V]` and their gradient are the largest tensors of LLM training (8 × 256 × 49,152 f32
//! = 400 MB each, and a log-softmax and a rebuilt teacher distribution beside them). Every built-in loss is a mean
//! over positions of a per-position term, so the batch loss is `Σ_c (n_c / N) · loss_c` over chunks `c` of `n_c`
//! positions — and so is its gradient. [`backward_in_chunks`] therefore runs the model up to its final hidden states
//! once, then for each chunk projects that chunk's hidden states to logits, takes the chunk's loss and
//! backpropagates it at once into the output projection and into the chunk's rows of a gradient for the hidden
//! states, freeing the chunk's logits before the next; last, that gradient goes back through the trunk in one
//! backward pass. Peak memory holds one chunk's logits instead of the batch's, at no extra compute (the projection
//! runs once per position, as unchunked).

use anyhow::Result;
use tch::{Kind, Tensor};

use super::learner::BatchLoss;

/// Logits per chunk: about 2^24 (64 MiB in f32; the loss holds a few tensors of this size at once).
const LOGITS_PER_CHUNK: i64 = 1 << 24;

/// Positions per chunk for a vocabulary of `vocab` tokens. A fixed function of the vocabulary, so results do not
/// depend on anything but the workflow (the chunking changes floating-point summation order).
pub fn chunk_positions(vocab: i64) -> i64 {
    (LOGITS_PER_CHUNK / vocab.max(1)).max(1)
}

/// Backpropagates `weight · Σ_c (n_c / N) · chunk_loss(start_c, hidden_c)` over chunks of `chunk` rows of `hidden`
/// `[N, d]` (differentiable, e.g. a model's final hidden states) and returns `Σ_c (n_c / N) · chunk_loss`, detached.
/// `chunk_loss` gets a chunk's first row and its hidden states `[n_c, d]` (a leaf that requires grad), and returns
/// the chunk's mean loss — its logits computed inside, so they live for one chunk only — with its terms' shares when
/// it has several (summed over chunks the same way). `weight` is the batch's
/// [`crate::nn::training::learner::Batch::weight`].
pub fn backward_in_chunks(
    hidden: &Tensor,
    chunk: i64,
    weight: f64,
    mut chunk_loss: impl FnMut(i64, &Tensor) -> Result<(Tensor, Vec<Tensor>)>,
) -> Result<BatchLoss> {
    let rows = hidden.size()[0];
    let detached = hidden.detach();
    let grad = Tensor::zeros_like(&detached);
    let zero = || Tensor::zeros([], (Kind::Float, hidden.device()));
    let mut total = zero();
    let mut terms: Vec<Tensor> = Vec::new();
    let chunk = chunk.max(1);
    for start in (0..rows).step_by(chunk as usize) {
        let n = chunk.min(rows - start);
        let h = detached.narrow(0, start, n).detach().set_requires_grad(true);
        let (loss, loss_terms) = chunk_loss(start, &h)?;
        anyhow::ensure!(loss.numel() == 1, "the loss must be a scalar, got shape {:?}", loss.size());
        let fraction = n as f64 / rows as f64;
        let share = loss * fraction;
        if weight == 1.0 {
            share.backward();
        } else {
            (&share * weight).backward();
        }
        total += share.detach().to_kind(Kind::Float);
        terms.resize_with(loss_terms.len(), zero);
        for (sum, term) in terms.iter_mut().zip(&loss_terms) {
            *sum += term.to_kind(Kind::Float) * fraction;
        }
        grad.narrow(0, start, n).copy_(&h.grad());
    }
    if hidden.requires_grad() {
        // d/dhidden Σ hidden·grad = grad: the trunk's backward pass with the gradient the chunks collected.
        (hidden * grad.detach()).sum(hidden.kind()).backward();
    }
    Ok(BatchLoss { total, terms })
}

#[cfg(test)]
mod tests {
    use super::*;
    use tch::{Device, Reduction};

    /// The chunked loss and every gradient equal the loss on all rows at once, for chunks that do and do not divide
    /// the rows.
    #[test]
    fn chunks_give_the_unchunked_value_and_gradients() {
        let opts = (Kind::Float, Device::Cpu);
        let x = Tensor::randn([10, 6], opts);
        let trunk = Tensor::randn([6, 5], opts).set_requires_grad(true);
        let head = Tensor::randn([5, 40], opts).set_requires_grad(true);
        let labels = Tensor::randint(40, [10], (Kind::Int64, Device::Cpu));
        let teacher = Tensor::randn([10, 40], opts);
        let loss_of = |logits: &Tensor, rows: &Tensor| {
            let (log_q, log_p) =
                (logits.log_softmax(-1, Kind::Float), teacher.index_select(0, rows).log_softmax(-1, Kind::Float));
            let kl = log_q.kl_div(&log_p, Reduction::Mean, true) * 40.0;
            kl + logits.cross_entropy_for_logits(&labels.index_select(0, rows)) * 0.5
                + logits.mse_loss(&teacher.index_select(0, rows), Reduction::Mean)
        };

        let all = Tensor::arange(10, (Kind::Int64, Device::Cpu));
        let full = loss_of(&x.matmul(&trunk).tanh().matmul(&head), &all);
        full.backward();
        let (full_trunk, full_head) = (trunk.grad().copy(), head.grad().copy());

        for chunk in [1, 3, 4, 10, 64] {
            let _ = trunk.grad().zero_();
            let _ = head.grad().zero_();
            let hidden = x.matmul(&trunk).tanh();
            let value = backward_in_chunks(&hidden, chunk, 1.0, |start, h| {
                let rows = Tensor::arange_start(start, start + h.size()[0], (Kind::Int64, Device::Cpu));
                Ok((loss_of(&h.matmul(&head), &rows), Vec::new()))
            })
            .unwrap()
            .total;
            let close = |a: &Tensor, b: &Tensor| (a - b).abs().max().double_value(&[]);
            assert!(close(&value, &full) < 1e-5, "chunk {chunk}: {value:?} vs {full:?}");
            assert!(close(&trunk.grad(), &full_trunk) < 1e-5, "chunk {chunk}: trunk gradient");
            assert!(close(&head.grad(), &full_head) < 1e-5, "chunk {chunk}: head gradient");
        }
    }
}
