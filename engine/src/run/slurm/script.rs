//! What is handed to `sbatch`: the batch script of one job, its dependency string, its array spec. Pure functions,
//! unit-tested below.

use std::fmt::Write as _;
use std::path::PathBuf;

use crate::workflow::Resources;

/// One job to submit.
#[derive(Clone, Debug, PartialEq)]
pub struct JobSpec {
    /// `--job-name`.
    pub name: String,
    /// A comment line at the top of the script (what the job is).
    pub comment: String,
    /// `--output` (stdout and stderr): may contain `%j`, `%A`, `%a`.
    pub log: PathBuf,
    /// `--chdir`: where the submitter ran, so that relative paths mean the same.
    pub workdir: PathBuf,
    pub resources: Resources,
    pub partition: Option<String>,
    pub account: Option<String>,
    /// Job ids this job needs to have completed successfully.
    pub after: Vec<String>,
    /// `--array` indices, for a job array.
    pub array: Option<Vec<usize>>,
    /// `--ntasks`, for a data-parallel step: the command runs under `srun`, once per rank.
    pub tasks: Option<usize>,
    /// The command, unquoted; an array task gets `--shard $SLURM_ARRAY_TASK_ID` appended.
    pub command: Vec<String>,
}

/// `afterok:1:2:3`, or `None` without dependencies.
pub fn dependency(after: &[String]) -> Option<String> {
    if after.is_empty() {
        None
    } else {
        Some(format!("afterok:{}", after.join(":")))
    }
}

/// Indices as Slurm's `--array` syntax, runs of consecutive indices collapsed: `[0,1,2,5,7,8]` → `0-2,5,7-8`.
pub fn array_spec(indices: &[usize]) -> String {
    let mut sorted = indices.to_vec();
    sorted.sort_unstable();
    sorted.dedup();
    let mut parts = Vec::new();
    let mut i = 0;
    while i < sorted.len() {
        let start = sorted[i];
        let mut end = start;
        while i + 1 < sorted.len() && sorted[i + 1] == end + 1 {
            i += 1;
            end = sorted[i];
        }
        parts.push(if start == end { start.to_string() } else { format!("{start}-{end}") });
        i += 1;
    }
    parts.join(",")
}

/// The `sbatch` options a step's resources map to; `tasks` for a data-parallel step, whose `cpus` and `gpus` are
/// each rank's (`--gpus-per-task`) and whose ranks spread over `nodes`.
pub fn resource_options(r: &Resources, tasks: Option<usize>) -> Vec<String> {
    let mut options = Vec::new();
    if let Some(cpus) = r.cpus {
        options.push(format!("--cpus-per-task={cpus}"));
    }
    match (r.gpus.filter(|&g| g > 0), tasks) {
        (Some(gpus), Some(_)) => options.push(format!("--gpus-per-task={gpus}")),
        (Some(gpus), None) => options.push(format!("--gres=gpu:{gpus}")),
        (None, _) => {}
    }
    if let Some(nodes) = r.nodes.filter(|_| tasks.is_some()) {
        options.push(format!("--nodes={nodes}"));
    }
    if let Some(mem) = &r.mem {
        options.push(format!("--mem={mem}"));
    }
    if let Some(time) = &r.time {
        options.push(format!("--time={time}"));
    }
    options
}

/// Quotes a word for a POSIX shell (single quotes unless it is plainly safe).
pub fn shell_quote(word: &str) -> String {
    let safe = !word.is_empty() && word.bytes().all(|b| b.is_ascii_alphanumeric() || b"-_./=:,+@%".contains(&b));
    if safe {
        word.to_string()
    } else {
        format!("'{}'", word.replace('\'', r"'\''"))
    }
}

/// An `#SBATCH` option's value: quoted (sbatch reads double quotes) only if it contains whitespace.
fn directive_value(value: &str) -> String {
    if value.chars().any(char::is_whitespace) {
        format!("\"{value}\"")
    } else {
        value.to_string()
    }
}

/// The batch script: every option as an `#SBATCH` line (so the script alone says how it was submitted), then the
/// command. Options given on `sbatch`'s command line (`--sbatch-arg`) override these.
pub fn batch_script(job: &JobSpec) -> String {
    let mut options = vec![
        format!("--job-name={}", directive_value(&job.name)),
        format!("--output={}", directive_value(&job.log.to_string_lossy())),
        format!("--chdir={}", directive_value(&job.workdir.to_string_lossy())),
    ];
    if let Some(p) = &job.partition {
        options.push(format!("--partition={}", directive_value(p)));
    }
    if let Some(a) = &job.account {
        options.push(format!("--account={}", directive_value(a)));
    }
    options.extend(resource_options(&job.resources, job.tasks));
    if let Some(array) = &job.array {
        options.push(format!("--array={}", array_spec(array)));
    }
    if let Some(tasks) = job.tasks {
        options.push(format!("--ntasks={tasks}"));
    }
    if let Some(dep) = dependency(&job.after) {
        options.push(format!("--dependency={dep}"));
        // A dependency that can never be satisfied (a failed upstream) cancels this job instead of leaving it
        // pending forever.
        options.push("--kill-on-invalid-dep=yes".to_string());
    }
    let mut script = String::from("#!/bin/bash\n");
    for line in job.comment.lines() {
        let _ = writeln!(script, "# {line}");
    }
    for option in options {
        let _ = writeln!(script, "#SBATCH {option}");
    }
    script.push_str("set -eu\n");
    let mut command: Vec<String> = job.command.iter().map(|w| shell_quote(w)).collect();
    if job.array.is_some() {
        command.push("--shard".into());
        command.push("\"$SLURM_ARRAY_TASK_ID\"".into());
    }
    if job.tasks.is_some() {
        // The ranks meet at a TCP store on the job's first node, on a port of the job's own.
        script
            .push_str("export ANBIQ_MASTER_ADDR=\"$(scontrol show hostnames \"$SLURM_JOB_NODELIST\" | head -n 1)\"\n");
        script.push_str("export ANBIQ_MASTER_PORT=$((20000 + SLURM_JOB_ID % 20000))\n");
        // One failed rank ends the job at once instead of leaving the others to time out.
        let _ = writeln!(script, "exec srun --kill-on-bad-exit=1 {}", command.join(" "));
    } else {
        let _ = writeln!(script, "exec {}", command.join(" "));
    }
    script
}

#[cfg(test)]
mod tests {
    use super::*;

    fn job() -> JobSpec {
        JobSpec {
            name: "anbiq:quickstart:teacher".into(),
            comment: "anbiq: step `teacher` of quickstart".into(),
            log: "/shared/store/slurm/quickstart/logs/teacher-%j.log".into(),
            workdir: "/home/me/project".into(),
            resources: Resources::default(),
            partition: None,
            account: None,
            after: vec![],
            array: None,
            tasks: None,
            command: vec![
                "/opt/anbiq/bin/anbiq".into(),
                "run-step".into(),
                "/home/me/project/wf.yaml".into(),
                "--step".into(),
                "teacher".into(),
            ],
        }
    }

    #[test]
    fn dependency_strings() {
        assert_eq!(dependency(&[]), None);
        assert_eq!(dependency(&["12".into()]).as_deref(), Some("afterok:12"));
        assert_eq!(dependency(&["12".into(), "15".into(), "16".into()]).as_deref(), Some("afterok:12:15:16"));
    }

    #[test]
    fn array_specs_collapse_runs() {
        assert_eq!(array_spec(&[0, 1, 2, 3]), "0-3");
        assert_eq!(array_spec(&[0]), "0");
        assert_eq!(array_spec(&[5, 0, 1, 2, 7, 8]), "0-2,5,7-8");
        assert_eq!(array_spec(&[1, 3]), "1,3");
    }

    #[test]
    fn a_plain_step_script() {
        assert_eq!(
            batch_script(&job()),
            "#!/bin/bash\n\
             # anbiq: step `teacher` of quickstart\n\
             #SBATCH --job-name=anbiq:quickstart:teacher\n\
             #SBATCH --output=/shared/store/slurm/quickstart/logs/teacher-%j.log\n\
             #SBATCH --chdir=/home/me/project\n\
             set -eu\n\
             exec /opt/anbiq/bin/anbiq run-step /home/me/project/wf.yaml --step teacher\n"
        );
    }

    #[test]
    fn resources_partition_account_and_dependencies_become_directives() {
        let mut j = job();
        j.resources = Resources {
            cpus: Some(4),
            gpus: Some(1),
            mem: Some("16G".into()),
            time: Some("02:00:00".into()),
            nodes: None,
        };
        j.partition = Some("gpu".into());
        j.account = Some("kd-lab".into());
        j.after = vec!["41".into(), "42".into()];
        let script = batch_script(&j);
        let directives: Vec<&str> = script.lines().filter(|l| l.starts_with("#SBATCH")).collect();
        assert_eq!(
            directives,
            [
                "#SBATCH --job-name=anbiq:quickstart:teacher",
                "#SBATCH --output=/shared/store/slurm/quickstart/logs/teacher-%j.log",
                "#SBATCH --chdir=/home/me/project",
                "#SBATCH --partition=gpu",
                "#SBATCH --account=kd-lab",
                "#SBATCH --cpus-per-task=4",
                "#SBATCH --gres=gpu:1",
                "#SBATCH --mem=16G",
                "#SBATCH --time=02:00:00",
                "#SBATCH --dependency=afterok:41:42",
                "#SBATCH --kill-on-invalid-dep=yes",
            ]
        );
    }

    #[test]
    fn an_array_passes_its_task_id_as_the_shard() {
        let mut j = job();
        j.array = Some(vec![0, 1, 2, 3]);
        j.log = "/s/logs/logits-%A_%a.log".into();
        let script = batch_script(&j);
        assert!(script.contains("#SBATCH --array=0-3\n"), "{script}");
        assert!(script.ends_with("--step teacher --shard \"$SLURM_ARRAY_TASK_ID\"\n"), "{script}");
    }

    #[test]
    fn odd_words_are_quoted() {
        let mut j = job();
        j.command.push("--set".into());
        j.command.push("name=it's a [list]".into());
        j.workdir = "/home/me/my project".into();
        let script = batch_script(&j);
        assert!(script.contains("#SBATCH --chdir=\"/home/me/my project\"\n"), "{script}");
        assert!(script.contains(r"--set 'name=it'\''s a [list]'"), "{script}");
        assert_eq!(shell_quote(""), "''");
        assert_eq!(shell_quote("$HOME"), "'$HOME'");
    }

    #[test]
    fn a_data_parallel_step_runs_its_ranks_under_srun() {
        let script = batch_script(&JobSpec { tasks: Some(2), ..job() });
        assert!(script.contains("#SBATCH --ntasks=2\n"), "{script}");
        assert!(script
            .contains("export ANBIQ_MASTER_ADDR=\"$(scontrol show hostnames \"$SLURM_JOB_NODELIST\" | head -n 1)\"\n"));
        assert!(script.contains("export ANBIQ_MASTER_PORT=$((20000 + SLURM_JOB_ID % 20000))\n"));
        assert!(script.ends_with("exec srun --kill-on-bad-exit=1 /opt/anbiq/bin/anbiq run-step /home/me/project/wf.yaml --step teacher\n"), "{script}");
    }

    #[test]
    fn zero_gpus_asks_for_none() {
        let r = Resources { gpus: Some(0), ..Default::default() };
        assert!(resource_options(&r, None).is_empty());
    }

    #[test]
    fn a_data_parallel_step_asks_for_gpus_per_rank_and_its_nodes() {
        let resources = Resources { cpus: Some(8), gpus: Some(1), nodes: Some(2), ..Default::default() };
        let script = batch_script(&JobSpec { tasks: Some(4), resources: resources.clone(), ..job() });
        for line in ["--cpus-per-task=8", "--gpus-per-task=1", "--nodes=2", "--ntasks=4"] {
            assert!(script.contains(&format!("#SBATCH {line}\n")), "{line}: {script}");
        }
        assert!(!script.contains("--gres"), "{script}");
        // One task: GPUs per node, and no `--nodes`.
        assert_eq!(resource_options(&resources, None), ["--cpus-per-task=8", "--gres=gpu:1"]);
    }
}
