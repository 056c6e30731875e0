//! Edges, order and cycles.

use std::collections::BTreeSet;

use petgraph::algo::{tarjan_scc, toposort};
use petgraph::graph::{DiGraph, NodeIndex};
use petgraph::visit::{Dfs, EdgeRef, Reversed};
use petgraph::Direction;

use crate::config::Diagnostics;
use crate::workflow::Workflow;

/// Steps are nodes (indices into `Workflow::steps`); an edge `a → b` means b needs a.
#[derive(Debug)]
pub struct Dag {
    graph: DiGraph<usize, ()>,
    order: Vec<usize>,
}

impl Dag {
    /// Builds the graph; a cycle is an error naming its steps in order.
    pub fn build(wf: &Workflow) -> Result<Dag, Diagnostics> {
        let mut graph = DiGraph::new();
        let nodes: Vec<NodeIndex> = (0..wf.steps.len()).map(|i| graph.add_node(i)).collect();
        for (i, decl) in wf.steps.iter().enumerate() {
            let mut deps = BTreeSet::new();
            for input in decl.step.inputs() {
                if let Some(j) = wf.step_index(&input.reference.step) {
                    deps.insert(j);
                }
            }
            for (after, _) in &decl.after {
                if let Some(j) = wf.step_index(after) {
                    deps.insert(j);
                }
            }
            for j in deps {
                graph.add_edge(nodes[j], nodes[i], ());
            }
        }
        match toposort(&graph, None) {
            Ok(order) => Ok(Dag { order: stable_order(&graph, order.len()), graph }),
            Err(_) => Err(Diagnostics(cycle_errors(wf, &graph))),
        }
    }

    /// A topological order that keeps file order wherever the edges allow (Kahn's algorithm, smallest index first),
    /// so plans and lockfiles read like the file.
    pub fn order(&self) -> &[usize] {
        &self.order
    }

    /// Direct dependencies of step `i`, in file order.
    pub fn dependencies(&self, i: usize) -> Vec<usize> {
        let mut deps: Vec<usize> =
            self.graph.edges_directed(NodeIndex::new(i), Direction::Incoming).map(|e| e.source().index()).collect();
        deps.sort_unstable();
        deps
    }

    /// Direct dependants of step `i`, in file order.
    pub fn dependants(&self, i: usize) -> Vec<usize> {
        let mut deps: Vec<usize> =
            self.graph.edges_directed(NodeIndex::new(i), Direction::Outgoing).map(|e| e.target().index()).collect();
        deps.sort_unstable();
        deps
    }

    /// Step `i` and everything it needs, transitively.
    pub fn ancestors_and_self(&self, i: usize) -> BTreeSet<usize> {
        let reversed = Reversed(&self.graph);
        let mut dfs = Dfs::new(reversed, NodeIndex::new(i));
        let mut out = BTreeSet::new();
        while let Some(n) = dfs.next(reversed) {
            out.insert(n.index());
        }
        out
    }

    pub fn edges(&self) -> Vec<(usize, usize)> {
        let mut edges: Vec<(usize, usize)> =
            self.graph.edge_references().map(|e| (e.source().index(), e.target().index())).collect();
        edges.sort_unstable();
        edges
    }
}

fn stable_order(graph: &DiGraph<usize, ()>, n: usize) -> Vec<usize> {
    let mut indegree: Vec<usize> =
        (0..n).map(|i| graph.edges_directed(NodeIndex::new(i), Direction::Incoming).count()).collect();
    let mut ready: BTreeSet<usize> = (0..n).filter(|&i| indegree[i] == 0).collect();
    let mut order = Vec::with_capacity(n);
    while let Some(i) = ready.pop_first() {
        order.push(i);
        for e in graph.edges_directed(NodeIndex::new(i), Direction::Outgoing) {
            let t = e.target().index();
            indegree[t] -= 1;
            if indegree[t] == 0 {
                ready.insert(t);
            }
        }
    }
    order
}

/// One error per cycle, at its first step in file order: "cycle: a → b → c → a".
fn cycle_errors(wf: &Workflow, graph: &DiGraph<usize, ()>) -> Vec<crate::config::Diagnostic> {
    let mut errors = Vec::new();
    for scc in tarjan_scc(graph) {
        let self_loop = scc.len() == 1 && graph.contains_edge(scc[0], scc[0]);
        if scc.len() < 2 && !self_loop {
            continue;
        }
        let members: BTreeSet<usize> = scc.iter().map(|n| n.index()).collect();
        let start = *members.first().expect("non-empty component");
        let path = cycle_path(graph, start, &members);
        let names: Vec<&str> = path.iter().chain(std::iter::once(&start)).map(|&i| wf.steps[i].id.as_str()).collect();
        errors.push(wf.diagnostic(wf.steps[start].span, format!("cycle: {}", names.join(" → "))));
    }
    errors.sort_by_key(|d| d.span);
    errors
}

/// A walk from `start` back to itself inside one strongly connected component (following the lowest-index edge
/// that still leads home), so the message lists the steps in dependency order.
fn cycle_path(graph: &DiGraph<usize, ()>, start: usize, members: &BTreeSet<usize>) -> Vec<usize> {
    // Breadth-first search for the shortest way back to `start`.
    let mut previous = vec![usize::MAX; graph.node_count()];
    let mut queue = std::collections::VecDeque::from([start]);
    while let Some(n) = queue.pop_front() {
        let mut next: Vec<usize> = graph
            .edges_directed(NodeIndex::new(n), Direction::Outgoing)
            .map(|e| e.target().index())
            .filter(|t| members.contains(t))
            .collect();
        next.sort_unstable();
        for t in next {
            if t == start {
                let mut path = vec![n];
                let mut cur = n;
                while cur != start {
                    cur = previous[cur];
                    path.push(cur);
                }
                path.reverse();
                return path;
            }
            if previous[t] == usize::MAX {
                previous[t] = n;
                queue.push_back(t);
            }
        }
    }
    vec![start]
}
