//! The report's charts, drawn by plotters into SVG text: lines over epochs or a swept parameter, bars per model.
//!
//! Colours say what a model is in the comparison: the teacher dark, a label-only baseline grey, students in colour.

use plotters::coord::ranged1d::SegmentValue;
use plotters::prelude::*;
use serde::Serialize;

/// What a model is in a comparison.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    Teacher,
    Baseline,
    Student,
}

/// One line: `(x, y)` points in x order.
#[derive(Clone, Debug, PartialEq)]
pub struct Series {
    pub name: String,
    pub role: Role,
    pub points: Vec<(f64, f64)>,
}

/// One bar.
#[derive(Clone, Debug, PartialEq)]
pub struct Bar {
    pub label: String,
    pub role: Role,
    pub value: f64,
}

const WIDTH: u32 = 560;
const HEIGHT: u32 = 300;
const FONT: &str = "sans-serif";

const TEACHER: RGBColor = RGBColor(30, 41, 59);
const BASELINE: RGBColor = RGBColor(148, 163, 184);
const STUDENTS: [RGBColor; 6] = [
    RGBColor(37, 99, 235),
    RGBColor(220, 38, 38),
    RGBColor(22, 163, 74),
    RGBColor(217, 119, 6),
    RGBColor(147, 51, 234),
    RGBColor(8, 145, 178),
];

/// Colours in order of appearance: students take the palette in turn.
fn colours(roles: impl Iterator<Item = Role>) -> Vec<RGBColor> {
    let mut next = 0;
    roles
        .map(|role| match role {
            Role::Teacher => TEACHER,
            Role::Baseline => BASELINE,
            Role::Student => {
                next += 1;
                STUDENTS[(next - 1) % STUDENTS.len()]
            }
        })
        .collect()
}

/// The range a chart shows for `values`: a little wider than they are, never empty; from 0 when `from_zero`.
pub fn axis_range(values: impl Iterator<Item = f64>, from_zero: bool) -> (f64, f64) {
    let (mut lo, mut hi) =
        values.filter(|v| v.is_finite()).fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), v| (lo.min(v), hi.max(v)));
    if !lo.is_finite() {
        return (0.0, 1.0);
    }
    if from_zero {
        lo = lo.min(0.0);
        hi = hi.max(0.0);
    }
    if hi - lo < 1e-12 {
        let pad = if hi.abs() > 0.0 { hi.abs() * 0.1 } else { 1.0 };
        return (lo - pad, hi + pad);
    }
    let pad = (hi - lo) * 0.06;
    (if from_zero && lo >= 0.0 { lo } else { lo - pad }, hi + pad)
}

fn failed(e: impl std::fmt::Display) -> anyhow::Error {
    anyhow::anyhow!("drawing a chart: {e}")
}

/// Lines of `series` against `x_label` and `y_label`.
pub fn lines(x_label: &str, y_label: &str, series: &[Series]) -> anyhow::Result<String> {
    let (x0, x1) = axis_range(series.iter().flat_map(|s| s.points.iter().map(|p| p.0)), false);
    let (y0, y1) = axis_range(series.iter().flat_map(|s| s.points.iter().map(|p| p.1)), false);
    let colours = colours(series.iter().map(|s| s.role));
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, (WIDTH, HEIGHT)).into_drawing_area();
        root.fill(&WHITE).map_err(failed)?;
        let mut chart = ChartBuilder::on(&root)
            .margin(12)
            .x_label_area_size(38)
            .y_label_area_size(64)
            .build_cartesian_2d(x0..x1, y0..y1)
            .map_err(failed)?;
        // Epochs (and integer sweeps) are labelled as integers: a tick between two has no label.
        let integral = series.iter().flat_map(|s| &s.points).all(|p| p.0.fract() == 0.0);
        let x_format = |x: &f64| match (integral, x.fract() == 0.0) {
            (true, true) => format!("{x:.0}"),
            (true, false) => String::new(),
            (false, _) => format!("{}", (x * 1e6).round() / 1e6),
        };
        chart
            .configure_mesh()
            .x_label_formatter(&x_format)
            .x_desc(x_label)
            .y_desc(y_label)
            .label_style((FONT, 12))
            .axis_desc_style((FONT, 13))
            .light_line_style(RGBColor(241, 245, 249))
            .draw()
            .map_err(failed)?;
        for (s, &colour) in series.iter().zip(&colours) {
            let style = ShapeStyle { color: colour.to_rgba(), filled: false, stroke_width: 2 };
            chart
                .draw_series(LineSeries::new(s.points.iter().copied(), style))
                .map_err(failed)?
                .label(s.name.clone())
                .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 18, y)], style));
            // Points too, so a series of one epoch still shows.
            chart.draw_series(s.points.iter().map(|&p| Circle::new(p, 2, colour.filled()))).map_err(failed)?;
        }
        if series.len() > 1 {
            chart
                .configure_series_labels()
                .position(SeriesLabelPosition::UpperRight)
                .label_font((FONT, 12))
                .background_style(WHITE.mix(0.85))
                .border_style(RGBColor(203, 213, 225))
                .draw()
                .map_err(failed)?;
        }
        root.present().map_err(failed)?;
    }
    Ok(svg)
}

/// One bar per model, labelled below, with its value above it.
pub fn bars(y_label: &str, bars: &[Bar]) -> anyhow::Result<String> {
    let (_, y1) = axis_range(bars.iter().map(|b| b.value), true);
    let colours = colours(bars.iter().map(|b| b.role));
    let labels: Vec<String> = bars.iter().map(|b| b.label.clone()).collect();
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, (WIDTH, HEIGHT)).into_drawing_area();
        root.fill(&WHITE).map_err(failed)?;
        let n = bars.len().max(1);
        let mut chart = ChartBuilder::on(&root)
            .margin(12)
            .x_label_area_size(38)
            .y_label_area_size(64)
            .build_cartesian_2d((0..n).into_segmented(), 0.0..y1)
            .map_err(failed)?;
        chart
            .configure_mesh()
            .disable_x_mesh()
            .y_desc(y_label)
            .label_style((FONT, 12))
            .axis_desc_style((FONT, 13))
            .light_line_style(RGBColor(241, 245, 249))
            .x_labels(n)
            .x_label_formatter(&|v| match v {
                SegmentValue::CenterOf(i) | SegmentValue::Exact(i) => labels.get(*i).cloned().unwrap_or_default(),
                SegmentValue::Last => String::new(),
            })
            .draw()
            .map_err(failed)?;
        chart
            .draw_series(bars.iter().zip(&colours).enumerate().map(|(i, (b, colour))| {
                let mut bar = Rectangle::new(
                    [(SegmentValue::Exact(i), 0.0), (SegmentValue::Exact(i + 1), b.value)],
                    colour.filled(),
                );
                bar.set_margin(0, 0, 12, 12);
                bar
            }))
            .map_err(failed)?;
        chart
            .draw_series(bars.iter().enumerate().map(|(i, b)| {
                Text::new(
                    crate::report::results::format_number(b.value),
                    (SegmentValue::CenterOf(i), b.value),
                    (FONT, 12).into_font().color(&TEACHER).pos(plotters::style::text_anchor::Pos::new(
                        plotters::style::text_anchor::HPos::Center,
                        plotters::style::text_anchor::VPos::Bottom,
                    )),
                )
            }))
            .map_err(failed)?;
        root.present().map_err(failed)?;
    }
    Ok(svg)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges_are_padded_never_empty_and_start_at_zero_for_bars() {
        assert_eq!(axis_range([2.0, 2.0].into_iter(), false), (1.8, 2.2));
        assert_eq!(axis_range(std::iter::empty(), false), (0.0, 1.0));
        let (lo, hi) = axis_range([0.5, 0.9].into_iter(), true);
        assert_eq!(lo, 0.0);
        assert!(hi > 0.9 && hi < 1.0);
        assert_eq!(axis_range([f64::NAN, 1.0, 3.0].into_iter(), false), (1.0 - 0.12, 3.0 + 0.12));
    }

    #[test]
    fn charts_are_svg_with_every_series_and_bar() {
        let series = vec![
            Series { name: "teacher".into(), role: Role::Teacher, points: vec![(1.0, 0.5), (2.0, 0.8)] },
            Series { name: "student".into(), role: Role::Student, points: vec![(1.0, 0.4)] },
        ];
        let svg = lines("epoch", "accuracy", &series).unwrap();
        assert!(svg.starts_with("<svg") && svg.contains("teacher") && svg.contains("student"), "{svg}");
        let svg = bars(
            "accuracy",
            &[
                Bar { label: "teacher".into(), role: Role::Teacher, value: 0.97 },
                Bar { label: "baseline".into(), role: Role::Baseline, value: 0.88 },
            ],
        )
        .unwrap();
        assert!(svg.contains("baseline") && svg.contains("0.9700"), "{svg}");
        // Teacher and baseline bars in their own colours.
        assert!(svg.contains("#1E293B") && svg.contains("#94A3B8"), "{svg}");
    }
}
