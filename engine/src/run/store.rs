//! The content-addressed store: one directory per completed step, named by its key.
//!
//! ```text
//! .anbiq/
//!   steps/<key>/manifest.json     written last: a step directory without it is not trusted
//!   steps/<key>/<output>/...      the step's outputs
//!   tmp/<key>.<pid>.<n>/          a step at work; renamed into steps/ in one step when it succeeds
//!   checkpoints/<key>/            a long step's last checkpoint, kept until the step completes (resume)
//!   shards/<key>/<n>/<i>/         shard i of n of a sharded step, kept until the step is assembled (resume)
//!   failures/<key>.txt            the error of the last failed attempt at a step, until it succeeds (for `plan`)
//!   roots/<hash>.json             per workflow and parameters run here, the lockfile of its last run (`run::roots`)
//!   slurm/                        Slurm job records, scripts and job logs (see `run::slurm`)
//!   lock                          the writers' lock (below)
//! ```
//! A step writes into `tmp/`, then its manifest, then the whole directory is renamed into `steps/`. A crash at any
//! point leaves at most a stray `tmp/` directory, which the next exclusive locker deletes; it never leaves a `steps/`
//! entry.
//!
//! Locking: a local `anbiq run` (and `gc`) holds `lock` exclusively for its whole run, so two local runs never write
//! the same store at once. A single-step writer (`anbiq run-step`, what each Slurm job runs) holds it *shared*: any
//! number of jobs, on any number of nodes, commit at once, since each commits its own directory by one rename and
//! shared files (roots, manifests) are written by temp file + rename with names unique per host and process. A local
//! run waits while jobs are running, and jobs wait while a local run is, so the exclusive holder may safely delete
//! `tmp/` leftovers. On NFS the lock is a POSIX lock (Linux maps flock onto it); Lustre needs `-o flock`.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fs::{self, File};
use std::io::Write;
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

use anyhow::{bail, Context as _};
use fs2::FileExt;
use serde::{Deserialize, Serialize};

use crate::graph::key::{digest_dir, hash_digests};
use crate::graph::{FileDigest, StepKey};
use crate::steps::ArtifactKind;

/// What a completed step left: enough to verify its outputs and to fill the lockfile.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Manifest {
    pub key: StepKey,
    pub step: String,
    pub kind: String,
    pub outputs: BTreeMap<String, OutputRecord>,
    pub metrics: serde_json::Map<String, serde_json::Value>,
    /// Measurements of the machine ([`StepContext::record_timing`](crate::steps::StepContext::record_timing)).
    #[serde(default, skip_serializing_if = "serde_json::Map::is_empty")]
    pub timings: serde_json::Map<String, serde_json::Value>,
    pub seconds: f64,
    pub device: String,
    pub threads: usize,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct OutputRecord {
    pub kind: ArtifactKind,
    /// blake3 over the output's files (relative names and contents).
    pub hash: String,
    pub bytes: u64,
    /// Each file's size and hash, by path relative to the output: [`Store::stored`] checks the sizes to notice a
    /// deleted or truncated file without rehashing, `verify` the hashes to name a modified one (empty in manifests
    /// written before they were recorded).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub files: BTreeMap<String, FileDigest>,
}

/// What the store holds for a key.
#[derive(Clone, Debug, PartialEq)]
pub enum Stored {
    /// A manifest, and every file it records, at its recorded size.
    Complete(Manifest),
    /// No completed entry.
    Absent,
    /// A manifest whose outputs are not all there: the step must run again (its commit replaces the entry).
    Damaged(Manifest, Damage),
}

/// The first problem found in a damaged entry.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Damage {
    /// The file, relative to the step's directory (`model/weights.safetensors`).
    pub file: String,
    pub problem: DamageKind,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum DamageKind {
    Missing,
    Size { recorded: u64, actual: u64 },
}

impl std::fmt::Display for Damage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.problem {
            DamageKind::Missing => write!(f, "`{}` is missing", self.file),
            DamageKind::Size { recorded, actual } => {
                write!(f, "`{}` has {actual} bytes, {recorded} when it was written", self.file)
            }
        }
    }
}

pub struct Store {
    root: PathBuf,
    /// How commits make a step durable, decided once for the store's file system (see [`syncfs_is_reliable`]):
    /// one `syncfs`, or an fsync per file and directory.
    use_syncfs: bool,
    /// With `use_syncfs`: a handle on each step directory `begin` handed out and not yet committed or discarded,
    /// opened before the step wrote anything, so `syncfs` through it reports every writeback error since then (Linux
    /// samples the file system's error sequence when a file is opened), even one another commit has already seen.
    pending: Mutex<HashMap<PathBuf, File>>,
}

/// Held while a run writes to the store; dropping it releases the lock.
pub struct StoreLock {
    _file: File,
}

static TMP_COUNTER: AtomicU64 = AtomicU64::new(0);

impl Store {
    /// Opens (creating if needed) a store.
    pub fn open(root: &Path) -> anyhow::Result<Store> {
        for sub in ["steps", "tmp", "roots", "checkpoints"] {
            fs::create_dir_all(root.join(sub)).with_context(|| format!("creating store {}", root.display()))?;
        }
        let root = root.canonicalize().with_context(|| format!("resolving store path {}", root.display()))?;
        Ok(Store { use_syncfs: syncfs_is_reliable(&root), root, pending: Mutex::new(HashMap::new()) })
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Takes the store's writer lock exclusively (a whole local run), waiting for other writers to finish.
    pub fn lock(&self) -> anyhow::Result<StoreLock> {
        let path = self.root.join("lock");
        let file = File::create(&path).with_context(|| format!("creating {}", path.display()))?;
        if file.try_lock_exclusive().is_err() {
            tracing::warn!("another anbiq run is using the store {}; waiting for it to finish", self.root.display());
            file.lock_exclusive().with_context(|| format!("locking {}", path.display()))?;
        }
        // No run holds the lock now, so whatever is in tmp/ was left by a crashed run.
        self.clean_tmp()?;
        Ok(StoreLock { _file: file })
    }

    /// Takes the writer lock shared: what a single-step writer (a Slurm job) holds, so that many commit at once
    /// while a local run, which holds it exclusively, is kept out.
    pub fn lock_shared(&self) -> anyhow::Result<StoreLock> {
        let path = self.root.join("lock");
        let file = fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
            .with_context(|| format!("opening {}", path.display()))?;
        if FileExt::try_lock_shared(&file).is_err() {
            tracing::warn!("a local anbiq run is using the store {}; waiting for it to finish", self.root.display());
            FileExt::lock_shared(&file).with_context(|| format!("locking {}", path.display()))?;
        }
        Ok(StoreLock { _file: file })
    }

    fn clean_tmp(&self) -> anyhow::Result<()> {
        for entry in fs::read_dir(self.root.join("tmp"))? {
            let path = entry?.path();
            tracing::debug!("removing a partial step left by an interrupted run: {}", path.display());
            fs::remove_dir_all(&path).with_context(|| format!("removing {}", path.display()))?;
        }
        Ok(())
    }

    pub fn step_dir(&self, key: &StepKey) -> PathBuf {
        self.root.join("steps").join(&key.0)
    }

    /// Where a step with this key checkpoints; it survives crashes and is removed once the step completes.
    pub fn checkpoint_dir(&self, key: &StepKey) -> PathBuf {
        self.root.join("checkpoints").join(&key.0)
    }

    /// The manifest of a committed step, if the store has one (whether or not its files are all still there: see
    /// [`stored`](Self::stored)).
    pub fn manifest(&self, key: &StepKey) -> Option<Manifest> {
        let text = fs::read_to_string(self.step_dir(key).join("manifest.json")).ok()?;
        serde_json::from_str(&text).ok()
    }

    /// Whether the entry for `key` is there and whole: every file its manifest records exists at its recorded size.
    /// (Contents are what `verify` rehashes; sizes are cheap enough to check on every plan.)
    pub fn stored(&self, key: &StepKey) -> Stored {
        let Some(manifest) = self.manifest(key) else { return Stored::Absent };
        let dir = self.step_dir(key);
        for (name, record) in &manifest.outputs {
            let damage = |file: String, problem| Damage { file, problem };
            if record.files.is_empty() {
                // An older manifest: only the output's total size is known.
                match dir_bytes(&dir.join(name)) {
                    Ok(actual) if actual == record.bytes => continue,
                    Ok(actual) => {
                        let problem = DamageKind::Size { recorded: record.bytes, actual };
                        return Stored::Damaged(manifest.clone(), damage(format!("{name}/"), problem));
                    }
                    Err(_) => {
                        return Stored::Damaged(manifest.clone(), damage(format!("{name}/"), DamageKind::Missing))
                    }
                }
            }
            for (file, digest) in &record.files {
                let recorded = digest.bytes;
                let path = format!("{name}/{file}");
                match fs::metadata(dir.join(&path)) {
                    Ok(m) if m.len() == recorded => {}
                    Ok(m) => {
                        let problem = DamageKind::Size { recorded, actual: m.len() };
                        return Stored::Damaged(manifest.clone(), damage(path, problem));
                    }
                    Err(_) => return Stored::Damaged(manifest.clone(), damage(path, DamageKind::Missing)),
                }
            }
        }
        Stored::Complete(manifest)
    }

    /// The manifest of a complete entry ([`stored`](Self::stored)).
    pub fn complete(&self, key: &StepKey) -> Option<Manifest> {
        match self.stored(key) {
            Stored::Complete(m) => Some(m),
            _ => None,
        }
    }

    pub fn is_complete(&self, key: &StepKey) -> bool {
        matches!(self.stored(key), Stored::Complete(_))
    }

    /// A fresh temporary directory for a step at work.
    pub fn begin(&self, key: &StepKey) -> anyhow::Result<PathBuf> {
        let dir = self.root.join("tmp").join(format!("{}.{}", key.short(), unique_suffix()));
        fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
        if self.use_syncfs {
            let handle = File::open(&dir).with_context(|| format!("opening {}", dir.display()))?;
            self.pending_handles().insert(dir.clone(), handle);
        }
        Ok(dir)
    }

    /// Keeps the error of a failed attempt at the step `key` (best effort: it only informs `plan`).
    pub fn record_failure(&self, key: &StepKey, error: &str) {
        let dir = self.root.join("failures");
        let _ = fs::create_dir_all(&dir)
            .map_err(anyhow::Error::from)
            .and_then(|()| write_atomic(&dir.join(format!("{key}.txt")), error.as_bytes()));
    }

    /// The error of the last failed attempt at `key`, if it has not succeeded since.
    pub fn last_failure(&self, key: &StepKey) -> Option<String> {
        fs::read_to_string(self.root.join("failures").join(format!("{key}.txt"))).ok()
    }

    /// Removes the failure records of every key but `keep` (what `gc` keeps resumable); returns how many.
    pub fn forget_failures_except(&self, keep: &BTreeSet<StepKey>) -> usize {
        let Ok(entries) = fs::read_dir(self.root.join("failures")) else { return 0 };
        let stale = entries.flatten().filter(|e| {
            let name = e.file_name().to_string_lossy().into_owned();
            name.strip_suffix(".txt").is_none_or(|key| !keep.contains(&StepKey(key.to_string())))
        });
        stale.filter(|e| fs::remove_file(e.path()).is_ok()).count()
    }

    /// Forgets a failed attempt at `key` once the step succeeded.
    pub fn clear_failure(&self, key: &StepKey) {
        let _ = fs::remove_file(self.root.join("failures").join(format!("{key}.txt")));
    }

    /// Drops a step directory `begin` handed out whose step failed.
    pub fn discard(&self, tmp: &Path) {
        self.pending_handles().remove(tmp);
        let _ = fs::remove_dir_all(tmp);
    }

    fn pending_handles(&self) -> std::sync::MutexGuard<'_, HashMap<PathBuf, File>> {
        // Nothing panics while the lock is held; a poisoned map is still consistent.
        self.pending.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Makes everything under `tmp` durable before the rename that publishes it. One `syncfs` of the store's file
    /// system is one journal commit, where an fsync per file and per directory was ≈ 9 commits per step and most of
    /// the engine's per-step overhead (BENCHMARKS.md); it is used only where it is trustworthy
    /// ([`syncfs_is_reliable`]). A `syncfs` error fails the commit.
    fn make_durable(&self, tmp: &Path) -> anyhow::Result<()> {
        if !self.use_syncfs {
            return fsync_each(tmp);
        }
        let handle = match self.pending_handles().remove(tmp) {
            Some(h) => h,
            None => File::open(tmp).with_context(|| format!("opening {}", tmp.display()))?,
        };
        // SAFETY: syncfs only reads the descriptor, which `handle` keeps open for the call.
        if unsafe { libc::syncfs(handle.as_raw_fd()) } != 0 {
            let e = std::io::Error::last_os_error();
            return Err(e)
                .with_context(|| format!("syncing the file system of {} (a disk or writeback error)", tmp.display()));
        }
        Ok(())
    }

    /// Where shard `index` of `count` of a sharded step is kept once computed.
    pub fn shard_dir(&self, key: &StepKey, count: usize, index: usize) -> PathBuf {
        self.root.join("shards").join(&key.0).join(count.to_string()).join(index.to_string())
    }

    /// Shards of `count` that are not in the store yet.
    pub fn missing_shards(&self, key: &StepKey, count: usize) -> Vec<usize> {
        (0..count).filter(|&i| !self.shard_dir(key, count, i).is_dir()).collect()
    }

    /// Moves a finished shard into place; a shard another writer committed first wins (they are equal).
    pub fn commit_shard(&self, tmp: &Path, key: &StepKey, count: usize, index: usize) -> anyhow::Result<PathBuf> {
        self.make_durable(tmp)?;
        let dest = self.shard_dir(key, count, index);
        let parent = dest.parent().expect("a shard dir has a parent");
        fs::create_dir_all(parent).with_context(|| format!("creating {}", parent.display()))?;
        if let Err(e) = fs::rename(tmp, &dest) {
            if !dest.is_dir() {
                return Err(e).with_context(|| format!("moving {} into the store", tmp.display()));
            }
            let _ = fs::remove_dir_all(tmp);
        }
        fsync_dir(parent)?;
        Ok(dest)
    }

    /// Drops a step's shards once its assembled output is committed.
    pub fn remove_shards(&self, key: &StepKey) -> anyhow::Result<()> {
        let dir = self.root.join("shards").join(&key.0);
        if dir.exists() {
            fs::remove_dir_all(&dir).with_context(|| format!("removing {}", dir.display()))?;
        }
        Ok(())
    }

    /// Hashes a finished step's outputs, writes its manifest, and moves it into place atomically.
    pub fn commit(
        &self,
        tmp: &Path,
        mut manifest: Manifest,
        declared: &[(String, ArtifactKind)],
    ) -> anyhow::Result<Manifest> {
        for (name, kind) in declared {
            let dir = tmp.join(name);
            if !dir.is_dir() {
                bail!("step `{}` finished without writing its output `{name}`", manifest.step);
            }
            let files = digest_dir(&dir)?;
            let record = OutputRecord {
                kind: *kind,
                hash: hash_digests(&files),
                bytes: files.iter().map(|(_, d)| d.bytes).sum(),
                files: files.into_iter().collect(),
            };
            manifest.outputs.insert(name.clone(), record);
        }
        // Not published yet (tmp/ is private to this writer): a plain write, made durable with the rest just below.
        let manifest_path = tmp.join("manifest.json");
        fs::write(&manifest_path, serde_json::to_string_pretty(&manifest)?)
            .with_context(|| format!("writing {}", manifest_path.display()))?;
        self.make_durable(tmp)?;
        let dest = self.step_dir(&manifest.key);
        if dest.exists() {
            // A forced rerun replaces the old entry; a stale entry without a manifest is replaced too. The old one is
            // moved aside first (one rename), so readers never see a half-deleted directory.
            let old = self.root.join("tmp").join(format!("{}.old.{}", manifest.key.short(), unique_suffix()));
            match fs::rename(&dest, &old) {
                Ok(()) => fs::remove_dir_all(&old).with_context(|| format!("removing {}", old.display()))?,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(e).with_context(|| format!("replacing {}", dest.display())),
            }
        }
        if let Err(e) = fs::rename(tmp, &dest) {
            // Another writer (a concurrent job with the same key) committed between our check and our rename: keep
            // its entry, which is what readers may already use, and drop ours.
            match self.manifest(&manifest.key) {
                Some(theirs) => {
                    tracing::debug!("step `{}` was committed concurrently; keeping that entry", manifest.step);
                    let _ = fs::remove_dir_all(tmp);
                    return Ok(theirs);
                }
                None => return Err(e).with_context(|| format!("moving {} into the store", tmp.display())),
            }
        }
        fsync_dir(&self.root.join("steps"))?;
        let checkpoint = self.checkpoint_dir(&manifest.key);
        if checkpoint.exists() {
            fs::remove_dir_all(&checkpoint).with_context(|| format!("removing {}", checkpoint.display()))?;
        }
        Ok(manifest)
    }

    /// Rehashes a committed step's outputs: one message per output whose bytes are not those committed, naming the
    /// file where the manifest records files.
    pub fn verify(&self, manifest: &Manifest) -> Vec<String> {
        let dir = self.step_dir(&manifest.key);
        let mut problems = Vec::new();
        for (name, record) in &manifest.outputs {
            let files = match digest_dir(&dir.join(name)) {
                Ok(files) => files,
                Err(e) => {
                    problems.push(format!("output `{name}` cannot be read: {e:#}"));
                    continue;
                }
            };
            if hash_digests(&files) == record.hash {
                continue;
            }
            let before = problems.len();
            let now: BTreeMap<&str, &FileDigest> = files.iter().map(|(f, d)| (f.as_str(), d)).collect();
            for (file, digest) in &record.files {
                match now.get(file.as_str()) {
                    None => problems.push(format!("`{name}/{file}` is missing")),
                    Some(d) if d.blake3 != digest.blake3 => problems.push(format!(
                        "`{name}/{file}` was modified (blake3 {}, written as {})",
                        d.blake3, digest.blake3
                    )),
                    Some(_) => {}
                }
            }
            for file in now.keys().filter(|f| !record.files.contains_key(**f)) {
                problems.push(format!("`{name}/{file}` was added after the step wrote its output"));
            }
            if problems.len() == before {
                problems.push(format!(
                    "output `{name}` was modified on disk: recorded {}, now {}",
                    record.hash,
                    hash_digests(&files)
                ));
            }
        }
        problems
    }

    /// Where runs record themselves (see `run::roots`).
    pub fn roots_dir(&self) -> PathBuf {
        self.root.join("roots")
    }

    /// Keys with a checkpoint or shards kept for a step that has not completed (what `gc` may drop).
    pub fn unfinished_keys(&self) -> anyhow::Result<BTreeSet<StepKey>> {
        let mut keys = BTreeSet::new();
        for sub in ["checkpoints", "shards"] {
            let dir = self.root.join(sub);
            let entries = match fs::read_dir(&dir) {
                Ok(e) => e,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
                Err(e) => return Err(e).with_context(|| format!("reading {}", dir.display())),
            };
            for entry in entries {
                keys.insert(StepKey(entry?.file_name().to_string_lossy().into_owned()));
            }
        }
        Ok(keys)
    }

    /// Drops a key's checkpoint and shards (for `gc`): the bytes freed.
    pub fn remove_unfinished(&self, key: &StepKey) -> anyhow::Result<u64> {
        let mut freed = 0;
        for dir in [self.checkpoint_dir(key), self.root.join("shards").join(&key.0)] {
            if dir.exists() {
                freed += dir_bytes(&dir).unwrap_or(0);
                fs::remove_dir_all(&dir).with_context(|| format!("removing {}", dir.display()))?;
            }
        }
        Ok(freed)
    }

    /// Every completed step's key.
    pub fn keys(&self) -> anyhow::Result<BTreeSet<StepKey>> {
        let mut keys = BTreeSet::new();
        for entry in fs::read_dir(self.root.join("steps"))? {
            keys.insert(StepKey(entry?.file_name().to_string_lossy().into_owned()));
        }
        Ok(keys)
    }

    /// Deletes a step entry (for `gc`).
    pub fn remove(&self, key: &StepKey) -> anyhow::Result<u64> {
        let dir = self.step_dir(key);
        let bytes = dir_bytes(&dir).unwrap_or(0);
        fs::remove_dir_all(&dir).with_context(|| format!("removing {}", dir.display()))?;
        Ok(bytes)
    }
}

/// A name part unique to this host, process and call: temp names in a store that many nodes write at once.
fn unique_suffix() -> String {
    let n = TMP_COUNTER.fetch_add(1, Ordering::Relaxed);
    format!("{}.{}.{n}", hostname(), std::process::id())
}

/// This machine's host name (for unique temp names); `host` if it cannot be read.
pub fn hostname() -> String {
    let mut buf = [0u8; 256];
    // SAFETY: the buffer is valid for its length; gethostname NUL-terminates on success (truncation is harmless).
    let ok = unsafe { libc::gethostname(buf.as_mut_ptr().cast(), buf.len()) } == 0;
    let len = buf.iter().position(|&b| b == 0).unwrap_or(0);
    let name: String = String::from_utf8_lossy(&buf[..len])
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() || c == '-' { c } else { '_' })
        .collect();
    if ok && !name.is_empty() {
        name
    } else {
        "host".into()
    }
}

/// Writes a file so that readers see the old content or the new, never a mix: temp file, fsync, rename.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> anyhow::Result<()> {
    let tmp = path.with_extension(format!("tmp.{}", unique_suffix()));
    {
        let mut f = File::create(&tmp).with_context(|| format!("creating {}", tmp.display()))?;
        f.write_all(bytes)?;
        f.sync_all()?;
    }
    fs::rename(&tmp, path).with_context(|| format!("renaming {} to {}", tmp.display(), path.display()))?;
    Ok(())
}

/// [`write_atomic`], unless `path` already holds exactly `bytes` (a cached rerun writes nothing).
pub fn write_atomic_if_changed(path: &Path, bytes: &[u8]) -> anyhow::Result<()> {
    if fs::read(path).is_ok_and(|have| have == bytes) {
        return Ok(());
    }
    write_atomic(path, bytes)
}

fn dir_bytes(dir: &Path) -> anyhow::Result<u64> {
    let mut total = 0;
    for entry in fs::read_dir(dir)? {
        let entry = entry?;
        let meta = entry.metadata()?;
        total += if meta.is_dir() { dir_bytes(&entry.path())? } else { meta.len() };
    }
    Ok(total)
}

/// Whether `syncfs` both flushes `dir`'s file system and reports its writeback errors: Linux ≥ 5.8 (earlier kernels
/// return success even when writeback failed) on a local file system (on FUSE or network mounts it may not reach
/// the server).
fn syncfs_is_reliable(dir: &Path) -> bool {
    kernel_version().is_some_and(|v| v >= (5, 8)) && is_local_fs(dir)
}

/// The running kernel's (major, minor).
fn kernel_version() -> Option<(u32, u32)> {
    // SAFETY: utsname is plain data; uname fills it with NUL-terminated strings.
    let mut uts: libc::utsname = unsafe { std::mem::zeroed() };
    if unsafe { libc::uname(&mut uts) } != 0 {
        return None;
    }
    let release: Vec<u8> = uts.release.iter().take_while(|&&c| c != 0).map(|&c| c as u8).collect();
    let release = String::from_utf8_lossy(&release);
    let mut parts = release.split(|c: char| !c.is_ascii_digit()).filter(|p| !p.is_empty());
    Some((parts.next()?.parse().ok()?, parts.next()?.parse().ok()?))
}

/// ext4, XFS, btrfs or tmpfs (`statfs` magic numbers).
fn is_local_fs(dir: &Path) -> bool {
    const LOCAL: [i64; 4] = [0xEF53, 0x5846_5342, 0x9123_683E, 0x0102_1994];
    let Ok(path) = std::ffi::CString::new(dir.as_os_str().as_encoded_bytes()) else { return false };
    // SAFETY: `path` is NUL-terminated and `st` is plain data statfs fills.
    let mut st: libc::statfs = unsafe { std::mem::zeroed() };
    if unsafe { libc::statfs(path.as_ptr(), &mut st) } != 0 {
        return false;
    }
    LOCAL.contains(&(st.f_type as i64))
}

fn fsync_each(dir: &Path) -> anyhow::Result<()> {
    for entry in fs::read_dir(dir)? {
        let entry = entry?;
        if entry.file_type()?.is_dir() {
            fsync_each(&entry.path())?;
        } else {
            File::open(entry.path())?.sync_all()?;
        }
    }
    fsync_dir(dir)
}

fn fsync_dir(dir: &Path) -> anyhow::Result<()> {
    File::open(dir)?.sync_all().with_context(|| format!("syncing {}", dir.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kernel_version_and_file_system_kind_are_read() {
        let (major, _) = kernel_version().expect("uname on Linux");
        assert!(major >= 3);
        assert!(!is_local_fs(Path::new("/proc")), "procfs is not a place to trust syncfs");
        assert!(!is_local_fs(Path::new("/no/such/dir")));
    }

    /// Both ways of making a step durable leave the files readable and succeed; a commit publishes them.
    #[test]
    fn commits_through_syncfs_or_per_file_fsync() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let key = StepKey("ab".repeat(32));
        let tmp = store.begin(&key).unwrap();
        fs::create_dir_all(tmp.join("out/nested")).unwrap();
        fs::write(tmp.join("out/nested/a.bin"), b"payload").unwrap();
        fsync_each(&tmp).unwrap();
        let manifest = Manifest {
            key: key.clone(),
            step: "s".into(),
            kind: "train".into(),
            outputs: BTreeMap::new(),
            metrics: Default::default(),
            timings: Default::default(),
            seconds: 0.0,
            device: "cpu".into(),
            threads: 1,
        };
        let done = store.commit(&tmp, manifest, &[("out".into(), ArtifactKind::Model)]).unwrap();
        assert!(store.pending_handles().is_empty(), "the handle `begin` opened is released by the commit");
        assert_eq!(fs::read(store.step_dir(&key).join("out/nested/a.bin")).unwrap(), b"payload");
        assert_eq!(store.manifest(&key).unwrap(), done);
        // A failed step's directory is discarded with its handle.
        let tmp = store.begin(&StepKey("cd".repeat(32))).unwrap();
        store.discard(&tmp);
        assert!(!tmp.exists() && store.pending_handles().is_empty());
    }
}
