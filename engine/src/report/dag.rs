//! The step graph as a picture, laid out in layers (Sugiyama's method): steps in columns by depth (a step stands right
//! of everything it reads); an edge that spans several columns passes through a waypoint in each column between, so
//! it runs between boxes rather than behind them; the order within each column is chosen to cross few edges
//! (barycentre sweeps, keeping the best order seen). Coloured by status. The boxes' positions are returned too, so the
//! page can lay a link over each box.

use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};
use serde::Serialize;

use super::Status;

/// A step's box in the picture, in pixels from its top left corner.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct NodeBox {
    pub id: String,
    pub x: i32,
    pub y: i32,
    pub width: i32,
    pub height: i32,
}

/// The picture and where each step's box is.
pub struct Picture {
    pub svg: String,
    pub width: u32,
    pub height: u32,
    pub boxes: Vec<NodeBox>,
}

/// One step to draw: its id, kind, status and the indices (into the same list) of the steps it reads.
pub struct Node<'a> {
    pub id: &'a str,
    pub kind: &'a str,
    pub status: Status,
    pub inputs: Vec<usize>,
}

const BOX_W: i32 = 150;
const BOX_H: i32 = 46;
const GAP_X: i32 = 40;
const GAP_Y: i32 = 16;
/// The height a waypoint of a long edge takes in its column.
const WAYPOINT_H: i32 = 10;
const MARGIN: i32 = 12;
/// Barycentre sweeps (down and up count one each); the order rarely improves after a few.
const SWEEPS: usize = 12;

/// Column of each node: 0 for a node with no inputs, else one more than its deepest input. `nodes` is in
/// topological order (inputs first).
pub fn depths(nodes: &[Node]) -> Vec<usize> {
    let mut depth = vec![0; nodes.len()];
    for (i, node) in nodes.iter().enumerate() {
        depth[i] = node.inputs.iter().map(|&j| depth[j] + 1).max().unwrap_or(0);
    }
    depth
}

/// The layered graph: items are the steps (`0..steps`) and then the waypoints of long edges; every segment joins an
/// item to one in the next column.
struct Layers {
    steps: usize,
    /// Each item's column.
    column: Vec<usize>,
    /// Segments (left item, right item).
    segments: Vec<(usize, usize)>,
    /// For each edge of the workflow (reader, input): the items it passes through from input to reader.
    paths: Vec<Vec<usize>>,
    /// The items of each column, top to bottom.
    order: Vec<Vec<usize>>,
}

impl Layers {
    fn new(nodes: &[Node]) -> Self {
        let column = depths(nodes);
        let mut layers = Layers { steps: nodes.len(), column, segments: Vec::new(), paths: Vec::new(), order: vec![] };
        for (reader, node) in nodes.iter().enumerate() {
            for &input in &node.inputs {
                let mut path = vec![input];
                for c in layers.column[input] + 1..layers.column[reader] {
                    layers.column.push(c);
                    path.push(layers.column.len() - 1);
                }
                path.push(reader);
                layers.segments.extend(path.windows(2).map(|w| (w[0], w[1])));
                layers.paths.push(path);
            }
        }
        let columns = layers.column.iter().max().map_or(0, |c| c + 1);
        layers.order = vec![Vec::new(); columns];
        // Start from workflow order (waypoints after the steps, in edge order); sweeps only reorder when it helps.
        for (item, &c) in layers.column.iter().enumerate() {
            layers.order[c].push(item);
        }
        layers
    }

    /// Each item's index within its column.
    fn positions(&self) -> Vec<usize> {
        let mut at = vec![0; self.column.len()];
        for column in &self.order {
            for (i, &item) in column.iter().enumerate() {
                at[item] = i;
            }
        }
        at
    }

    /// Pairs of segments that cross: between the same two columns, in opposite orders at their two ends.
    fn crossings(&self) -> usize {
        let at = self.positions();
        let mut count = 0;
        for (i, &(a, b)) in self.segments.iter().enumerate() {
            for &(c, d) in &self.segments[i + 1..] {
                let same_columns = self.column[a] == self.column[c];
                if same_columns && (at[a] as i64 - at[c] as i64) * (at[b] as i64 - at[d] as i64) < 0 {
                    count += 1;
                }
            }
        }
        count
    }

    /// Reorders each column by the mean position of its items' neighbours in the column before it (`down`) or after
    /// it; an item without such neighbours keeps its place. Stable, so ties keep their order.
    fn sweep(&mut self, down: bool) {
        let columns: Vec<usize> = match down {
            true => (1..self.order.len()).collect(),
            false => (0..self.order.len().saturating_sub(1)).rev().collect(),
        };
        for c in columns {
            let at = self.positions();
            let neighbours = |item: usize| -> Vec<usize> {
                let other = |&(l, r): &(usize, usize)| match down {
                    true => (r == item).then_some(l),
                    false => (l == item).then_some(r),
                };
                self.segments.iter().filter_map(other).collect()
            };
            let mut keyed: Vec<(f64, usize)> = self.order[c]
                .iter()
                .enumerate()
                .map(|(i, &item)| {
                    let n = neighbours(item);
                    let key = match n.is_empty() {
                        true => i as f64,
                        false => n.iter().map(|&m| at[m] as f64).sum::<f64>() / n.len() as f64,
                    };
                    (key, item)
                })
                .collect();
            keyed.sort_by(|a, b| a.0.total_cmp(&b.0));
            self.order[c] = keyed.into_iter().map(|(_, item)| item).collect();
        }
    }

    /// Alternating sweeps, keeping the order with the fewest crossings (the first one found on a tie).
    fn untangle(&mut self) {
        let mut best = (self.crossings(), self.order.clone());
        for i in 0..SWEEPS {
            if best.0 == 0 {
                break;
            }
            self.sweep(i % 2 == 0);
            let crossings = self.crossings();
            if crossings < best.0 {
                best = (crossings, self.order.clone());
            }
        }
        self.order = best.1;
    }
}

/// Where every item goes: a step's box, or a waypoint's centre line (its `y`, `height` 0).
struct Placed {
    layers: Layers,
    /// Per item: its rectangle (steps) or its column's span at the waypoint's height (waypoints).
    rects: Vec<NodeBox>,
}

fn place(nodes: &[Node]) -> Placed {
    let mut layers = Layers::new(nodes);
    layers.untangle();
    let mut rects = vec![NodeBox { id: String::new(), x: 0, y: 0, width: 0, height: 0 }; layers.column.len()];
    for (c, column) in layers.order.iter().enumerate() {
        let x = MARGIN + c as i32 * (BOX_W + GAP_X);
        let mut y = MARGIN;
        for &item in column {
            rects[item] = match item < layers.steps {
                true => NodeBox { id: nodes[item].id.to_string(), x, y, width: BOX_W, height: BOX_H },
                false => NodeBox { id: String::new(), x, y: y + WAYPOINT_H / 2, width: BOX_W, height: 0 },
            };
            y += if item < layers.steps { BOX_H } else { WAYPOINT_H } + GAP_Y;
        }
    }
    Placed { layers, rects }
}

/// The polyline of each edge: from its input's right side, level through every waypoint's column, to the reader's
/// left side (stopping short of it for the arrow head).
fn edge_lines(placed: &Placed) -> Vec<Vec<(i32, i32)>> {
    let r = &placed.rects;
    placed
        .layers
        .paths
        .iter()
        .map(|path| {
            let (first, last) = (&r[path[0]], &r[path[path.len() - 1]]);
            let mut line = vec![(first.x + first.width, first.y + first.height / 2)];
            for &w in &path[1..path.len() - 1] {
                line.extend([(r[w].x, r[w].y), (r[w].x + r[w].width, r[w].y)]);
            }
            line.push((last.x - 4, last.y + last.height / 2));
            line
        })
        .collect()
}

fn colours(status: Status) -> (RGBColor, RGBColor) {
    match status {
        Status::Ran => (RGBColor(220, 252, 231), RGBColor(22, 163, 74)),
        Status::Cached => (RGBColor(219, 234, 254), RGBColor(37, 99, 235)),
        Status::Failed => (RGBColor(254, 226, 226), RGBColor(220, 38, 38)),
        Status::Skipped | Status::NotRun => (RGBColor(241, 245, 249), RGBColor(148, 163, 184)),
    }
}

fn failed(e: impl std::fmt::Display) -> anyhow::Error {
    anyhow::anyhow!("drawing the step graph: {e}")
}

pub fn draw(nodes: &[Node]) -> anyhow::Result<Picture> {
    let placed = place(nodes);
    let lines = edge_lines(&placed);
    let boxes: Vec<NodeBox> = placed.rects.into_iter().take(nodes.len()).collect();
    let width = boxes.iter().map(|b| b.x + b.width).max().unwrap_or(0) + MARGIN;
    let height = boxes.iter().map(|b| b.y + b.height).max().unwrap_or(0) + MARGIN;
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, (width as u32, height as u32)).into_drawing_area();
        root.fill(&WHITE).map_err(failed)?;
        let edge = ShapeStyle { color: RGBColor(100, 116, 139).to_rgba(), filled: false, stroke_width: 1 };
        for line in lines {
            let end = line[line.len() - 1];
            root.draw(&PathElement::new(line, edge)).map_err(failed)?;
            let head = vec![end, (end.0 - 7, end.1 - 4), (end.0 - 7, end.1 + 4)];
            root.draw(&Polygon::new(head, RGBColor(100, 116, 139).filled())).map_err(failed)?;
        }
        for (node, b) in nodes.iter().zip(&boxes) {
            let (fill, stroke) = colours(node.status);
            let corners = [(b.x, b.y), (b.x + b.width, b.y + b.height)];
            root.draw(&Rectangle::new(corners, fill.filled())).map_err(failed)?;
            root.draw(&Rectangle::new(corners, ShapeStyle { color: stroke.to_rgba(), filled: false, stroke_width: 2 }))
                .map_err(failed)?;
            let centre = b.x + b.width / 2;
            let title =
                ("sans-serif", 14).into_font().color(&RGBColor(15, 23, 42)).pos(Pos::new(HPos::Center, VPos::Top));
            root.draw(&Text::new(node.id.to_string(), (centre, b.y + 7), title)).map_err(failed)?;
            let sub = ("sans-serif", 12).into_font().color(&stroke).pos(Pos::new(HPos::Center, VPos::Top));
            let line = format!("{} · {}", node.kind, node.status.word());
            root.draw(&Text::new(line, (centre, b.y + 26), sub)).map_err(failed)?;
        }
        root.present().map_err(failed)?;
    }
    Ok(Picture { svg, width: width as u32, height: height as u32, boxes })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node(id: &'static str, inputs: Vec<usize>) -> Node<'static> {
        Node { id, kind: "train", status: Status::Cached, inputs }
    }

    #[test]
    fn a_step_stands_right_of_everything_it_reads() {
        // data → teacher → logits → student → report, with data → report and data → baseline → report.
        let nodes = vec![
            node("data", vec![]),
            node("teacher", vec![0]),
            node("logits", vec![1, 0]),
            node("student", vec![2]),
            node("baseline", vec![0]),
            node("report", vec![0, 1, 3, 4]),
        ];
        assert_eq!(depths(&nodes), [0, 1, 2, 3, 1, 4]);
        let boxes = place(&nodes).rects;
        assert_eq!(boxes[1].x, boxes[4].x, "teacher and baseline share a column");
        assert!(boxes[4].y > boxes[1].y, "and stack in workflow order");
        let picture = draw(&nodes).unwrap();
        assert!(picture.svg.contains("baseline") && picture.svg.contains("train · cached"));
        assert_eq!(picture.width as i32, boxes[5].x + BOX_W + MARGIN);
    }

    /// Workflow order would cross the two pairs of edges (a → d, b → c with c listed first); the layout does not.
    #[test]
    fn the_order_in_a_column_avoids_crossings_the_workflow_order_has() {
        let nodes = vec![
            node("a", vec![]),
            node("b", vec![]),
            node("c", vec![1]),
            node("d", vec![0]),
            node("e", vec![3]),
            node("f", vec![2]),
        ];
        let mut layers = Layers::new(&nodes);
        assert_eq!(layers.crossings(), 2, "as listed: c above d and f above e, each pair crossing");
        layers.untangle();
        assert_eq!(layers.crossings(), 0);
        let boxes = place(&nodes).rects;
        let above = |i: usize, j: usize| boxes[i].y < boxes[j].y;
        assert_eq!((above(0, 1), above(3, 2), above(4, 5)), (true, true, true), "a over b, so d over c, e over f");
    }

    /// An edge spanning columns runs level through a waypoint in each column between, clear of that column's boxes.
    #[test]
    fn a_long_edge_runs_between_the_boxes_of_the_columns_it_crosses() {
        // data → t1 → t2 → t3 → report, data → report, and two more steps in each middle column.
        let nodes = vec![
            node("data", vec![]),
            node("t1", vec![0]),
            node("u1", vec![0]),
            node("t2", vec![1]),
            node("u2", vec![2]),
            node("t3", vec![3]),
            node("report", vec![5, 0, 4]),
        ];
        let placed = place(&nodes);
        let lines = edge_lines(&placed);
        let boxes = &placed.rects[..nodes.len()];
        let long = placed.layers.paths.iter().position(|p| p.first() == Some(&0) && p.last() == Some(&6)).unwrap();
        let long = &lines[long];
        assert_eq!(long.len(), 2 + 2 * 3, "a waypoint in each of columns 1, 2 and 3");
        for pair in long[1..long.len() - 1].chunks(2) {
            assert_eq!(pair[0].1, pair[1].1, "level across a column");
            for b in boxes.iter().filter(|b| b.x == pair[0].0) {
                assert!(pair[0].1 < b.y || pair[0].1 > b.y + b.height, "{} is crossed at y = {}", b.id, pair[0].1);
            }
        }
        assert_eq!(placed.layers.crossings(), 0);
    }
}
