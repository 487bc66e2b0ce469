//! Grouped bar charts as SVG, for the tables of the `replay` and `memory` tools.
//!
//! A [`Chart`] is a title, a legend (one colour per series: the allocators) and one or more
//! [`Panel`]s stacked top to bottom; a panel is one group of bars per category (a trace, a
//! scenario), one bar per series in each group, with the value written above each bar.
//!
//! Drawn with `plotters`' SVG backend and no font feature: the SVG holds `<text>` elements
//! that the viewer lays out, and plotters only estimates text sizes from the character
//! count, so no font file or system library (freetype, fontconfig) is involved.

use std::path::{Path, PathBuf};

use plotters::coord::types::RangedCoordf64;
use plotters::coord::Shift;
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};

/// The series colours, in legend order (Tableau 10): series `i` gets `PALETTE[i % 10]`.
pub const PALETTE: [RGBColor; 10] = [
    RGBColor(0x4E, 0x79, 0xA7),
    RGBColor(0xF2, 0x8E, 0x2B),
    RGBColor(0xE1, 0x57, 0x59),
    RGBColor(0x76, 0xB7, 0xB2),
    RGBColor(0x59, 0xA1, 0x4F),
    RGBColor(0xED, 0xC9, 0x48),
    RGBColor(0xB0, 0x7A, 0xA1),
    RGBColor(0xFF, 0x9D, 0xA7),
    RGBColor(0x9C, 0x75, 0x5F),
    RGBColor(0xBA, 0xB0, 0xAC),
];

const FONT: &str = "sans-serif";
/// Width of the whole chart, pixels.
const WIDTH: u32 = 1100;
/// Height of a panel of weight 1, pixels.
const PANEL_UNIT: u32 = 85;
/// The share of a category's width that its bars take.
const GROUP: f64 = 0.84;
/// The widest a bar gets, pixels.
const MAX_BAR: f64 = 70.0;
/// At most this many ticks on a vertical axis.
const Y_TICKS: usize = 6;

/// One chart of bars: one group of bars per category, one bar per series in each group.
#[derive(Clone, Debug)]
pub struct Panel {
    /// The caption above the plot.
    pub title: String,
    /// The vertical axis' title, with its unit.
    pub y_desc: String,
    /// The groups, left to right.
    pub categories: Vec<String>,
    /// `values[series][category]`; a value that is not finite draws no bar.
    pub values: Vec<Vec<f64>>,
    /// A horizontal line at a value, with its label (say, "1 = payload").
    pub reference: Option<(f64, String)>,
    /// How a value is written above its bar.
    pub label: fn(f64) -> String,
    /// The panel's height, in units of 85 pixels (4 for a full-size panel).
    pub weight: u32,
}

/// A titled stack of [`Panel`]s sharing one legend.
#[derive(Clone, Debug)]
pub struct Chart {
    /// The title at the top.
    pub title: String,
    /// Lines of small print under the title (what was measured, how).
    pub notes: Vec<String>,
    /// The legend: the name of series `i` of every panel, drawn in `PALETTE[i]`.
    pub series: Vec<String>,
    /// The panels, top to bottom.
    pub panels: Vec<Panel>,
}

/// Where a tool writes its chart without `--svg`: `charts/FILE` in the build's target
/// directory (`target/charts/replay.svg` for `target/release/replay`), else `FILE` in the
/// current directory.
pub fn default_path(file: &str) -> PathBuf {
    std::env::current_exe()
        .ok()
        .and_then(|exe| Some(exe.parent()?.parent()?.join("charts").join(file)))
        .unwrap_or_else(|| PathBuf::from(file))
}

/// The rough width of `text` at font `size` (plotters units, drawn at `size / 1.24` px),
/// pixels: the SVG viewer picks the font, so this only has to be generous (a digit of DejaVu
/// Sans is 0.64 em wide).
fn text_width(text: &str, size: f64) -> f64 {
    text.chars().count() as f64 * size / 1.24 * 0.7
}

/// The decimals of the vertical axis' tick labels: the fewest (up to 3) that write every
/// tick exactly, at the scale of an axis up to `max` ("0", "0.5", "1" take 1: "0.0", "0.5",
/// "1.0").
fn tick_decimals(ticks: &[f64], max: f64) -> usize {
    let tolerance = max.abs().max(f64::MIN_POSITIVE) * 1e-6;
    let exact = |v: f64, decimals: usize| {
        format!("{v:.decimals$}")
            .parse::<f64>()
            .is_ok_and(|t| (t - v).abs() <= tolerance)
    };
    ticks
        .iter()
        .map(|&v| (0..3).find(|&d| exact(v, d)).unwrap_or(3))
        .max()
        .unwrap_or(0)
}

/// The legend entries laid out in rows of at most `width` pixels: `(series, x, row)`.
fn legend_layout(series: &[String], width: f64) -> Vec<(usize, f64, usize)> {
    let mut out = Vec::with_capacity(series.len());
    let (mut x, mut row) = (0.0, 0);
    for (i, name) in series.iter().enumerate() {
        let w = 22.0 + text_width(name, 15.0) + 16.0;
        if x > 0.0 && x + w > width {
            x = 0.0;
            row += 1;
        }
        out.push((i, x, row));
        x += w;
    }
    out
}

type DrawResult<DB> = Result<(), DrawingAreaErrorKind<<DB as DrawingBackend>::ErrorType>>;

impl Chart {
    /// The chart as an SVG document.
    pub fn to_svg(&self) -> Result<String, String> {
        let legend = legend_layout(&self.series, f64::from(WIDTH) - 40.0);
        let legend_rows = legend.last().map_or(0, |&(_, _, row)| row + 1) as u32;
        let header = 44 + 18 * self.notes.len() as u32 + 24 * legend_rows + 10;
        let weights: u32 = self.panels.iter().map(|p| p.weight.max(1)).sum();
        let height = header + PANEL_UNIT * weights;
        let mut svg = String::new();
        {
            let root = SVGBackend::with_string(&mut svg, (WIDTH, height)).into_drawing_area();
            self.draw(&root, header, &legend)
                .map_err(|e| format!("drawing the chart: {e}"))?;
            root.present()
                .map_err(|e| format!("drawing the chart: {e}"))?;
        }
        Ok(svg)
    }

    /// Writes the chart as an SVG file at `path`, creating its directory.
    pub fn write(&self, path: &Path) -> Result<(), String> {
        let svg = self.to_svg()?;
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
        }
        std::fs::write(path, svg).map_err(|e| format!("{}: {e}", path.display()))
    }

    fn draw<DB: DrawingBackend>(
        &self,
        root: &DrawingArea<DB, Shift>,
        header: u32,
        legend: &[(usize, f64, usize)],
    ) -> DrawResult<DB> {
        root.fill(&WHITE)?;
        let (top, mut body) = root.split_vertically(header);
        let centre = (WIDTH / 2) as i32;
        top.draw(&Text::new(
            self.title.clone(),
            (centre, 10),
            (FONT, 24)
                .into_font()
                .style(FontStyle::Bold)
                .color(&BLACK)
                .pos(Pos::new(HPos::Center, VPos::Top)),
        ))?;
        let mut y = 44;
        for note in &self.notes {
            top.draw(&Text::new(
                note.clone(),
                (centre, y),
                (FONT, 15)
                    .into_font()
                    .color(&BLACK.mix(0.7))
                    .pos(Pos::new(HPos::Center, VPos::Top)),
            ))?;
            y += 18;
        }
        // The legend rows, each centred.
        let y0 = y + 6;
        let rows = legend.last().map_or(0, |&(_, _, row)| row + 1);
        for row in 0..rows {
            let entries: Vec<_> = legend.iter().filter(|e| e.2 == row).collect();
            let row_width = entries.last().map_or(0.0, |&&(i, x, _)| {
                x + 22.0 + text_width(&self.series[i], 15.0)
            });
            let left = (f64::from(WIDTH) - row_width) / 2.0;
            let y = y0 + 24 * row as i32;
            for &&(i, x, _) in &entries {
                let x = (left + x) as i32;
                top.draw(&Rectangle::new(
                    [(x, y + 2), (x + 14, y + 16)],
                    PALETTE[i % PALETTE.len()].filled(),
                ))?;
                top.draw(&Text::new(
                    self.series[i].clone(),
                    (x + 20, y + 9),
                    (FONT, 15)
                        .into_font()
                        .color(&BLACK)
                        .pos(Pos::new(HPos::Left, VPos::Center)),
                ))?;
            }
        }
        for panel in &self.panels {
            let (area, rest) = body.split_vertically(PANEL_UNIT * panel.weight.max(1));
            draw_panel(&area, panel)?;
            body = rest;
        }
        Ok(())
    }
}

fn draw_panel<DB: DrawingBackend>(area: &DrawingArea<DB, Shift>, panel: &Panel) -> DrawResult<DB> {
    let n_cat = panel.categories.len().max(1);
    let n_ser = panel.values.len().max(1);
    let top = panel
        .values
        .iter()
        .flatten()
        .copied()
        .chain(panel.reference.as_ref().map(|r| r.0))
        .filter(|v| v.is_finite())
        .fold(0.0, f64::max);
    // Headroom for the labels above the bars.
    let y_max = if top > 0.0 { top * 1.18 } else { 1.0 };
    let mut chart = ChartBuilder::on(area)
        .caption(panel.title.as_str(), (FONT, 19))
        .margin_top(8)
        .margin_bottom(4)
        .margin_left(12)
        .margin_right(24)
        .x_label_area_size(30)
        .y_label_area_size(78)
        .build_cartesian_2d(0.0..n_cat as f64, 0.0..y_max)?;
    // The ticks plotters will draw, to write them all with the same decimals.
    let ticks = RangedCoordf64::from(0.0..y_max).key_points(Y_TICKS);
    let decimals = tick_decimals(&ticks, y_max);
    // The categories are written under their groups below, not as plotters' ticks.
    chart
        .configure_mesh()
        .disable_x_mesh()
        .x_labels(0)
        .y_label_formatter(&|y| format!("{y:.decimals$}"))
        .y_labels(Y_TICKS)
        .y_desc(panel.y_desc.as_str())
        .axis_desc_style((FONT, 16))
        .label_style((FONT, 15))
        .light_line_style(WHITE.mix(0.0))
        .bold_line_style(BLACK.mix(0.12))
        .draw()?;

    // Bar width in category units: a share of the group, at most MAX_BAR pixels.
    let plot_px = f64::from(chart.plotting_area().dim_in_pixel().0).max(1.0);
    let cat_px = plot_px / n_cat as f64;
    let bar = (GROUP / n_ser as f64).min(MAX_BAR / cat_px);
    let first = 0.5 - bar * n_ser as f64 / 2.0;
    let gap = (1.0 / cat_px).min(bar / 8.0);
    let bar_px = bar * cat_px;
    let mut labels = Vec::new();
    for (s, row) in panel.values.iter().enumerate() {
        let colour = PALETTE[s % PALETTE.len()];
        let bars = row
            .iter()
            .enumerate()
            .filter(|(_, v)| v.is_finite())
            .map(|(c, &v)| {
                let x0 = c as f64 + first + s as f64 * bar;
                labels.push((x0 + bar / 2.0, v));
                Rectangle::new([(x0 + gap, 0.0), (x0 + bar - gap, v)], colour.filled())
            });
        chart.draw_series(bars.collect::<Vec<_>>())?;
    }
    // Text goes on `area`, in pixels from its corner.
    let base = area.get_base_pixel();
    if let Some((value, text)) = &panel.reference {
        chart.draw_series(std::iter::once(PathElement::new(
            vec![(0.0, *value), (n_cat as f64, *value)],
            BLACK.mix(0.55).stroke_width(2),
        )))?;
        let (x, y) = chart.backend_coord(&(n_cat as f64, *value));
        area.draw(&Text::new(
            text.clone(),
            (x - base.0 - 4, y - base.1 - 3),
            (FONT, 14)
                .into_font()
                .color(&BLACK.mix(0.7))
                .pos(Pos::new(HPos::Right, VPos::Bottom)),
        ))?;
    }
    for (c, name) in panel.categories.iter().enumerate() {
        let (px, py) = chart.backend_coord(&(c as f64 + 0.5, 0.0));
        area.draw(&Text::new(
            name.clone(),
            (px - base.0, py - base.1 + 8),
            (FONT, 15)
                .into_font()
                .color(&BLACK)
                .pos(Pos::new(HPos::Center, VPos::Top)),
        ))?;
    }
    // The values above the bars, across the bar when they fit, else along it.
    for (x, v) in labels {
        let text = (panel.label)(v);
        let (px, py) = chart.backend_coord(&(x, v));
        let (px, py) = (px - base.0, py - base.1);
        let style = (FONT, 13).into_font().color(&BLACK.mix(0.8));
        if text_width(&text, 13.0) + 2.0 <= bar_px {
            area.draw(&Text::new(
                text,
                (px, py - 2),
                style.pos(Pos::new(HPos::Center, VPos::Bottom)),
            ))?;
        } else {
            area.draw(&Text::new(
                text,
                (px, py - 3),
                style
                    .transform(FontTransform::Rotate270)
                    .pos(Pos::new(HPos::Left, VPos::Center)),
            ))?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn two_decimals(v: f64) -> String {
        format!("{v:.2}")
    }

    fn tiny() -> Chart {
        Chart {
            title: "Tiny & <small>".into(),
            notes: vec!["a note".into()],
            series: vec!["first".into(), "second".into(), "third".into()],
            panels: vec![
                Panel {
                    title: "time".into(),
                    y_desc: "ns per event".into(),
                    categories: vec!["a".into(), "b".into()],
                    values: vec![vec![1.0, 2.0], vec![3.0, 4.0], vec![5.0, f64::NAN]],
                    reference: None,
                    label: two_decimals,
                    weight: 4,
                },
                Panel {
                    title: "ratio".into(),
                    y_desc: "× best".into(),
                    categories: vec!["a".into()],
                    values: vec![vec![1.0], vec![1.5], vec![0.0]],
                    reference: Some((1.0, "1 = best".into())),
                    label: two_decimals,
                    weight: 2,
                },
            ],
        }
    }

    /// The `fill` of every `<rect>`, in document order.
    fn rect_fills(doc: &roxmltree::Document) -> Vec<String> {
        doc.descendants()
            .filter(|n| n.has_tag_name("rect"))
            .filter_map(|n| n.attribute("fill").map(str::to_owned))
            .collect()
    }

    fn hex(c: RGBColor) -> String {
        format!("#{:02X}{:02X}{:02X}", c.0, c.1, c.2)
    }

    #[test]
    fn the_svg_is_well_formed_xml_of_the_right_size() {
        let svg = tiny().to_svg().unwrap();
        let doc = roxmltree::Document::parse(&svg).expect("well-formed XML");
        let root = doc.root_element();
        assert!(root.has_tag_name("svg"));
        assert_eq!(root.attribute("width"), Some("1100"));
        let header = 44 + 18 + 24 + 10;
        let height = (header + 6 * PANEL_UNIT).to_string();
        assert_eq!(root.attribute("height"), Some(height.as_str()));
    }

    #[test]
    fn one_bar_per_finite_value_and_one_legend_swatch_per_series() {
        let svg = tiny().to_svg().unwrap();
        let doc = roxmltree::Document::parse(&svg).unwrap();
        let fills = rect_fills(&doc);
        // Series 0: 2 + 1 bars; series 1: 2 + 1; series 2: 1 + 1 (NaN skipped); plus the
        // legend swatch of each.
        for (series, bars) in [(0, 3), (1, 3), (2, 2)] {
            let colour = hex(PALETTE[series]);
            let n = fills.iter().filter(|f| **f == colour).count();
            assert_eq!(n, bars + 1, "series {series}");
        }
    }

    #[test]
    fn texts_are_escaped_and_labels_are_present() {
        let svg = tiny().to_svg().unwrap();
        let doc = roxmltree::Document::parse(&svg).unwrap();
        let texts: Vec<&str> = doc
            .descendants()
            .filter(|n| n.has_tag_name("text"))
            .filter_map(|n| n.text())
            .map(str::trim)
            .collect();
        for expected in [
            "Tiny & <small>",
            "a note",
            "first",
            "second",
            "third",
            "time",
            "ns per event",
            "× best",
            "1 = best",
            "a",
            "b",
            "4.00",
            "1.50",
        ] {
            assert!(texts.contains(&expected), "{expected:?} in {texts:?}");
        }
    }

    #[test]
    fn tick_labels_take_the_decimals_they_need() {
        assert_eq!(tick_decimals(&[0.0, 20.0, 40.000_000_001], 50.0), 0);
        assert_eq!(tick_decimals(&[0.0, 0.5, 1.0, 1.5], 1.7), 1);
        assert_eq!(tick_decimals(&[0.0, 0.25, 0.5], 0.6), 2);
        assert_eq!(tick_decimals(&[1.0 / 3.0], 1.0), 3);
        assert_eq!(tick_decimals(&[], 1.0), 0);
    }

    #[test]
    fn labels_too_wide_for_their_bar_turn_along_it() {
        let mut chart = tiny();
        chart.panels.truncate(1);
        chart.panels[0].label = |v| format!("{v:.6} ns");
        let svg = chart.to_svg().unwrap();
        let doc = roxmltree::Document::parse(&svg).unwrap();
        let turned = doc
            .descendants()
            .filter(|n| n.has_tag_name("text"))
            .filter(|n| n.text().is_some_and(|t| t.contains(" ns")))
            .filter(|n| {
                n.attribute("transform")
                    .is_some_and(|t| t.starts_with("rotate(270"))
            })
            .count();
        assert_eq!(turned, 5);
    }

    #[test]
    fn the_legend_wraps_into_rows() {
        let names: Vec<String> = (0..12).map(|i| format!("allocator number {i}")).collect();
        let layout = legend_layout(&names, 600.0);
        assert_eq!(layout.len(), 12);
        assert!(layout.last().unwrap().2 >= 2, "{layout:?}");
        assert!(layout.iter().all(|&(_, x, _)| x < 600.0));
    }

    #[test]
    fn writing_creates_the_directory() {
        let dir = std::env::temp_dir().join(format!("pyalloc-chart-{}", std::process::id()));
        let path = dir.join("sub").join("tiny.svg");
        tiny().write(&path).unwrap();
        let text = std::fs::read_to_string(&path).unwrap();
        std::fs::remove_dir_all(&dir).ok();
        assert!(text.starts_with("<svg") && text.trim_end().ends_with("</svg>"));
    }
}
