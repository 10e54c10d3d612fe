//! Plots as plain SVG, written by hand: a histogram of detection times and the trade-off
//! curve of a sweep. No plotting library: axes, ticks, labels, bars and points are a few
//! dozen elements a browser draws as they are.

use crate::report::SweepPoint;
use std::fmt::Write as _;

const WIDTH: f64 = 640.0;
const HEIGHT: f64 = 400.0;
/// Plot area margins: left, right, top, bottom.
const LEFT: f64 = 70.0;
const RIGHT: f64 = 20.0;
const TOP: f64 = 40.0;
const BOTTOM: f64 = 55.0;

/// A histogram of `values` (seconds) in `bins` equal bins from zero (or below the smallest
/// value, rounded down) to the largest value. Each bin is one `<rect class="bar">`, empty
/// ones included.
pub fn histogram(values: &[f64], bins: usize, title: &str) -> String {
    let mut svg = Svg::new(title);
    if values.is_empty() || bins == 0 {
        svg.note("no crash was detected in this run");
        return svg.finish();
    }
    let max = values.iter().copied().fold(f64::MIN, f64::max);
    let min = values.iter().copied().fold(f64::MAX, f64::min);
    let (low, high) = nice_range(min.min(max - 1e-9), max);
    let width = (high - low) / bins as f64;
    let mut counts = vec![0u64; bins];
    for &value in values {
        let bin = (((value - low) / width) as usize).min(bins - 1);
        counts[bin] += 1;
    }
    let top = counts.iter().copied().max().unwrap_or(1).max(1) as f64;
    let (_, count_high) = nice_range(0.0, top);
    let x = Axis { low, high, from: LEFT, to: WIDTH - RIGHT };
    let y = Axis { low: 0.0, high: count_high, from: HEIGHT - BOTTOM, to: TOP };
    svg.axes(&x, &y, "detection time after a crash (s)", "crashes", |v| format!("{v}"));
    for (bin, &count) in counts.iter().enumerate() {
        let x0 = x.at(low + width * bin as f64);
        let x1 = x.at(low + width * (bin + 1) as f64);
        let y0 = y.at(count as f64);
        let _ = writeln!(
            svg.body,
            r##"<rect class="bar" x="{:.1}" y="{:.1}" width="{:.1}" height="{:.1}" fill="#4878a8"><title>{:.3}-{:.3} s: {count}</title></rect>"##,
            x0 + 0.5,
            y0,
            (x1 - x0 - 1.0).max(0.5),
            y.at(0.0) - y0,
            low + width * bin as f64,
            low + width * (bin + 1) as f64,
        );
    }
    svg.finish()
}

/// Detection time p99 (s) against false downs per 1,000 node-days, one
/// `<circle class="point">` per threshold that detected at least one crash, joined by a line
/// in threshold order and labelled with the threshold. The x axis is `log10(1 + x)` so that
/// zero and thousands fit on one plot.
pub fn tradeoff(points: &[SweepPoint], knob: &str, title: &str) -> String {
    tradeoffs(&[(knob, points)], title)
}

/// Several trade-off curves on one plot (one per detector), each in its own colour with a
/// legend; each series is `(knob name, points)`.
pub fn tradeoffs(series: &[(&str, &[SweepPoint])], title: &str) -> String {
    const COLOURS: [&str; 4] = ["#c04848", "#3c6fb0", "#3a9a5b", "#a06cc0"];
    let mut svg = Svg::new(title);
    let drawn: Vec<Vec<(f64, f64, f64)>> = series
        .iter()
        .map(|(_, points)| {
            points
                .iter()
                .filter_map(|p| {
                    p.detection_p99_ms.map(|ms| (p.threshold, p.false_downs_per_1000_node_days, ms / 1e3))
                })
                .collect()
        })
        .collect();
    let all = || drawn.iter().flatten();
    if all().next().is_none() {
        svg.note("no threshold detected a crash: nothing to plot");
        return svg.finish();
    }
    let squash = |v: f64| (1.0 + v.max(0.0)).log10();
    let x_max = all().map(|p| p.1).fold(0.0, f64::max);
    // The axis ends at the first power of ten at or above the largest value; ticks at 0, 1,
    // 10, 100... up to it.
    let top_power = (0..).find(|&k| 10f64.powi(k) >= x_max).unwrap_or(0);
    let ticks: Vec<(f64, String)> = [(0.0, "0".to_string())]
        .into_iter()
        .chain((0..=top_power).map(|k| (squash(10f64.powi(k)), power_of_ten(k))))
        .collect();
    let y_max = all().map(|p| p.2).fold(0.0, f64::max);
    let (_, y_high) = nice_range(0.0, y_max);
    let x = Axis { low: 0.0, high: squash(10f64.powi(top_power)), from: LEFT, to: WIDTH - RIGHT };
    let y = Axis { low: 0.0, high: y_high, from: HEIGHT - BOTTOM, to: TOP };
    svg.axes_with(&x, &y, "false downs per 1,000 node-days (log scale)", "detection p99 (s)", &ticks, |v| {
        format!("{v}")
    });
    for (index, ((knob, _), points)) in series.iter().zip(&drawn).enumerate() {
        let colour = COLOURS[index % COLOURS.len()];
        let path: Vec<String> =
            points.iter().map(|&(_, fd, p99)| format!("{:.1},{:.1}", x.at(squash(fd)), y.at(p99))).collect();
        let _ = writeln!(
            svg.body,
            r##"<polyline points="{}" fill="none" stroke="{colour}" stroke-opacity="0.5"/>"##,
            path.join(" ")
        );
        for &(threshold, fd, p99) in points {
            let (cx, cy) = (x.at(squash(fd)), y.at(p99));
            let _ = writeln!(
                svg.body,
                r##"<circle class="point" cx="{cx:.1}" cy="{cy:.1}" r="4" fill="{colour}"><title>{knob} {threshold}: p99 {p99:.3} s, {fd:.1} false downs per 1,000 node-days</title></circle>"##
            );
            let _ = writeln!(
                svg.body,
                r#"<text x="{:.1}" y="{:.1}" font-size="10">{threshold}</text>"#,
                cx + 6.0,
                cy - 6.0
            );
        }
        if series.len() > 1 {
            let (lx, ly) = (WIDTH - RIGHT - 200.0, TOP + 14.0 + 16.0 * index as f64);
            let _ = writeln!(
                svg.body,
                r##"<circle cx="{lx:.1}" cy="{:.1}" r="4" fill="{colour}"/><text x="{:.1}" y="{ly:.1}" font-size="11">{knob}</text>"##,
                ly - 4.0,
                lx + 10.0
            );
        }
    }
    svg.finish()
}

/// `10^k` short enough for a tick label: 1, 10, 100, 1k, 10k, 100k, 1M...
fn power_of_ten(k: i32) -> String {
    let suffixes = [("", 0), ("k", 3), ("M", 6), ("G", 9)];
    let (suffix, power) = suffixes.iter().rev().find(|(_, p)| k >= *p).copied().unwrap_or(("", 0));
    format!("{}{suffix}", 10u64.pow((k - power).clamp(0, 18) as u32))
}

/// A linear map from data values to pixels.
struct Axis {
    low: f64,
    high: f64,
    from: f64,
    to: f64,
}

impl Axis {
    fn at(&self, value: f64) -> f64 {
        self.from + (value - self.low) / (self.high - self.low) * (self.to - self.from)
    }

    /// About five round tick values within the axis.
    fn ticks(&self) -> Vec<f64> {
        let step = nice_step((self.high - self.low) / 5.0);
        let first = (self.low / step).ceil() as i64;
        let last = (self.high / step + 1e-9).floor() as i64;
        (first..=last).map(|i| round(i as f64 * step)).collect()
    }
}

/// A 1, 2 or 5 times a power of ten near `raw`.
fn nice_step(raw: f64) -> f64 {
    if raw <= 0.0 || !raw.is_finite() {
        return 1.0;
    }
    let power = 10f64.powf(raw.log10().floor());
    let mantissa = raw / power;
    let nice = if mantissa <= 1.0 {
        1.0
    } else if mantissa <= 2.0 {
        2.0
    } else if mantissa <= 5.0 {
        5.0
    } else {
        10.0
    };
    nice * power
}

/// `[low, high]` widened to whole ticks.
fn nice_range(low: f64, high: f64) -> (f64, f64) {
    let step = nice_step((high - low).max(1e-9) / 5.0);
    let low = (low / step).floor() * step;
    let high = ((high / step).ceil() * step).max(low + step);
    (round(low), round(high))
}

/// Drops float noise from tick values (0.30000000000000004 prints as 0.3).
fn round(value: f64) -> f64 {
    (value * 1e9).round() / 1e9
}

/// Text for an SVG text node or attribute.
fn escape(text: &str) -> String {
    text.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('"', "&quot;")
}

struct Svg {
    body: String,
}

impl Svg {
    fn new(title: &str) -> Svg {
        let mut body = String::new();
        let _ = writeln!(
            body,
            r#"<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{HEIGHT}" viewBox="0 0 {WIDTH} {HEIGHT}" font-family="sans-serif">"#
        );
        let _ = writeln!(body, r#"<rect width="100%" height="100%" fill="white"/>"#);
        let _ = writeln!(
            body,
            r#"<text x="{}" y="22" font-size="15" text-anchor="middle">{}</text>"#,
            WIDTH / 2.0,
            escape(title)
        );
        Svg { body }
    }

    fn note(&mut self, text: &str) {
        let _ = writeln!(
            self.body,
            r#"<text x="{}" y="{}" font-size="13" text-anchor="middle">{}</text>"#,
            WIDTH / 2.0,
            HEIGHT / 2.0,
            escape(text)
        );
    }

    fn axes(&mut self, x: &Axis, y: &Axis, x_label: &str, y_label: &str, label: impl Fn(f64) -> String) {
        let ticks: Vec<(f64, String)> = x.ticks().into_iter().map(|v| (v, label(v))).collect();
        self.axes_with(x, y, x_label, y_label, &ticks, label);
    }

    /// Both axes with their lines, ticks and labels; the x ticks are given (value, text).
    fn axes_with(
        &mut self,
        x: &Axis,
        y: &Axis,
        x_label: &str,
        y_label: &str,
        x_ticks: &[(f64, String)],
        label: impl Fn(f64) -> String,
    ) {
        let (x0, y0) = (x.from, y.from);
        let b = &mut self.body;
        let _ = writeln!(b, r#"<g class="axes" stroke="black" stroke-width="1">"#);
        let _ = writeln!(b, r#"<line x1="{x0}" y1="{y0}" x2="{}" y2="{y0}"/>"#, x.to);
        let _ = writeln!(b, r#"<line x1="{x0}" y1="{y0}" x2="{x0}" y2="{}"/>"#, y.to);
        for (value, _) in x_ticks {
            let px = x.at(*value);
            let _ =
                writeln!(b, r#"<line class="tick" x1="{px:.1}" y1="{y0}" x2="{px:.1}" y2="{}"/>"#, y0 + 5.0);
        }
        for value in y.ticks() {
            let py = y.at(value);
            let _ =
                writeln!(b, r#"<line class="tick" x1="{}" y1="{py:.1}" x2="{x0}" y2="{py:.1}"/>"#, x0 - 5.0);
        }
        let _ = writeln!(b, "</g>");
        for (value, text) in x_ticks {
            let _ = writeln!(
                b,
                r#"<text x="{:.1}" y="{}" font-size="11" text-anchor="middle">{}</text>"#,
                x.at(*value),
                y0 + 18.0,
                escape(text)
            );
        }
        for value in y.ticks() {
            let _ = writeln!(
                b,
                r#"<text x="{}" y="{:.1}" font-size="11" text-anchor="end">{}</text>"#,
                x0 - 8.0,
                y.at(value) + 4.0,
                escape(&label(value))
            );
        }
        let _ = writeln!(
            b,
            r#"<text x="{}" y="{}" font-size="12" text-anchor="middle">{}</text>"#,
            (x.from + x.to) / 2.0,
            HEIGHT - 12.0,
            escape(x_label)
        );
        let _ = writeln!(
            b,
            r#"<text x="16" y="{}" font-size="12" text-anchor="middle" transform="rotate(-90 16 {})">{}</text>"#,
            (y.from + y.to) / 2.0,
            (y.from + y.to) / 2.0,
            escape(y_label)
        );
    }

    fn finish(mut self) -> String {
        self.body.push_str("</svg>\n");
        self.body
    }
}
