//! End-to-end tests across the module: init, determinism, learning, shapes, persistence.

use crate::artifact::model::{ModelArtifact, ModelSpec};
use crate::nn::runtime::progress::Progress;
use crate::nn::training::learner::{
    accuracy_on, Batch, BatchSource, Learner, LearnerConfig, ModelEvaluator, TrainStep,
};
use crate::nn::training::optimizer_config::OptimizerConfig;
use crate::nn::training::schedule::LrSchedule;
use crate::nn::{build, ArchConfig, Mode, Model};
use crate::rng::Rng;
use tch::{nn::VarStore, Device, Kind, Tensor};

fn mlp(hidden: &[i64], dropout: f64) -> ArchConfig {
    serde_json::from_value(serde_json::json!({"arch": "mlp", "hidden": hidden, "dropout": dropout})).unwrap()
}

fn build_in(config: &ArchConfig, input: &[i64], classes: i64, seed: u64) -> (VarStore, Box<dyn Model>) {
    let vs = VarStore::new(Device::Cpu);
    let model = build(config, &vs.root(), input, classes, &mut Rng::derive(seed, "init")).unwrap();
    (vs, model)
}

/// All variables as (name, raw bytes), sorted: equality means bit-identical weights.
fn weight_bytes(vs: &VarStore) -> Vec<(String, Vec<u8>)> {
    let mut v: Vec<(String, Vec<u8>)> = vs
        .variables()
        .into_iter()
        .map(|(name, t)| {
            let t = t.detach().contiguous();
            let n = t.numel() * t.kind().elt_size_in_bytes();
            let mut bytes = vec![0u8; n];
            t.copy_data_u8(&mut bytes, t.numel());
            (name, bytes)
        })
        .collect();
    v.sort();
    v
}

#[test]
fn init_follows_pytorch_default_bounds() {
    let (vs, _) = build_in(&mlp(&[256], 0.0), &[784], 10, 1);
    let vars = vs.variables();
    for (name, fan_in) in [("hidden.0.weight", 784.0), ("hidden.0.bias", 784.0), ("out.weight", 256.0)] {
        let t = &vars[name];
        let bound = 1.0 / f64::sqrt(fan_in);
        let (lo, hi) = (t.min().double_value(&[]), t.max().double_value(&[]));
        assert!(lo >= -bound && hi < bound, "{name}: [{lo}, {hi}] outside ±{bound}");
        if t.numel() > 10_000 {
            // U(-b, b): mean 0, std b/√3, and the extremes come close to the bound.
            let mean = t.mean(Kind::Double).double_value(&[]);
            let std = t.std(true).double_value(&[]);
            assert!(mean.abs() < 0.01 * bound, "{name} mean {mean}");
            assert!((std / (bound / 3f64.sqrt()) - 1.0).abs() < 0.01, "{name} std {std}");
            assert!(lo < -0.99 * bound && hi > 0.99 * bound);
        }
    }
    assert_eq!(crate::artifact::model::parameter_count(&vs), 784 * 256 + 256 + 256 * 10 + 10);
}

#[test]
fn same_seed_gives_bit_identical_weights() {
    let cnn: ArchConfig = serde_json::from_str(r#"{"arch":"cnn","channels":[4, 8],"hidden":[16]}"#).unwrap();
    for config in [mlp(&[32, 16], 0.0), cnn] {
        let (a, _) = build_in(&config, &[1, 8, 8], 10, 7);
        let (b, _) = build_in(&config, &[1, 8, 8], 10, 7);
        let (c, _) = build_in(&config, &[1, 8, 8], 10, 8);
        assert_eq!(weight_bytes(&a), weight_bytes(&b));
        let (wa, wc) = (weight_bytes(&a), weight_bytes(&c));
        assert!(wa.iter().zip(&wc).all(|(x, y)| x.0 == y.0 && x.1 != y.1), "different seed should change every tensor");
    }
}

#[test]
fn dropout_only_in_train_mode() {
    let (_, model) = build_in(&mlp(&[64], 0.5), &[10], 3, 1);
    let x = Tensor::ones([4, 10], (Kind::Float, Device::Cpu));
    let e1 = model.forward(&x, Mode::Eval);
    assert!(e1.equal(&model.forward(&x, Mode::Eval)));
    let mut rng = Rng::new(3);
    let t1 = model.forward(&x, Mode::Train(&mut rng));
    let t2 = model.forward(&x, Mode::Train(&mut rng));
    assert!(!t1.equal(&e1) && !t1.equal(&t2));
    assert!(t1.equal(&model.forward(&x, Mode::Train(&mut Rng::new(3)))));
}

#[test]
fn cnn_forward_shapes() {
    let config: ArchConfig = serde_json::from_str(r#"{"arch":"cnn","channels":[4, 8],"hidden":[16]}"#).unwrap();
    for (input, b) in [(vec![1, 8, 8], 3), (vec![1, 28, 28], 2)] {
        let (_, model) = build_in(&config, &input, 10, 1);
        let shape: Vec<i64> = [vec![b], input.clone()].concat();
        let x = Tensor::ones(shape.as_slice(), (Kind::Float, Device::Cpu));
        assert_eq!(model.forward(&x, Mode::Eval).size(), [b, 10]);
        // A flat batch is viewed as images too.
        let flat = x.reshape([b, -1]);
        assert_eq!(model.forward(&flat, Mode::Eval).size(), [b, 10]);
    }
    // Three pooling stages do not fit an 4×4 image.
    let deep: ArchConfig = serde_json::from_str(r#"{"arch":"cnn","channels":[2, 2, 2]}"#).unwrap();
    let vs = VarStore::new(Device::Cpu);
    assert!(build(&deep, &vs.root(), &[1, 4, 4], 10, &mut Rng::new(0)).is_err());
}

/// Two Gaussian blobs per class in 2-D, well separated, as an in-memory dataset.
struct Blobs {
    x: Tensor,
    y: Tensor,
}

impl Blobs {
    fn new(n_per_class: usize, classes: usize, seed: u64) -> Self {
        let mut rng = Rng::derive(seed, "blobs");
        let (mut xs, mut ys) = (Vec::new(), Vec::new());
        for c in 0..classes {
            let angle = c as f64 * std::f64::consts::TAU / classes as f64;
            for _ in 0..n_per_class {
                xs.push((3.0 * angle.cos() + 0.3 * rng.normal_f64()) as f32);
                xs.push((3.0 * angle.sin() + 0.3 * rng.normal_f64()) as f32);
                ys.push(c as i64);
            }
        }
        let n = ys.len() as i64;
        Blobs { x: Tensor::from_slice(&xs).reshape([n, 2]), y: Tensor::from_slice(&ys) }
    }
}

impl BatchSource for Blobs {
    fn len(&self) -> usize {
        self.y.size()[0] as usize
    }
    fn batch(&self, idx: &Tensor) -> Batch {
        Batch::new(self.x.index_select(0, idx), self.y.index_select(0, idx), idx.shallow_clone())
    }
}

struct CrossEntropy<'a>(&'a dyn Model);

impl TrainStep for CrossEntropy<'_> {
    fn loss(&mut self, batch: &Batch, rng: &mut Rng, _progress: f64) -> anyhow::Result<Tensor> {
        Ok(self.0.forward(&batch.x, Mode::Train(rng)).cross_entropy_for_logits(&batch.y))
    }
}

/// Fits `model` on `train` by cross-entropy through the [`Learner`], scoring `val` after every epoch.
fn fit_scored(
    vs: &VarStore,
    model: &dyn Model,
    config: LearnerConfig,
    train: &Blobs,
    val: &Blobs,
    rng: &mut Rng,
) -> crate::nn::training::learner::History {
    let eval = ModelEvaluator { model, data: val, batch_size: 64 };
    Learner::new(config).fit(vs, &mut CrossEntropy(model), train, Some(&eval), rng, &Progress::hidden(), None).unwrap()
}

fn train_blobs(seed: u64) -> (VarStore, crate::nn::training::learner::History, f64) {
    tch::set_num_threads(1);
    let data = Blobs::new(40, 4, 0);
    let (vs, model) = build_in(&mlp(&[16], 0.1), &[2], 4, seed);
    let config = LearnerConfig {
        epochs: 30,
        batch_size: 16,
        optimizer: OptimizerConfig::Adam { lr: 0.02, betas: [0.9, 0.999], weight_decay: 0.0, eps: 1e-8 },
        schedule: LrSchedule::Cosine { min_lr: 0.0, warmup_steps: 5 },
        clip_grad_norm: Some(5.0),
        keep: Default::default(),
        early_stopping: None,
        group_by_length: false,
    };
    let history = fit_scored(&vs, model.as_ref(), config, &data, &data, &mut Rng::derive(seed, "train"));
    let acc = accuracy_on(model.as_ref(), &data, 64);
    (vs, history, acc)
}

#[test]
fn mlp_learns_a_separable_problem_through_the_learner() {
    let (_, history, acc) = train_blobs(1);
    assert_eq!(history.epochs.len(), 30); // 160 samples / 16 = 10 steps per epoch: 300 steps
    assert_eq!(acc, 1.0, "{history:?}");
    let first = history.epochs[0].train_loss;
    let last = history.last().unwrap();
    assert!(last.train_loss < first / 5.0, "loss {first} → {}", last.train_loss);
    assert_eq!(last.val_accuracy, Some(1.0));
    assert!(last.lr.abs() < 1e-12, "cosine ends at min_lr, got {}", last.lr);
    serde_json::to_string(&history).unwrap();
}

#[test]
fn keep_best_restores_the_best_epoch_and_early_stopping_ends_the_run() {
    use crate::nn::training::selection::{EarlyStopping, Keep, Monitor};
    tch::set_num_threads(1);
    let data = Blobs::new(40, 4, 0);
    let val = Blobs::new(10, 4, 9);
    let fit = |epochs, keep, early_stopping| {
        let (vs, model) = build_in(&mlp(&[16], 0.3), &[2], 4, 2);
        let config = LearnerConfig {
            epochs,
            batch_size: 16,
            // A constant rate, so that the first N epochs of a longer run are a run of N epochs.
            optimizer: OptimizerConfig::Sgd { lr: 0.05, momentum: 0.9, nesterov: false, weight_decay: 0.0 },
            schedule: LrSchedule::default(),
            clip_grad_norm: None,
            keep,
            early_stopping,
            group_by_length: false,
        };
        let history = fit_scored(&vs, model.as_ref(), config, &data, &val, &mut Rng::new(3));
        (weight_bytes(&vs), history)
    };
    let stopping = EarlyStopping { patience: 3, min_delta: 0.0, metric: None };
    let (kept, history) = fit(40, Keep::Best(Monitor::ValAccuracy), Some(stopping));
    let stopped = history.stopped_after.expect("stops before epoch 40");
    assert_eq!(history.epochs.len(), stopped);
    let best = history.kept().unwrap().clone();
    assert_eq!(Some(best.epoch), history.best_epoch);
    let top = history.epochs.iter().map(|e| e.val_accuracy.unwrap()).fold(0.0, f64::max);
    assert_eq!(best.val_accuracy, Some(top));
    // Three epochs without a better score than the best one's, then the stop.
    assert_eq!(best.epoch + 3, stopped, "{history:?}");
    // The weights written are the best epoch's: those of a run that ended there.
    let (at_best, _) = fit(best.epoch, Keep::Last, None);
    assert!(kept == at_best, "the kept weights are not epoch {}'s", best.epoch);
    let (at_stop, _) = fit(stopped, Keep::Last, None);
    assert!(kept != at_stop, "the last epoch's weights were kept");
}

#[test]
fn identical_learner_runs_give_bit_identical_weights() {
    let (a, ha, _) = train_blobs(5);
    let (b, hb, _) = train_blobs(5);
    assert_eq!(weight_bytes(&a), weight_bytes(&b));
    let losses = |h: &crate::nn::training::learner::History| h.epochs.iter().map(|e| e.train_loss).collect::<Vec<_>>();
    assert_eq!(losses(&ha), losses(&hb));
}

#[test]
fn diverging_loss_names_epoch_and_batch() {
    struct Nan;
    impl TrainStep for Nan {
        fn loss(&mut self, _: &Batch, _: &mut Rng, _: f64) -> anyhow::Result<Tensor> {
            Ok(Tensor::from(f32::NAN).set_requires_grad(true))
        }
    }
    let data = Blobs::new(5, 2, 0);
    let (vs, _) = build_in(&mlp(&[4], 0.0), &[2], 2, 0);
    let config = LearnerConfig {
        epochs: 1,
        batch_size: 4,
        optimizer: OptimizerConfig::Sgd { lr: 0.1, momentum: 0.0, nesterov: false, weight_decay: 0.0 },
        schedule: LrSchedule::default(),
        clip_grad_norm: None,
        keep: Default::default(),
        early_stopping: None,
        group_by_length: false,
    };
    let err = Learner::new(config)
        .fit(&vs, &mut Nan, &data, None, &mut Rng::new(0), &Progress::hidden(), None)
        .unwrap_err()
        .to_string();
    assert!(err.contains("epoch 1, batch 1/3") && err.contains("NaN"), "{err}");
}

#[test]
fn save_load_round_trip_gives_identical_logits() {
    let dir = tempfile::tempdir().unwrap();
    let config: ArchConfig = serde_json::from_str(r#"{"arch":"cnn","channels":[4],"hidden":[8]}"#).unwrap();
    let (vs, model) = build_in(&config, &[1, 8, 8], 10, 3);
    let spec = ModelSpec::new(config.clone(), vec![1, 8, 8], 10, &vs);
    ModelArtifact::save(dir.path(), &vs, &spec).unwrap();
    let loaded = ModelArtifact::load(dir.path(), Device::Cpu).unwrap();
    assert_eq!(loaded.spec, spec);
    let x = Tensor::from_slice(&Rng::new(1).uniform_vec(2 * 64, -1.0, 1.0)).reshape([2, 1, 8, 8]);
    assert!(model.forward(&x, Mode::Eval).equal(&loaded.model.forward(&x, Mode::Eval)));
    assert_eq!(weight_bytes(&vs), weight_bytes(&loaded.vs));

    // A spec whose architecture does not match the weights is refused.
    let wrong =
        ModelSpec { arch: serde_json::from_str(r#"{"arch":"cnn","channels":[5],"hidden":[8]}"#).unwrap(), ..spec };
    std::fs::write(dir.path().join("model.json"), serde_json::to_string(&wrong).unwrap()).unwrap();
    let err = ModelArtifact::load(dir.path(), Device::Cpu).err().unwrap().to_string();
    assert!(err.contains("shape"), "{err}");
}

#[test]
fn grouping_by_length_keeps_every_sample_and_makes_batches_of_like_lengths() {
    use crate::nn::training::learner::grouped_by_length;
    let n = 1000usize;
    let lengths: Vec<i64> = (0..n as i64).map(|i| (i * 7919) % 61 + 3).collect();
    let mut rng = Rng::new(5);
    let order = rng.permutation(n);
    let grouped = grouped_by_length(order.clone(), &lengths, 16, &mut Rng::new(9));
    let mut sorted = grouped.clone();
    sorted.sort_unstable();
    assert_eq!(sorted, (0..n as i64).collect::<Vec<_>>(), "a permutation of the samples");
    assert_eq!(grouped, grouped_by_length(order.clone(), &lengths, 16, &mut Rng::new(9)), "a function of its rng");
    // The padding of a batch is what its longest sample adds to the others: far less than in random batches.
    let padding = |order: &[i64]| -> i64 {
        order
            .chunks(16)
            .map(|b| {
                let longest = b.iter().map(|&i| lengths[i as usize]).max().unwrap();
                b.iter().map(|&i| longest - lengths[i as usize]).sum::<i64>()
            })
            .sum()
    };
    assert!(padding(&grouped) * 10 < padding(&order), "{} against {}", padding(&grouped), padding(&order));
    // 1000 = 62 × 16 + 8: the 8 left over are the shortest of the last run, and stay last.
    let (tail, last_run) = (&grouped[992..], &order[800..]);
    assert!(tail.iter().all(|i| last_run.contains(i)));
    let longest_left = tail.iter().map(|&i| lengths[i as usize]).max().unwrap();
    let rest = last_run.iter().filter(|i| !tail.contains(i));
    assert!(rest.map(|&i| lengths[i as usize]).all(|l| l >= longest_left));
}

#[test]
fn reading_the_loss_every_few_batches_trains_the_same_weights_and_sums_the_same_loss() {
    tch::set_num_threads(1);
    let data = Blobs::new(40, 4, 0);
    let fit = |reads: Option<usize>| {
        let (vs, model) = build_in(&mlp(&[16], 0.1), &[2], 4, 3);
        let config = LearnerConfig {
            epochs: 3,
            batch_size: 16,
            optimizer: OptimizerConfig::Adam { lr: 0.02, betas: [0.9, 0.999], weight_decay: 0.0, eps: 1e-8 },
            schedule: LrSchedule::default(),
            clip_grad_norm: None,
            keep: Default::default(),
            early_stopping: None,
            group_by_length: false,
        };
        let learner = Learner::new(config);
        let learner = match reads {
            Some(every) => learner.reading_the_loss_every(every),
            None => learner,
        };
        let mut step = CrossEntropy(model.as_ref());
        let history = learner.fit(&vs, &mut step, &data, None, &mut Rng::new(4), &Progress::hidden(), None).unwrap();
        (vs, history)
    };
    let (every_batch, history) = fit(None);
    let (deferred, deferred_history) = fit(Some(3));
    for (name, w) in every_batch.variables() {
        assert!(w.equal(&deferred.variables()[&name]), "{name}: the loss reads changed the training");
    }
    for (a, b) in history.epochs.iter().zip(&deferred_history.epochs) {
        assert!((a.train_loss - b.train_loss).abs() <= 1e-12 * a.train_loss.abs(), "{a:?} against {b:?}");
    }
}
