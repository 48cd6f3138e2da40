//! The status page's small charts: one inline SVG polyline per series,
//! drawn on the server from the history ring (`status::history`), with
//! the least of axes a person needs (the largest value and the span of
//! time), so the page stays one self-contained document: no script, no
//! library, nothing fetched.

use std::fmt::Write as _;
use std::time::Duration;

use super::escape;

const WIDTH: f64 = 300.0;
const HEIGHT: f64 = 80.0;
/// Room above the line for the label of the largest value, and below it
/// for the time axis.
const TOP: f64 = 4.0;
const BOTTOM: f64 = 66.0;

/// A value with its unit, short: "1.2k/s", "850/s", "0.4/s", "12 ms".
pub type Format = fn(f64) -> String;

/// One chart: `points` are (seconds ago, value), oldest first; the x axis
/// spans the last `span`, now on the right.
pub fn render(
    html: &mut String,
    title: &str,
    points: &[(f64, f64)],
    span: Duration,
    format: Format,
) {
    let span_s = span.as_secs_f64().max(1.0);
    let shown: Vec<(f64, f64)> = points
        .iter()
        .copied()
        .filter(|&(ago, value)| ago <= span_s && value.is_finite())
        .collect();
    let max = shown.iter().map(|&(_, v)| v).fold(0.0_f64, f64::max);
    let last = shown.last().map(|&(_, v)| v);
    let _ = write!(
        html,
        "<figure class=\"chart\"><figcaption>{}<span>{}</span></figcaption>\
         <svg viewBox=\"0 0 {WIDTH} {HEIGHT}\" width=\"{WIDTH}\" height=\"{HEIGHT}\" role=\"img\" \
         aria-label=\"{}\" xmlns=\"http://www.w3.org/2000/svg\">",
        escape(title),
        last.map_or_else(String::new, |v| format!("now {}", escape(&format(v)))),
        escape(title),
    );
    // The frame: the largest value's line at the top, zero at the bottom.
    let _ = write!(
        html,
        "<line x1=\"0\" y1=\"{TOP}\" x2=\"{WIDTH}\" y2=\"{TOP}\" class=\"grid\"/>\
         <line x1=\"0\" y1=\"{BOTTOM}\" x2=\"{WIDTH}\" y2=\"{BOTTOM}\" class=\"axis\"/>\
         <text x=\"2\" y=\"{}\" class=\"max\">max {}</text>\
         <text x=\"0\" y=\"{}\">{} ago</text>\
         <text x=\"{WIDTH}\" y=\"{}\" text-anchor=\"end\">now</text>",
        TOP + 10.0,
        escape(&format(max)),
        HEIGHT - 2.0,
        escape(&span_label(span)),
        HEIGHT - 2.0,
    );
    if shown.len() < 2 {
        let _ = write!(
            html,
            "<text x=\"{}\" y=\"{}\" text-anchor=\"middle\" class=\"empty\">collecting: a point every few seconds</text>",
            WIDTH / 2.0,
            (TOP + BOTTOM) / 2.0 + 4.0
        );
    } else {
        html.push_str("<polyline points=\"");
        for (i, &(ago, value)) in shown.iter().enumerate() {
            let (x, y) = position(ago, value, span_s, max);
            let _ = write!(html, "{}{x:.1},{y:.1}", if i > 0 { " " } else { "" });
        }
        html.push_str("\"/>");
    }
    html.push_str("</svg></figure>");
}

/// Where (seconds `ago`, `value`) goes in the chart.
pub fn position(ago: f64, value: f64, span_s: f64, max: f64) -> (f64, f64) {
    let x = WIDTH * (1.0 - (ago / span_s).clamp(0.0, 1.0));
    let share = if max > 0.0 {
        (value / max).clamp(0.0, 1.0)
    } else {
        0.0
    };
    (x, BOTTOM - share * (BOTTOM - TOP))
}

fn span_label(span: Duration) -> String {
    let s = span.as_secs();
    if s >= 60 && s.is_multiple_of(60) {
        format!("{} min", s / 60)
    } else {
        format!("{s} s")
    }
}

/// A rate: "1.2M/s", "3.4k/s", "850/s", "2.5/s", "0/s".
pub fn per_second(v: f64) -> String {
    format!("{}/s", short(v))
}

/// A number, short: "1.2M", "3.4k", "850", "2.5", "0.04".
pub fn short(v: f64) -> String {
    let a = v.abs();
    if a >= 1e6 {
        format!("{:.1}M", v / 1e6)
    } else if a >= 1e4 {
        format!("{:.0}k", v / 1e3)
    } else if a >= 1e3 {
        format!("{:.1}k", v / 1e3)
    } else if a >= 10.0 || a == 0.0 {
        format!("{v:.0}")
    } else if a >= 0.1 {
        format!("{v:.1}")
    } else {
        format!("{v:.2}")
    }
}

/// Seconds as a duration: "3.2 s", "850 ms", "1.5 ms".
pub fn seconds(v: f64) -> String {
    if v >= 1.0 {
        format!("{v:.1} s")
    } else if v >= 0.01 {
        format!("{:.0} ms", v * 1000.0)
    } else {
        format!("{:.1} ms", v * 1000.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn points_are_placed_by_age_and_share_of_the_largest() {
        assert_eq!(position(0.0, 10.0, 900.0, 10.0), (WIDTH, TOP));
        assert_eq!(position(900.0, 0.0, 900.0, 10.0), (0.0, BOTTOM));
        let (x, y) = position(450.0, 5.0, 900.0, 10.0);
        assert_eq!(x, WIDTH / 2.0);
        assert_eq!(y, (TOP + BOTTOM) / 2.0);
        // All zero: a line along the bottom, not a division by zero.
        assert_eq!(position(0.0, 0.0, 900.0, 0.0).1, BOTTOM);
    }

    #[test]
    fn a_chart_is_a_polyline_with_its_largest_value_and_span() {
        let mut html = String::new();
        let points = [(900.0, 1.0), (10.0, 2500.0), (5.0, 1000.0), (2000.0, 9e9)];
        render(
            &mut html,
            "folds <per> second",
            &points,
            Duration::from_secs(900),
            per_second,
        );
        assert!(html.starts_with("<figure"), "{html}");
        assert!(html.contains("<svg"), "{html}");
        assert!(html.contains("folds &lt;per&gt; second"), "{html}");
        assert!(
            html.contains("max 2.5k/s"),
            "the point older than the span is left out: {html}"
        );
        assert!(html.contains("now 1.0k/s"), "{html}");
        assert!(html.contains("15 min ago"), "{html}");
        let polyline = html
            .split_once("<polyline points=\"")
            .and_then(|(_, rest)| rest.split_once('"'))
            .map(|(points, _)| points)
            .expect("a polyline");
        assert_eq!(polyline.split(' ').count(), 3, "{polyline}");
        let mut empty = String::new();
        render(
            &mut empty,
            "skips",
            &[(0.0, 1.0)],
            Duration::from_secs(900),
            per_second,
        );
        assert!(empty.contains("collecting"), "{empty}");
        assert!(!empty.contains("<polyline"), "{empty}");
    }

    #[test]
    fn numbers_are_short() {
        assert_eq!(short(0.0), "0");
        assert_eq!(short(0.04), "0.04");
        assert_eq!(short(2.5), "2.5");
        assert_eq!(short(850.0), "850");
        assert_eq!(short(3400.0), "3.4k");
        assert_eq!(short(25_000.0), "25k");
        assert_eq!(short(1_200_000.0), "1.2M");
        assert_eq!(seconds(0.0015), "1.5 ms");
        assert_eq!(seconds(0.85), "850 ms");
        assert_eq!(seconds(3.21), "3.2 s");
    }
}
