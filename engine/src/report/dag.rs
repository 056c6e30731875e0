//! The step graph as a picture: steps in columns by depth (a step stands right of everything it reads), coloured by
//! status, edges from each input to its reader. The boxes' positions are returned too, so the page can lay a link
//! over each box.

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
const MARGIN: i32 = 12;

/// Column of each node: 0 for a node with no inputs, else one more than its deepest input. `nodes` is in
/// topological order (inputs first).
pub fn depths(nodes: &[Node]) -> Vec<usize> {
    let mut depth = vec![0; nodes.len()];
    for (i, node) in nodes.iter().enumerate() {
        depth[i] = node.inputs.iter().map(|&j| depth[j] + 1).max().unwrap_or(0);
    }
    depth
}

/// Where each node's box goes.
pub fn layout(nodes: &[Node]) -> Vec<NodeBox> {
    let depth = depths(nodes);
    let mut rows = vec![0; depth.iter().max().map_or(0, |d| d + 1)];
    nodes
        .iter()
        .zip(&depth)
        .map(|(node, &d)| {
            let row = rows[d];
            rows[d] += 1;
            NodeBox {
                id: node.id.to_string(),
                x: MARGIN + d as i32 * (BOX_W + GAP_X),
                y: MARGIN + row * (BOX_H + GAP_Y),
                width: BOX_W,
                height: BOX_H,
            }
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
    let boxes = layout(nodes);
    let width = boxes.iter().map(|b| b.x + b.width).max().unwrap_or(0) + MARGIN;
    let height = boxes.iter().map(|b| b.y + b.height).max().unwrap_or(0) + MARGIN;
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, (width as u32, height as u32)).into_drawing_area();
        root.fill(&WHITE).map_err(failed)?;
        let edge = ShapeStyle { color: RGBColor(100, 116, 139).to_rgba(), filled: false, stroke_width: 1 };
        for (node, to) in nodes.iter().zip(&boxes) {
            for &j in &node.inputs {
                let from = &boxes[j];
                let start = (from.x + from.width, from.y + from.height / 2);
                let end = (to.x - 4, to.y + to.height / 2);
                root.draw(&PathElement::new(vec![start, end], edge)).map_err(failed)?;
                let head = vec![end, (end.0 - 7, end.1 - 4), (end.0 - 7, end.1 + 4)];
                root.draw(&Polygon::new(head, RGBColor(100, 116, 139).filled())).map_err(failed)?;
            }
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
        let boxes = layout(&nodes);
        assert_eq!(boxes[1].x, boxes[4].x, "teacher and baseline share a column");
        assert!(boxes[4].y > boxes[1].y, "and stack in workflow order");
        let picture = draw(&nodes).unwrap();
        assert!(picture.svg.contains("baseline") && picture.svg.contains("train · cached"));
        assert_eq!(picture.width as i32, boxes[5].x + BOX_W + MARGIN);
    }
}
