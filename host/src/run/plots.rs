//! PNG plots of a run, drawn with plotters and an embedded DejaVu Sans font (so that a fresh
//! machine without system fonts still gets labelled plots). Each plot is drawn in memory,
//! encoded by `image` and written atomically, so a full disk or a kill while plotting leaves
//! the previous plot, never a torn PNG.

use std::path::Path;
use std::sync::Once;

use image::ImageEncoder;
use plotters::prelude::*;

use super::fsio::write_atomic;
use super::metrics::Record;

/// A named line: `(x, y)` points.
pub type Series = (String, Vec<(f64, f64)>);

/// A plotting failure (the message names the file).
#[derive(Debug, thiserror::Error)]
#[error("cannot draw {path}: {message}")]
pub struct PlotError {
    path: String,
    message: String,
}

fn register_font() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        // The font is a valid TTF shipped inside the dejavu crate; registration cannot fail
        // for it, and a failure would only cost the labels.
        let _ = plotters::style::register_font(
            "sans-serif",
            FontStyle::Normal,
            dejavu::sans::regular(),
        );
    });
}

const COLORS: [RGBColor; 6] = [
    RGBColor(31, 119, 180),
    RGBColor(255, 127, 14),
    RGBColor(44, 160, 44),
    RGBColor(214, 39, 40),
    RGBColor(148, 103, 189),
    RGBColor(140, 86, 75),
];

/// Points with a coordinate beyond this magnitude are left out, as non-finite ones are: the
/// axis arithmetic (span, padding) must stay finite and non-degenerate, or plotters loops
/// forever laying out the ticks (a point at `f64::MAX` did).
const MAX_PLOTTED: f64 = 1e300;

fn plotted((x, y): (f64, f64)) -> bool {
    x.abs() <= MAX_PLOTTED && y.abs() <= MAX_PLOTTED
}

/// The y range for data in `[lo, hi]` (both within [`MAX_PLOTTED`]): padded by 5% of the
/// span on each side, and by at least a millionth of the values' magnitude (at least 1e-6
/// near zero), so that a flat series at any magnitude gets a range its floats tell apart.
fn y_range(lo: f64, hi: f64) -> (f64, f64) {
    let pad = ((hi - lo) * 0.05).max(1e-6 * lo.abs().max(hi.abs()).max(1.0));
    (lo - pad, hi + pad)
}

/// The x range for data in `[lo, hi]` (both within [`MAX_PLOTTED`]): the data's, or when it
/// is a single x, from it to one further (a millionth of its magnitude further, far from zero).
fn x_range(lo: f64, hi: f64) -> (f64, f64) {
    let width = (lo.abs() * 1e-6).max(1.0);
    if hi - lo < 1e-12 * width {
        (lo, lo + width)
    } else {
        (lo, hi)
    }
}

/// The plots' size in pixels.
const SIZE: (u32, u32) = (900, 540);

/// Draws `series` as lines in a 900x540 PNG at `path` (written atomically).
pub fn line_chart(
    path: &Path,
    title: &str,
    x_label: &str,
    y_label: &str,
    series: &[Series],
) -> Result<(), PlotError> {
    register_font();
    let err = |e: &dyn std::fmt::Display| PlotError {
        path: path.display().to_string(),
        message: e.to_string(),
    };
    let points = series
        .iter()
        .flat_map(|(_, p)| p.iter())
        .filter(|&&p| plotted(p));
    let (mut x0, mut x1, mut y0, mut y1) = (f64::MAX, f64::MIN, f64::MAX, f64::MIN);
    for &(x, y) in points {
        x0 = x0.min(x);
        x1 = x1.max(x);
        y0 = y0.min(y);
        y1 = y1.max(y);
    }
    if x0 > x1 {
        (x0, x1, y0, y1) = (0.0, 1.0, 0.0, 1.0);
    }
    let (x0, x1) = x_range(x0, x1);
    let (y0, y1) = y_range(y0, y1);

    let mut rgb = vec![0u8; SIZE.0 as usize * SIZE.1 as usize * 3];
    draw(&mut rgb, title, x_label, y_label, series, (x0..x1, y0..y1)).map_err(|e| err(&e))?;
    let mut png = Vec::new();
    image::codecs::png::PngEncoder::new(&mut png)
        .write_image(&rgb, SIZE.0, SIZE.1, image::ExtendedColorType::Rgb8)
        .map_err(|e| err(&e))?;
    write_atomic(path, &png).map_err(|e| err(&e))
}

/// Draws the chart into `rgb`, an RGB buffer of [`SIZE`].
fn draw(
    rgb: &mut [u8],
    title: &str,
    x_label: &str,
    y_label: &str,
    series: &[Series],
    (xs, ys): (std::ops::Range<f64>, std::ops::Range<f64>),
) -> Result<(), Box<dyn std::error::Error>> {
    let root = BitMapBackend::with_buffer(rgb, SIZE).into_drawing_area();
    root.fill(&WHITE)?;
    let mut chart = ChartBuilder::on(&root)
        .caption(title, ("sans-serif", 24))
        .margin(12)
        .x_label_area_size(44)
        .y_label_area_size(64)
        .build_cartesian_2d(xs, ys)?;
    chart
        .configure_mesh()
        .x_desc(x_label)
        .y_desc(y_label)
        .label_style(("sans-serif", 14))
        .draw()?;
    for (i, (name, pts)) in series.iter().enumerate() {
        let color = COLORS[i % COLORS.len()];
        let pts: Vec<(f64, f64)> = pts.iter().copied().filter(|&p| plotted(p)).collect();
        chart
            .draw_series(LineSeries::new(pts, color.stroke_width(2)))?
            .label(name.as_str())
            .legend(move |(x, y)| {
                PathElement::new(vec![(x, y), (x + 20, y)], color.stroke_width(2))
            });
    }
    chart
        .configure_series_labels()
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK)
        .label_font(("sans-serif", 14))
        .draw()?;
    root.present()?;
    Ok(())
}

/// Draws the standard plots of a run into `dir`: `accuracy.png` (fused, audio, visual test
/// accuracy per epoch), `balance.png` (the ratio and both coefficients over steps) and
/// `loss.png` (training losses over steps). Returns the files written.
pub fn draw_run(dir: &Path, records: &[Record]) -> Result<Vec<std::path::PathBuf>, PlotError> {
    std::fs::create_dir_all(dir).map_err(|e| PlotError {
        path: dir.display().to_string(),
        message: e.to_string(),
    })?;
    let (mut acc, mut acc_a, mut acc_v) = (vec![], vec![], vec![]);
    let (mut ratio, mut ka, mut kv) = (vec![], vec![], vec![]);
    let (mut loss, mut loss_a, mut loss_v) = (vec![], vec![], vec![]);
    for r in records {
        match r {
            Record::Epoch(e) => {
                let x = e.epoch as f64;
                acc.push((x, e.acc));
                acc_a.push((x, e.acc_a));
                acc_v.push((x, e.acc_v));
            }
            Record::Step(s) => {
                let x = s.step as f64;
                if let Some(r) = s.ratio_v {
                    ratio.push((x, r));
                }
                ka.push((x, s.coeff_a));
                kv.push((x, s.coeff_v));
                loss.push((x, s.loss));
                loss_a.push((x, s.loss_a));
                loss_v.push((x, s.loss_v));
            }
        }
    }
    let files = [
        (
            "accuracy.png",
            "Test accuracy",
            "epoch",
            "accuracy",
            vec![
                ("fused (acc)".to_string(), acc),
                ("audio (acc_a)".into(), acc_a),
                ("visual (acc_v)".into(), acc_v),
            ],
        ),
        (
            "balance.png",
            "Modality balance",
            "step",
            "ratio / coefficient",
            vec![
                ("ratio r_v = s_v / s_a".to_string(), ratio),
                ("coeff_a".into(), ka),
                ("coeff_v".into(), kv),
            ],
        ),
        (
            "loss.png",
            "Training loss",
            "step",
            "cross-entropy",
            vec![
                ("fused".to_string(), loss),
                ("audio only".into(), loss_a),
                ("visual only".into(), loss_v),
            ],
        ),
    ];
    let mut written = vec![];
    for (name, title, xl, yl, series) in files {
        let p = dir.join(name);
        line_chart(&p, title, xl, yl, &series)?;
        written.push(p);
    }
    Ok(written)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn extreme_and_flat_series_are_drawn() {
        // Points at +-f64::MAX made the axis span infinite and plotters never returned; flat
        // series far from zero had a range their floats could not tell apart.
        let dir = tempfile::tempdir().unwrap();
        let cases: [&[(f64, f64)]; 10] = [
            &[(0.0, MAX_PLOTTED), (1.0, -MAX_PLOTTED)],
            &[(0.0, f64::MAX), (1.0, -f64::MAX), (2.0, 0.5)],
            &[(-f64::MAX, 1.0), (f64::MAX, 2.0), (3.0, 1.5)],
            &[(0.0, 1e308), (1.0, 1e-308)],
            &[(0.0, 1e30), (1.0, 1e30)],
            &[(1e20, 1.0), (1e20, 2.0)],
            &[(5.0, 1.0)],
            &[(0.0, f64::NAN), (f64::INFINITY, 1.0)],
            &[],
            &[(0.0, 0.1), (1.0, 0.2), (2.0, 0.4)],
        ];
        for (i, pts) in cases.into_iter().enumerate() {
            let path = dir.path().join(format!("{i}.png"));
            line_chart(&path, "t", "x", "y", &[("s".into(), pts.to_vec())]).unwrap();
            assert!(std::fs::metadata(&path).unwrap().len() > 0, "case {i}");
        }
    }

    #[test]
    fn a_failed_plot_write_keeps_the_previous_plot() {
        // The name is this test's own: OGM_FAIL_WRITE is read by every atomic write of the
        // process, and no other test writes a file of that name.
        let name = "plots-atomic-check.png";
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(name);
        let first: Series = ("s".into(), vec![(0.0, 1.0), (1.0, 2.0)]);
        line_chart(&path, "t", "x", "y", &[first]).unwrap();
        let before = std::fs::read(&path).unwrap();
        let png = image::load_from_memory(&before).unwrap();
        assert_eq!((png.width(), png.height()), SIZE);
        std::env::set_var("OGM_FAIL_WRITE", name);
        let second: Series = ("s".into(), vec![(0.0, 5.0), (1.0, -3.0)]);
        let e = line_chart(&path, "t", "x", "y", &[second]).unwrap_err();
        std::env::remove_var("OGM_FAIL_WRITE");
        assert!(e.to_string().contains(name), "{e}");
        assert_eq!(
            std::fs::read(&path).unwrap(),
            before,
            "the old plot is kept whole"
        );
        let left: Vec<_> = std::fs::read_dir(dir.path()).unwrap().collect();
        assert_eq!(left.len(), 1, "no temporary file is left: {left:?}");
    }

    #[test]
    fn axis_ranges_pad_the_span_or_widen_a_flat_one() {
        // As before for everyday values: 5% padding, 1e-6 for a flat series, a single x to x+1.
        assert_eq!(y_range(0.0, 10.0), (-0.5, 10.5));
        assert_eq!(y_range(0.5, 0.5), (0.5 - 1e-6, 0.5 + 1e-6));
        assert_eq!(x_range(0.0, 10.0), (0.0, 10.0));
        assert_eq!(x_range(5.0, 5.0), (5.0, 6.0));
        // Far from zero the range stays one that the floats tell apart.
        let (lo, hi) = y_range(1e30, 1e30);
        assert!(lo < 1e30 && hi > 1e30);
        let (lo, hi) = x_range(1e20, 1e20);
        assert!(lo == 1e20 && hi > 1e20);
        let (lo, hi) = y_range(-MAX_PLOTTED, MAX_PLOTTED);
        assert!(lo.is_finite() && hi.is_finite());
    }
}
