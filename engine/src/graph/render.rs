//! `anbiq graph`: the DAG as Graphviz DOT or a Mermaid flowchart, edges labelled with the field that carries them.

use std::fmt::Write as _;

use super::Dag;
use crate::workflow::Workflow;

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    Dot,
    Mermaid,
}

pub fn render(wf: &Workflow, dag: &Dag, format: Format) -> String {
    match format {
        Format::Dot => dot(wf, dag),
        Format::Mermaid => mermaid(wf, dag),
    }
}

/// Edge labels: the fields through which `to` reads `from` (`data`, `teacher`), or `after`.
fn edge_label(wf: &Workflow, from: usize, to: usize) -> String {
    let from_id = &wf.steps[from].id;
    let mut labels: Vec<String> = wf.steps[to]
        .step
        .inputs()
        .into_iter()
        .filter(|i| &i.reference.step == from_id)
        .map(|i| match &i.reference.output {
            Some(o) => format!("{} ← {o}", i.role),
            None => i.role,
        })
        .collect();
    if labels.is_empty() {
        labels.push("after".into());
    }
    labels.join(", ")
}

fn dot(wf: &Workflow, dag: &Dag) -> String {
    let mut out = String::new();
    writeln!(out, "digraph {} {{", quote(&wf.name)).unwrap();
    writeln!(out, "  rankdir=LR;\n  node [shape=box, style=rounded, fontname=\"Helvetica\"];").unwrap();
    for &i in dag.order() {
        let s = &wf.steps[i];
        writeln!(out, "  {} [label={}];", quote(&s.id), quote(&format!("{}\n{}", s.id, s.kind))).unwrap();
    }
    for (a, b) in dag.edges() {
        let label = edge_label(wf, a, b);
        writeln!(out, "  {} -> {} [label={}];", quote(&wf.steps[a].id), quote(&wf.steps[b].id), quote(&label)).unwrap();
    }
    out.push_str("}\n");
    out
}

fn quote(s: &str) -> String {
    format!("\"{}\"", s.replace('\\', "\\\\").replace('"', "\\\"").replace('\n', "\\n"))
}

fn mermaid(wf: &Workflow, dag: &Dag) -> String {
    let mut out = String::from("flowchart LR\n");
    // Mermaid ids must avoid `-` and reserved words; number them and show the step id as the label.
    for &i in dag.order() {
        let s = &wf.steps[i];
        writeln!(out, "  s{i}[\"{}<br/><small>{}</small>\"]", s.id, s.kind).unwrap();
    }
    for (a, b) in dag.edges() {
        writeln!(out, "  s{a} -->|\"{}\"| s{b}", edge_label(wf, a, b).replace('"', "'")).unwrap();
    }
    out
}
