//! The swarm benchmark's PNG chart.
//!
//! [`render_png`] draws one panel per profile/peer-count/scenario in a grid (at
//! most three per row) under a common title. In each panel the x axis is the
//! share of the panel's peers done (peers ordered by completion time, 0..1) and
//! the y axis is the completion time in seconds, so every system is a rising
//! step line: the lower and the flatter, the better. The fluid bound `T_min`
//! is a solid black line and an optional target (a multiple of `T_min`) a
//! dashed red one. Failed peers never complete, so a series with failures
//! stops short of x = 1 and says how many failed in the legend.
//!
//! Text is rendered with plotters' `ab_glyph` backend from a DejaVu Sans TTF
//! read at run time (no fontconfig/freetype); without it rendering fails with
//! a hint to install `fonts-dejavu-core`.

use std::path::Path;
use std::sync::OnceLock;

use anyhow::{Context, anyhow};
use plotters::coord::Shift;
use plotters::element::DashedPathElement;
use plotters::prelude::*;
use plotters::style::FontStyle;
use plotters::style::text_anchor::{HPos, Pos, VPos};

/// One system's completion times in one panel (e.g. "darter", "curl", "bittorrent").
#[derive(Clone, Debug)]
pub struct Series {
    /// The system's name, shown in the legend; also picks the colour.
    pub label: String,
    /// Seconds from the common start to each peer's completion, any order (the chart sorts them).
    pub completion_secs: Vec<f64>,
    /// Peers of this series that failed or were killed (shown in the legend as "label (k failed)" when k > 0).
    pub failed: usize,
}

/// One panel: one profile/peer-count/scenario.
#[derive(Clone, Debug)]
pub struct Panel {
    /// e.g. "A cold, N=16".
    pub title: String,
    /// The fluid bound in seconds (drawn as a horizontal line "bound T_min").
    pub t_min_secs: f64,
    /// Also draw a dashed target line at this multiple of T_min (e.g. 1.25), if set.
    pub target_ratio: Option<f64>,
    /// The systems compared in this panel, drawn (and listed in the legend) in this order.
    pub series: Vec<Series>,
}

/// Width of one panel in pixels.
const PANEL_W: u32 = 600;
/// Height of one panel in pixels.
const PANEL_H: u32 = 400;
/// Height of the band holding the chart's title.
const TITLE_H: u32 = 44;
/// Panels per row, at most.
const MAX_COLS: usize = 3;
/// Above this many points a series is drawn without markers (they would merge into a smear).
const MAX_MARKERS: usize = 50;
/// Times (and bounds) beyond this many seconds either way (~32 years) are
/// ignored like non-finite ones: plotters cannot lay out axes that span most
/// of the `f64` range.
const MAX_SECS: f64 = 1e9;

/// Whether `secs` can be drawn: finite and within [`MAX_SECS`].
fn usable(secs: f64) -> bool {
    secs.is_finite() && secs.abs() <= MAX_SECS
}

/// The font family plotters asks for by default, under which DejaVu Sans is registered.
const FONT_FAMILY: &str = "sans-serif";
/// Where distributions install DejaVu Sans, in order of preference.
const FONT_PATHS: [&str; 3] = [
    "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf",
    "/usr/share/fonts/TTF/DejaVuSans.ttf",
    "/usr/share/fonts/dejavu/DejaVuSans.ttf",
];

/// Renders `panels` in a grid (at most 3 per row) under one `title` into a PNG at `path`.
///
/// Non-finite completion times, bounds and ratios are ignored, and so are
/// absurd ones (beyond 1e9 s). A panel
/// without series still shows its bound; no panels at all gives just the title.
pub fn render_png(path: &Path, title: &str, panels: &[Panel]) -> anyhow::Result<()> {
    ensure_font()?;
    let (width, height) = image_size(panels.len());
    let root = BitMapBackend::new(path, (width, height)).into_drawing_area();
    root.fill(&WHITE)?;
    let (title_area, body) = root.split_vertically(TITLE_H);
    title_area.draw(&Text::new(
        title.to_owned(),
        (width as i32 / 2, TITLE_H as i32 / 2),
        (FONT_FAMILY, 24).into_font().color(&BLACK).pos(Pos::new(HPos::Center, VPos::Center)),
    ))?;
    if panels.is_empty() {
        body.draw(&Text::new(
            "no panels",
            (width as i32 / 2, PANEL_H as i32 / 2),
            (FONT_FAMILY, 16).into_font().color(&BLACK.mix(0.6)).pos(Pos::new(HPos::Center, VPos::Center)),
        ))?;
    } else {
        let cols = panels.len().min(MAX_COLS);
        let rows = panels.len().div_ceil(cols);
        for (area, panel) in body.split_evenly((rows, cols)).iter().zip(panels) {
            draw_panel(area, panel).with_context(|| format!("drawing panel {:?}", panel.title))?;
        }
    }
    root.present().with_context(|| format!("writing {}", path.display()))?;
    Ok(())
}

/// The image size for `panels` panels: a grid of at most [`MAX_COLS`] columns under the title band.
fn image_size(panels: usize) -> (u32, u32) {
    let cols = panels.clamp(1, MAX_COLS);
    let rows = panels.div_ceil(cols).max(1);
    let to_u32 = |n: usize| u32::try_from(n).unwrap_or(u32::MAX);
    (PANEL_W.saturating_mul(to_u32(cols)), TITLE_H.saturating_add(PANEL_H.saturating_mul(to_u32(rows))))
}

/// Loads DejaVu Sans once per process and registers it with plotters.
fn ensure_font() -> anyhow::Result<()> {
    static FONT: OnceLock<Result<(), String>> = OnceLock::new();
    FONT.get_or_init(|| {
        let Some((path, bytes)) = FONT_PATHS.iter().find_map(|p| std::fs::read(p).ok().map(|b| (*p, b))) else {
            return Err(format!(
                "chart: no DejaVu Sans font found (looked in {}); install fonts-dejavu-core",
                FONT_PATHS.join(", ")
            ));
        };
        let bytes: &'static [u8] = Box::leak(bytes.into_boxed_slice());
        plotters::style::register_font(FONT_FAMILY, FontStyle::Normal, bytes)
            .map_err(|_| format!("chart: {path} is not a usable TrueType font; install fonts-dejavu-core"))
    })
    .clone()
    .map_err(|e| anyhow!(e))
}

/// The fixed colour of a known system ("darter" strong blue, "curl" orange,
/// "bittorrent" green), so every chart reads the same; `None` for others.
fn known_colour(label: &str) -> Option<RGBColor> {
    let label = label.to_ascii_lowercase();
    if label.starts_with("darter") {
        Some(RGBColor(0, 82, 204))
    } else if label.starts_with("curl") {
        Some(RGBColor(230, 126, 20))
    } else if label.starts_with("bittorrent") {
        Some(RGBColor(44, 160, 44))
    } else {
        None
    }
}

/// Colours for systems without a fixed one, in order of appearance in a panel.
const PALETTE: [RGBColor; 6] = [
    RGBColor(148, 103, 189), // purple
    RGBColor(140, 86, 75),   // brown
    RGBColor(227, 119, 194), // pink
    RGBColor(23, 190, 207),  // teal
    RGBColor(188, 189, 34),  // olive
    RGBColor(127, 127, 127), // grey
];

/// A series as a step line and its markers, in (share of peers done, seconds).
///
/// Peer `i` (1-based, in completion order) occupies `((i-1)/n, i/n]` at height
/// `t_i`, where `n` counts the usable completions plus the failed peers; its
/// marker sits at `(i/n, t_i)`.
#[derive(Debug, Default, PartialEq)]
struct Steps {
    line: Vec<(f64, f64)>,
    markers: Vec<(f64, f64)>,
}

impl Steps {
    fn of(series: &Series) -> Self {
        let mut times: Vec<f64> = series.completion_secs.iter().copied().filter(|&t| usable(t)).collect();
        times.sort_by(f64::total_cmp);
        if times.is_empty() {
            return Self::default();
        }
        let n = times.len().saturating_add(series.failed) as f64;
        let mut steps = Self { line: Vec::with_capacity(2 * times.len()), markers: Vec::with_capacity(times.len()) };
        for (i, &t) in times.iter().enumerate() {
            let (x0, x1) = (i as f64 / n, (i + 1) as f64 / n);
            steps.line.push((x0, t));
            steps.line.push((x1, t));
            steps.markers.push((x1, t));
        }
        steps
    }
}

/// Formats a ratio without trailing zeros: 1.25 -> "1.25", 1.5 -> "1.5", 2 -> "2".
fn format_ratio(ratio: f64) -> String {
    let s = format!("{ratio:.2}");
    s.trim_end_matches('0').trim_end_matches('.').to_owned()
}

/// Formats seconds for the legend with about three significant digits.
fn format_secs(secs: f64) -> String {
    if secs.abs() >= 100.0 {
        format!("{secs:.0} s")
    } else if secs.abs() >= 10.0 {
        format!("{secs:.1} s")
    } else {
        format!("{secs:.2} s")
    }
}

/// Margin around each panel's chart, in pixels.
const MARGIN: u32 = 10;
/// Extra margin on the right, so the last x label ("1.0") is not clipped.
const MARGIN_RIGHT: u32 = 18;
/// Height of the x axis labels and description.
const X_LABEL_AREA: u32 = 40;
/// Width of the y axis labels and description.
const Y_LABEL_AREA: u32 = 56;
/// Legend font size; the legend's geometry is estimated with it (see [`legend_px`]).
const LEGEND_FONT: u32 = 13;
/// Margin inside the legend box.
const LEGEND_MARGIN: u32 = 8;
/// Width of the legend's sample line area.
const LEGEND_SAMPLE: u32 = 30;
/// Offset of the legend box from the plot's upper left corner (fixed by plotters).
const LEGEND_OFFSET: f64 = 5.0;

/// The legend box's (width, height) in pixels, as plotters lays it out.
fn legend_px(labels: &[String]) -> (f64, f64) {
    let font = (FONT_FAMILY, LEGEND_FONT).into_font();
    let size = f64::from(LEGEND_FONT);
    let text_w = labels.iter().filter_map(|l| font.box_size(l).ok()).map(|(w, _)| w).max().unwrap_or(0);
    let lines = labels.len() as f64;
    let text_h = if labels.is_empty() { 0.0 } else { (lines - 1.0) * 1.25 * size + size };
    let pad = f64::from(2 * LEGEND_MARGIN);
    (f64::from(text_w) + f64::from(LEGEND_SAMPLE) + pad, text_h + pad)
}

/// The top of the y axis: a bit above every value, and high enough that the
/// legend (upper left, `legend` pixels in a `plot` pixels plot) stays clear of
/// the lines under it where it can (the curves rise to the right, so that
/// corner is the emptiest).
fn y_axis_top(y_min: f64, y_max: f64, steps: &[Steps], ref_lines: &[f64], legend: (f64, f64), plot: (f64, f64)) -> f64 {
    if !(y_max.is_finite() && y_max > y_min) {
        return if y_max.is_finite() && y_max > 0.0 { y_max * 1.12 } else { y_min + 1.0 };
    }
    let top = y_max + 0.08 * (y_max - y_min);
    // Fractions of the plot the legend covers, with a few pixels of air.
    let (fx, fy) = ((legend.0 + LEGEND_OFFSET + 8.0) / plot.0, (legend.1 + LEGEND_OFFSET + 6.0) / plot.1);
    if !(fx.is_finite() && fy.is_finite() && fy < 0.6) {
        return top;
    }
    let under_legend = steps
        .iter()
        .flat_map(|s| s.line.chunks_exact(2))
        .filter(|seg| seg[0].0 <= fx)
        .map(|seg| seg[0].1)
        .chain(ref_lines.iter().copied())
        .fold(f64::NEG_INFINITY, f64::max);
    // Highest value under the legend must sit below `top - fy * (top - y_min)`.
    let needed = (under_legend - fy * y_min) / (1.0 - fy);
    if needed.is_finite() { top.max(needed) } else { top }
}

/// Draws one panel into `area`.
fn draw_panel(area: &DrawingArea<BitMapBackend<'_>, Shift>, panel: &Panel) -> anyhow::Result<()> {
    let t_min = Some(panel.t_min_secs).filter(|&t| usable(t));
    let target = match (t_min, panel.target_ratio) {
        (Some(t), Some(r)) if r.is_finite() && r > 0.0 => Some((r, t * r)).filter(|&(_, target)| usable(target)),
        _ => None,
    };
    let ref_lines: Vec<f64> = t_min.into_iter().chain(target.map(|(_, t)| t)).collect();
    let steps: Vec<Steps> = panel.series.iter().map(Steps::of).collect();

    // Legend entries: the series in the given order, then the reference lines.
    let mut labels: Vec<String> = panel
        .series
        .iter()
        .map(|s| if s.failed > 0 { format!("{} ({} failed)", s.label, s.failed) } else { s.label.clone() })
        .collect();
    if let Some(t) = t_min {
        labels.push(format!("bound T_min = {}", format_secs(t)));
    }
    if let Some((ratio, t)) = target {
        labels.push(format!("target {}x T_min = {}", format_ratio(ratio), format_secs(t)));
    }

    let area = area.titled(&panel.title, (FONT_FAMILY, 18))?;
    let (w, h) = area.dim_in_pixel();
    let plot_px = (
        f64::from(w.saturating_sub(MARGIN + MARGIN_RIGHT + Y_LABEL_AREA).max(1)),
        f64::from(h.saturating_sub(2 * MARGIN + X_LABEL_AREA).max(1)),
    );
    let values = || steps.iter().flat_map(|s| s.markers.iter().map(|&(_, t)| t)).chain(ref_lines.iter().copied());
    let y_max = values().fold(f64::NEG_INFINITY, f64::max);
    let y_min = values().fold(0.0, f64::min);
    let y_top = y_axis_top(y_min, y_max, &steps, &ref_lines, legend_px(&labels), plot_px);

    let mut chart = ChartBuilder::on(&area)
        .margin(MARGIN)
        .margin_right(MARGIN_RIGHT)
        .x_label_area_size(X_LABEL_AREA)
        .y_label_area_size(Y_LABEL_AREA)
        .build_cartesian_2d(0.0..1.0, y_min..y_top)?;
    chart
        .configure_mesh()
        .x_desc("share of peers done")
        .y_desc("completion time (s)")
        .x_labels(6)
        .y_labels(8)
        .x_label_formatter(&|x| format!("{x:.1}"))
        .y_label_formatter(&|y| if y_top - y_min >= 10.0 { format!("{y:.0}") } else { format!("{y:.1}") })
        .label_style((FONT_FAMILY, 13))
        .axis_desc_style((FONT_FAMILY, 14))
        .bold_line_style(BLACK.mix(0.12))
        .light_line_style(TRANSPARENT)
        .draw()?;

    // Reference lines first and Darter last, so Darter is on top of everything.
    let bound_style = BLACK.stroke_width(2);
    let target_style = RGBColor(214, 39, 40).stroke_width(2);
    if let Some(t) = t_min {
        chart.draw_series(LineSeries::new([(0.0, t), (1.0, t)], bound_style))?;
    }
    if let Some((_, t)) = target {
        chart.draw_series(DashedLineSeries::new([(0.0, t), (1.0, t)], 8, 5, target_style))?;
    }
    let mut others = 0;
    let styled: Vec<(RGBColor, bool)> = panel
        .series
        .iter()
        .map(|s| {
            let highlight = s.label.to_ascii_lowercase().starts_with("darter");
            let colour = known_colour(&s.label).unwrap_or_else(|| {
                others += 1;
                PALETTE[(others - 1) % PALETTE.len()]
            });
            (colour, highlight)
        })
        .collect();
    let line_style = |(colour, highlight): (RGBColor, bool)| colour.stroke_width(if highlight { 3 } else { 2 });
    let mut order: Vec<usize> = (0..steps.len()).collect();
    order.sort_by_key(|&i| styled[i].1);
    for i in order {
        let (colour, highlight) = styled[i];
        chart.draw_series(LineSeries::new(steps[i].line.iter().copied(), line_style(styled[i])))?;
        if steps[i].markers.len() <= MAX_MARKERS {
            let radius = if highlight { 3 } else { 2 };
            chart.draw_series(steps[i].markers.iter().map(|&p| Circle::new(p, radius, colour.filled())))?;
        }
    }

    // Legend entries, in `labels` order, attached to empty series.
    let samples = styled
        .iter()
        .map(|&s| (line_style(s), false))
        .chain(t_min.map(|_| (bound_style, false)))
        .chain(target.map(|_| (target_style, true)));
    for (label, (style, dashed)) in labels.into_iter().zip(samples) {
        let sample = LEGEND_SAMPLE as i32 - 8;
        chart.draw_series(std::iter::empty::<PathElement<(f64, f64)>>())?.label(label).legend(
            move |(x, y)| -> DynElement<'static, BitMapBackend<'_>, (i32, i32)> {
                if dashed {
                    DashedPathElement::new([(x, y), (x + sample, y)], 6, 4, style).into_dyn()
                } else {
                    PathElement::new([(x, y), (x + sample, y)], style).into_dyn()
                }
            },
        );
    }

    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::UpperLeft)
        .margin(LEGEND_MARGIN)
        .legend_area_size(LEGEND_SAMPLE)
        .label_font((FONT_FAMILY, LEGEND_FONT))
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK.mix(0.3))
        .draw()?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn series(label: &str, secs: &[f64], failed: usize) -> Series {
        Series { label: label.to_owned(), completion_secs: secs.to_vec(), failed }
    }

    /// The (width, height) from a PNG's IHDR chunk, after checking the signature.
    fn png_size(path: &Path) -> (u32, u32) {
        let bytes = std::fs::read(path).unwrap();
        assert!(bytes.len() > 24, "PNG too short: {} bytes", bytes.len());
        assert_eq!(&bytes[..8], b"\x89PNG\r\n\x1a\n", "not a PNG");
        assert_eq!(&bytes[12..16], b"IHDR");
        let be = |b: &[u8]| u32::from_be_bytes(b.try_into().unwrap());
        (be(&bytes[16..20]), be(&bytes[20..24]))
    }

    fn sample_panels() -> Vec<Panel> {
        let darter: Vec<f64> = (0..16).map(|i| 10.0 + 0.3 * f64::from(i)).collect();
        let curl: Vec<f64> = (0..16).map(|i| 4.0 + 2.5 * f64::from(i)).collect();
        let bt: Vec<f64> = (0..14).map(|i| 12.0 + 0.6 * f64::from(i)).rev().collect();
        vec![
            Panel {
                title: "A cold, N=16".to_owned(),
                t_min_secs: 10.0,
                target_ratio: Some(1.25),
                series: vec![series("darter", &darter, 0), series("curl", &curl, 0), series("bittorrent", &bt, 2)],
            },
            Panel { title: "B warm, N=16".to_owned(), t_min_secs: 5.0, target_ratio: None, series: vec![] },
        ]
    }

    #[test]
    fn renders_panels_to_png_of_expected_size() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("chart.png");
        render_png(&path, "swarm benchmark", &sample_panels()).unwrap();
        assert_eq!(png_size(&path), (2 * PANEL_W, TITLE_H + PANEL_H));
    }

    #[test]
    fn grid_wraps_after_three_panels() {
        assert_eq!(image_size(0), (PANEL_W, TITLE_H + PANEL_H));
        assert_eq!(image_size(3), (3 * PANEL_W, TITLE_H + PANEL_H));
        assert_eq!(image_size(4), (3 * PANEL_W, TITLE_H + 2 * PANEL_H));
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("grid.png");
        let panels: Vec<Panel> = sample_panels().into_iter().cycle().take(4).collect();
        render_png(&path, "four panels", &panels).unwrap();
        assert_eq!(png_size(&path), (3 * PANEL_W, TITLE_H + 2 * PANEL_H));
        let path = dir.path().join("none.png");
        render_png(&path, "no panels", &[]).unwrap();
        assert_eq!(png_size(&path), (PANEL_W, TITLE_H + PANEL_H));
    }

    #[test]
    fn non_finite_values_are_ignored() {
        let nasty = [f64::NAN, 3.0, f64::INFINITY, 1.0, f64::NEG_INFINITY];
        let steps = Steps::of(&series("darter", &nasty, 2));
        assert_eq!(steps.markers, vec![(0.25, 1.0), (0.5, 3.0)]);
        assert_eq!(steps.line, vec![(0.0, 1.0), (0.25, 1.0), (0.25, 3.0), (0.5, 3.0)]);
        assert_eq!(Steps::of(&series("x", &[f64::NAN], 3)), Steps::default());

        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("nan.png");
        let panels = [
            Panel {
                title: "NaN bound".to_owned(),
                t_min_secs: f64::NAN,
                target_ratio: Some(f64::INFINITY),
                series: vec![series("darter", &nasty, 1), series("all-nan", &[f64::NAN, f64::NAN], 0)],
            },
            Panel {
                title: "infinite bound".to_owned(),
                t_min_secs: f64::INFINITY,
                target_ratio: Some(1.25),
                series: vec![series("curl", &[f64::NAN], 4)],
            },
            Panel { title: "zero".to_owned(), t_min_secs: 0.0, target_ratio: Some(-1.0), series: vec![] },
        ];
        render_png(&path, "non-finite", &panels).unwrap();
        assert_eq!(png_size(&path), (3 * PANEL_W, TITLE_H + PANEL_H));
    }

    #[test]
    fn extreme_values_do_not_panic() {
        assert_eq!(Steps::of(&series("x", &[f64::MAX, 2.0, -1e10], 0)).markers, vec![(1.0, 2.0)]);
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("extreme.png");
        let panels = [
            Panel {
                title: String::new(),
                t_min_secs: f64::MAX,
                target_ratio: Some(f64::MAX),
                series: vec![series("", &[f64::MAX, -f64::MAX, 1e300], usize::MAX)],
            },
            Panel {
                title: "all equal".to_owned(),
                t_min_secs: 0.0,
                target_ratio: Some(1.25),
                series: vec![series("darter", &[0.0; 5], 0)],
            },
            Panel {
                title: "negative".to_owned(),
                t_min_secs: -3.0,
                target_ratio: Some(1e-300),
                series: vec![series("curl", &[-5.0, -1.0, 1e-300], 0)],
            },
            Panel {
                title: "tiny".to_owned(),
                t_min_secs: 1e-9,
                target_ratio: None,
                series: vec![series("darter", &[1e-9, 1.000_000_1e-9], 0)],
            },
        ];
        render_png(&path, "", &panels).unwrap();
        assert_eq!(png_size(&path), (3 * PANEL_W, TITLE_H + 2 * PANEL_H));
    }

    #[test]
    fn ratio_formatting() {
        assert_eq!(format_ratio(1.25), "1.25");
        assert_eq!(format_ratio(1.5), "1.5");
        assert_eq!(format_ratio(2.0), "2");
    }

    /// Decodes a PNG into its width and its RGB pixels, row by row.
    fn decode(path: &Path) -> (u32, u32, Vec<[u8; 3]>) {
        let decoder = png::Decoder::new(std::io::BufReader::new(std::fs::File::open(path).unwrap()));
        let mut reader = decoder.read_info().unwrap();
        let mut buf = vec![0; reader.output_buffer_size()];
        let info = reader.next_frame(&mut buf).unwrap();
        assert_eq!((info.color_type, info.bit_depth), (png::ColorType::Rgb, png::BitDepth::Eight));
        let pixels = buf[..info.buffer_size()].chunks_exact(3).map(|p| [p[0], p[1], p[2]]).collect();
        (info.width, info.height, pixels)
    }

    /// Renders a five-panel chart (also to `$CHART_EXAMPLE` when set, for
    /// looking at it), decodes it, and checks each panel shows what it was
    /// given: the title is drawn; every panel has axes; Darter's blue and the
    /// target's red appear exactly in the panels with Darter and a target;
    /// curl's orange exactly in those with curl.
    #[test]
    fn example_chart() {
        let dir = tempfile::tempdir().unwrap();
        let path =
            std::env::var_os("CHART_EXAMPLE").map_or_else(|| dir.path().join("example.png"), std::path::PathBuf::from);
        let mut panels = sample_panels();
        let ramp = |n: u32, from: f64, to: f64, pow: i32| -> Vec<f64> {
            (0..n).map(|i| from + (to - from) * (f64::from(i) / f64::from(n - 1)).powi(pow)).collect()
        };
        panels.push(Panel {
            title: "C cold, N=200".to_owned(),
            t_min_secs: 28.0,
            target_ratio: Some(1.25),
            series: vec![
                series("darter", &ramp(200, 29.0, 36.0, 3), 0),
                series("curl", &ramp(200, 1.0, 180.0, 1), 0),
                series("aria2", &ramp(150, 31.0, 60.0, 2), 50),
            ],
        });
        panels.push(Panel {
            title: "D darter only, N=64".to_owned(),
            t_min_secs: 8.0,
            target_ratio: Some(1.25),
            series: vec![series("darter", &ramp(64, 8.4, 9.1, 2), 0)],
        });
        panels.push(Panel {
            title: "E many systems, N=8".to_owned(),
            t_min_secs: 20.0,
            target_ratio: Some(1.5),
            series: ["darter", "curl", "bittorrent", "aria2", "rsync", "scp"]
                .iter()
                .enumerate()
                .map(|(k, l)| series(l, &ramp(8, 20.0 + 3.0 * k as f64, 26.0 + 6.0 * k as f64, 1), k % 2))
                .collect(),
        });
        render_png(&path, "Swarm benchmark: completion times vs the fluid bound", &panels).unwrap();

        let (width, height, pixels) = decode(&path);
        assert_eq!((width, height), (3 * PANEL_W, TITLE_H + 2 * PANEL_H), "three panels a row, two rows");
        // The colours found in a rectangle of the image.
        let colours_in = |x0: u32, y0: u32, w: u32, h: u32| -> std::collections::HashSet<[u8; 3]> {
            (y0..y0 + h)
                .flat_map(|y| (x0..x0 + w).map(move |x| (x, y)))
                .map(|(x, y)| pixels[(y * width + x) as usize])
                .collect()
        };
        let white = [255, 255, 255];
        let title = colours_in(0, 0, width, TITLE_H);
        assert!(title.iter().any(|&[r, g, b]| r < 128 && g < 128 && b < 128), "no dark text in the title band");

        let colour = |c: RGBColor| [c.0, c.1, c.2];
        let (darter, curl) = (colour(known_colour("darter").unwrap()), colour(known_colour("curl").unwrap()));
        let target = [214, 39, 40];
        for (i, panel) in panels.iter().enumerate() {
            let (col, row) = ((i % MAX_COLS) as u32, (i / MAX_COLS) as u32);
            let seen = colours_in(col * PANEL_W, TITLE_H + row * PANEL_H, PANEL_W, PANEL_H);
            assert!(seen.iter().any(|&c| c != white), "panel {:?} is blank", panel.title);
            let has = |label: &str| panel.series.iter().any(|s| s.label == label);
            assert_eq!(seen.contains(&darter), has("darter"), "Darter's blue in panel {:?}", panel.title);
            assert_eq!(seen.contains(&curl), has("curl"), "curl's orange in panel {:?}", panel.title);
            assert_eq!(
                seen.contains(&target),
                panel.target_ratio.is_some(),
                "the target line in panel {:?}",
                panel.title
            );
        }
        // The sixth cell of the grid has no panel: it stays background.
        assert_eq!(colours_in(2 * PANEL_W, TITLE_H + PANEL_H, PANEL_W, PANEL_H), [white].into_iter().collect());
    }
}
