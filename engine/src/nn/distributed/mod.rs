//! Data-parallel training on torch.distributed's own machinery (c10d), linked from libtorch: a TCP store for the
//! rendezvous, Gloo process groups, DDP's bucketing Reducer ([`group`]), and gradient averaging around each backward
//! pass ([`gradients`]). Nothing here reduces tensors itself.
//!
//! A step with `distributed: {ranks: N}` runs as N processes of the same binary (the local executor launches them;
//! under Slurm, `srun` does). Each holds the whole model and takes a contiguous part of every global batch
//! ([`shard`]); its loss is weighted by its share so the averaged gradient is the global batch's, whatever N.

pub mod gradients;
pub mod group;

use std::time::Duration;

use serde::{Deserialize, Serialize};

pub use gradients::GradientSync;
pub use group::ProcessGroup;

/// `distributed:` on a training step.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct DistributedConfig {
    /// Processes the step runs as, each on its part of every batch (`batch_size` stays the global batch).
    pub ranks: usize,
    /// `gloo` (CPU); `nccl` is for CUDA devices.
    #[serde(default)]
    pub backend: Backend,
    /// Seconds a rank waits for the others (to join, then in every collective) before the step fails.
    #[serde(default = "default_timeout")]
    pub timeout: u64,
}

fn default_timeout() -> u64 {
    300
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Backend {
    #[default]
    Gloo,
    Nccl,
}

impl DistributedConfig {
    /// Problems as `(field, message)`, fields relative to `distributed`.
    pub fn check(&self) -> Vec<(String, String)> {
        let mut problems = Vec::new();
        if self.ranks == 0 {
            problems.push(("distributed.ranks".into(), "must be 1 or more".into()));
        }
        if self.timeout == 0 {
            problems.push(("distributed.timeout".into(), "must be 1 second or more".into()));
        }
        problems
    }

    pub fn timeout(&self) -> Duration {
        Duration::from_secs(self.timeout)
    }

    /// Whether this build and `device` can run the backend.
    pub fn check_device(&self, device: tch::Device) -> anyhow::Result<()> {
        match (self.backend, device) {
            (Backend::Gloo, tch::Device::Cpu) => Ok(()),
            (Backend::Gloo, _) => anyhow::bail!(
                "field `distributed.backend`: gloo ranks train on the CPU; this workflow's device is {device:?} \
                 (use `device: cpu`)"
            ),
            (Backend::Nccl, tch::Device::Cpu) => {
                anyhow::bail!("field `distributed.backend`: nccl needs CUDA devices; on the CPU use gloo")
            }
            (Backend::Nccl, _) => anyhow::bail!(
                "field `distributed.backend`: the nccl backend is not built into anbiq yet (it needs libtorch_cuda's \
                 ProcessGroupNCCL); use gloo on the CPU"
            ),
        }
    }
}

/// Where and who this process is in a group: from `ANBIQ_RANK`, `ANBIQ_WORLD_SIZE`, `ANBIQ_MASTER_ADDR` and
/// `ANBIQ_MASTER_PORT` (the local executor sets them), the rank and size falling back to Slurm's `SLURM_PROCID` and
/// `SLURM_NTASKS` (under `srun`, whose job script sets the address).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Rendezvous {
    pub rank: usize,
    pub world: usize,
    pub host: String,
    pub port: u16,
}

impl Rendezvous {
    /// `None` when this process is not one rank of a group.
    pub fn from_env() -> anyhow::Result<Option<Rendezvous>> {
        Self::from_vars(|name| std::env::var(name).ok())
    }

    fn from_vars(var: impl Fn(&str) -> Option<String>) -> anyhow::Result<Option<Rendezvous>> {
        let Some(host) = var("ANBIQ_MASTER_ADDR") else { return Ok(None) };
        let number = |names: &[&str]| -> anyhow::Result<usize> {
            let (name, value) = names
                .iter()
                .find_map(|n| var(n).map(|v| (*n, v)))
                .ok_or_else(|| anyhow::anyhow!("ANBIQ_MASTER_ADDR is set but none of {} is", names.join(", ")))?;
            value.trim().parse().map_err(|_| anyhow::anyhow!("{name}={value} is not a number"))
        };
        let rank = number(&["ANBIQ_RANK", "SLURM_PROCID"])?;
        let world = number(&["ANBIQ_WORLD_SIZE", "SLURM_NTASKS"])?;
        let port = number(&["ANBIQ_MASTER_PORT"])?;
        anyhow::ensure!(rank < world, "rank {rank} is not below the world size {world}");
        anyhow::ensure!((1..=65535).contains(&port), "ANBIQ_MASTER_PORT={port} is not a port");
        Ok(Some(Rendezvous { rank, world, host, port: port as u16 }))
    }
}

/// Rank `rank`'s part of a global batch: a contiguous run, the first `len % world` ranks one sample more.
pub fn shard<T>(batch: &[T], rank: usize, world: usize) -> &[T] {
    let (base, extra) = (batch.len() / world, batch.len() % world);
    let start = rank * base + rank.min(extra);
    let len = base + usize::from(rank < extra);
    &batch[start..start + len]
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    #[test]
    fn shards_partition_the_batch_in_order() {
        let batch: Vec<usize> = (0..7).collect();
        let parts: Vec<&[usize]> = (0..3).map(|r| shard(&batch, r, 3)).collect();
        assert_eq!(parts, vec![&[0, 1, 2][..], &[3, 4][..], &[5, 6][..]]);
        assert_eq!(shard(&[9], 1, 2), &[] as &[i32]);
        assert_eq!(shard(&[9], 0, 2), &[9]);
    }

    #[test]
    fn rendezvous_from_anbiq_or_slurm_variables() {
        let vars = |pairs: &[(&str, &str)]| {
            let map: HashMap<String, String> = pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
            move |name: &str| map.get(name).cloned()
        };
        assert_eq!(Rendezvous::from_vars(vars(&[])).unwrap(), None);
        let local = [("ANBIQ_MASTER_ADDR", "127.0.0.1"), ("ANBIQ_MASTER_PORT", "29400"), ("ANBIQ_RANK", "1")];
        let with_world: Vec<_> = local.iter().copied().chain([("ANBIQ_WORLD_SIZE", "2")]).collect();
        assert_eq!(
            Rendezvous::from_vars(vars(&with_world)).unwrap(),
            Some(Rendezvous { rank: 1, world: 2, host: "127.0.0.1".into(), port: 29400 })
        );
        let slurm = [
            ("ANBIQ_MASTER_ADDR", "node1"),
            ("ANBIQ_MASTER_PORT", "20001"),
            ("SLURM_PROCID", "0"),
            ("SLURM_NTASKS", "4"),
        ];
        assert_eq!(Rendezvous::from_vars(vars(&slurm)).unwrap().map(|r| (r.rank, r.world)), Some((0, 4)));
        let err = Rendezvous::from_vars(vars(&local)).unwrap_err().to_string();
        assert!(err.contains("ANBIQ_WORLD_SIZE, SLURM_NTASKS"), "{err}");
        let bad =
            [("ANBIQ_MASTER_ADDR", "h"), ("ANBIQ_MASTER_PORT", "1"), ("ANBIQ_RANK", "2"), ("ANBIQ_WORLD_SIZE", "2")];
        assert!(Rendezvous::from_vars(vars(&bad)).is_err());
    }

    /// Two ranks in one process (threads), over loopback: sums, broadcasts and the gradient average.
    #[test]
    fn two_ranks_sum_and_broadcast() {
        let port = free_port();
        let results: Vec<(Vec<f64>, Vec<f32>)> = std::thread::scope(|s| {
            let handles: Vec<_> = (0..2)
                .map(|rank| {
                    s.spawn(move || {
                        let at = Rendezvous { rank, world: 2, host: "127.0.0.1".into(), port };
                        let group = ProcessGroup::join(&at, Duration::from_secs(30)).unwrap();
                        let sum = group.all_sum(&[rank as f64 + 1.0, 10.0]).unwrap();
                        let t = Tensor::from_slice(&[rank as f32; 3]);
                        group.broadcast_from_root(&[t.shallow_clone()]).unwrap();
                        (sum, Vec::<f32>::try_from(&t).unwrap())
                    })
                })
                .collect();
            handles.into_iter().map(|h| h.join().unwrap()).collect()
        });
        for (sum, broadcast) in results {
            assert_eq!(sum, vec![3.0, 20.0]);
            assert_eq!(broadcast, vec![0.0; 3]);
        }
    }

    use tch::Tensor;

    fn free_port() -> u16 {
        std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
    }
}
