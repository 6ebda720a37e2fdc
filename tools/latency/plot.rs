//! A percentile plot of `.hgrm` files, as SVG written by hand: latency (log scale) over
//! percentile, with the x axis spread as HdrHistogram's plotter does (`1/(1-q)` on a log
//! scale, so 90%, 99%, 99.9% ... are evenly spaced).

use std::fmt::Write as _;

/// One line of the plot: a label and its `(quantile, value in us)` points.
#[derive(Debug)]
pub struct Series {
    pub label: String,
    pub points: Vec<(f64, f64)>,
}

/// Reads the rows of an `.hgrm` text (`Value Percentile TotalCount 1/(1-Percentile)`).
pub fn parse_hgrm(label: &str, text: &str) -> Result<Series, String> {
    let mut points = Vec::new();
    for line in text.lines() {
        let mut cols = line.split_whitespace();
        let (Some(v), Some(q)) = (cols.next(), cols.next()) else {
            continue;
        };
        if let (Ok(v), Ok(q)) = (v.parse::<f64>(), q.parse::<f64>()) {
            points.push((q, v));
        }
    }
    if points.is_empty() {
        return Err(format!(
            "{label}: no percentile rows (is it an .hgrm file?)"
        ));
    }
    Ok(Series {
        label: label.to_string(),
        points,
    })
}

const W: f64 = 760.0;
const H: f64 = 440.0;
const LEFT: f64 = 70.0;
const RIGHT: f64 = 45.0;
const TOP: f64 = 40.0;
const BOTTOM: f64 = 50.0;
/// Nines shown on the x axis: 0% .. 99.9999%.
const MAX_NINES: f64 = 6.0;
const COLORS: [&str; 6] = [
    "#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b",
];

fn x_of(q: f64) -> f64 {
    let nines = if q >= 1.0 {
        MAX_NINES
    } else {
        (1.0 / (1.0 - q)).log10().min(MAX_NINES)
    };
    LEFT + nines / MAX_NINES * (W - LEFT - RIGHT)
}

/// The SVG document for `series` under `title`.
pub fn svg(title: &str, series: &[Series]) -> String {
    let values = series.iter().flat_map(|s| s.points.iter().map(|p| p.1));
    let (lo, hi) = values.fold((f64::MAX, f64::MIN), |(lo, hi), v| {
        (lo.min(v.max(1e-3)), hi.max(v))
    });
    let (lo_e, hi_e) = (
        lo.log10().floor(),
        hi.log10().ceil().max(lo.log10().floor() + 1.0),
    );
    let y_of = |v: f64| {
        let t = (v.max(1e-3).log10() - lo_e) / (hi_e - lo_e);
        H - BOTTOM - t * (H - TOP - BOTTOM)
    };
    let mut s = String::new();
    let _ = writeln!(
        s,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{W}" height="{H}" font-family="sans-serif" font-size="12">"#
    );
    let _ = writeln!(s, r#"<rect width="{W}" height="{H}" fill="white"/>"#);
    let _ = writeln!(
        s,
        r#"<text x="{}" y="22" text-anchor="middle" font-size="14">{}</text>"#,
        W / 2.0,
        escape(title)
    );
    // Grid and axes.
    for n in 0..=MAX_NINES as u32 {
        let x = LEFT + f64::from(n) / MAX_NINES * (W - LEFT - RIGHT);
        let label = match n {
            0 => "0%".to_string(),
            n => format!("{}%", 100.0 - 100.0 / 10f64.powi(n as i32)),
        };
        let _ = writeln!(
            s,
            r##"<line x1="{x:.1}" y1="{TOP}" x2="{x:.1}" y2="{}" stroke="#ddd"/><text x="{x:.1}" y="{}" text-anchor="middle">{label}</text>"##,
            H - BOTTOM,
            H - BOTTOM + 18.0
        );
    }
    let mut e = lo_e;
    while e <= hi_e {
        let y = y_of(10f64.powf(e));
        let label = format_us(10f64.powf(e));
        let _ = writeln!(
            s,
            r##"<line x1="{LEFT}" y1="{y:.1}" x2="{}" y2="{y:.1}" stroke="#ddd"/><text x="{}" y="{:.1}" text-anchor="end">{label}</text>"##,
            W - RIGHT,
            LEFT - 6.0,
            y + 4.0
        );
        e += 1.0;
    }
    let _ = writeln!(
        s,
        r#"<text x="{}" y="{}" text-anchor="middle">percentile</text>"#,
        (LEFT + W - RIGHT) / 2.0,
        H - 12.0
    );
    let _ = writeln!(
        s,
        r#"<text x="16" y="{}" text-anchor="middle" transform="rotate(-90 16 {})">round-trip latency</text>"#,
        H / 2.0,
        H / 2.0
    );
    // One polyline per series, and its legend entry.
    for (i, ser) in series.iter().enumerate() {
        let color = COLORS[i % COLORS.len()];
        let pts: Vec<String> = ser
            .points
            .iter()
            .map(|&(q, v)| format!("{:.1},{:.1}", x_of(q), y_of(v)))
            .collect();
        let _ = writeln!(
            s,
            r#"<polyline fill="none" stroke="{color}" stroke-width="2" points="{}"/>"#,
            pts.join(" ")
        );
        let ly = TOP + 8.0 + 18.0 * i as f64;
        let _ = writeln!(
            s,
            r#"<line x1="{}" y1="{ly}" x2="{}" y2="{ly}" stroke="{color}" stroke-width="3"/><text x="{}" y="{}">{}</text>"#,
            LEFT + 10.0,
            LEFT + 30.0,
            LEFT + 36.0,
            ly + 4.0,
            escape(&ser.label)
        );
    }
    s.push_str("</svg>\n");
    s
}

fn format_us(us: f64) -> String {
    if us >= 1e6 {
        format!("{} s", us / 1e6)
    } else if us >= 1e3 {
        format!("{} ms", us / 1e3)
    } else if us >= 1.0 {
        format!("{us} us")
    } else {
        format!("{} ns", us * 1e3)
    }
}

fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}
