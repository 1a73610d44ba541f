//! Charts of the status page, drawn on the server as inline SVG.
//!
//! Why this file exists: the page's Content-Security-Policy allows no inline script and no
//! inline style, and the page loads nothing from elsewhere; so a chart is markup the server
//! writes, not a JavaScript library's drawing. Every colour comes from a class the page's
//! style sheet (`/status.css`) defines; every label is escaped. One function, pure: a
//! [`Chart`] (series of one value per minute, oldest first) in, an `<svg>` element out.
//! A missing value (`None`, or not a finite number) is a gap in a line (no reply latency
//! that minute is not a latency of zero) and an empty slot among bars.

use std::fmt::Write as _;

use super::html::escape;

/// The drawing's size in its own units (the style sheet scales it to the page).
pub const WIDTH: f64 = 560.0;
/// See [`WIDTH`].
pub const HEIGHT: f64 = 210.0;
/// Room left of the plot for the y tick labels.
const LEFT: f64 = 58.0;
/// Room right of the plot.
const RIGHT: f64 = 12.0;
/// Room above the plot for the chart's heading.
const TOP: f64 = 30.0;
/// Room below the plot for the minute labels and the legend.
const BOTTOM: f64 = 48.0;
/// Spaces between minute labels on the x axis (labels at 5 places: -60m … now).
const X_LABEL_STEPS: usize = 4;
/// Room one legend entry takes per character of its name, and around it.
const LEGEND_CHAR: f64 = 6.5;
/// See [`LEGEND_CHAR`].
const LEGEND_PAD: f64 = 26.0;
/// Radius of the dot drawn for a value with no neighbour (a line of one point is invisible).
const DOT_RADIUS: f64 = 2.5;
/// The nice steps a y axis maximum is rounded up to (times a power of ten).
const NICE_STEPS: [f64; 4] = [1.0, 2.0, 5.0, 10.0];
/// Seconds in a minute, for the y labels of durations.
const SECS_PER_MIN: f64 = 60.0;

/// What the values measure (how the y axis is labelled).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Unit {
    /// A number of things (a minute's messages, restarts).
    Count,
    /// A duration in seconds (labelled ms, s or min).
    Seconds,
}

/// How the series are drawn.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Style {
    /// One line per series, broken where a value is missing.
    Lines,
    /// One bar per minute, the series stacked in order.
    StackedBars,
}

/// One series: a name for the legend, a class for its colour, a value per minute.
#[derive(Clone, Debug, PartialEq)]
pub struct Series {
    /// Its name in the legend (escaped when drawn).
    pub name: String,
    /// The style sheet class that colours it (`series-<class>`).
    pub class: String,
    /// One value per minute, oldest first.
    pub values: Vec<Option<f64>>,
}

/// One chart.
#[derive(Clone, Debug, PartialEq)]
pub struct Chart {
    /// The `data-chart` attribute (what a test or a script finds it by).
    pub key: String,
    /// Its heading (also its accessible `<title>`).
    pub title: String,
    /// What the values measure.
    pub unit: Unit,
    /// Lines or bars.
    pub style: Style,
    /// How many minutes the x axis spans (the series have this many values).
    pub minutes: usize,
    /// The series.
    pub series: Vec<Series>,
}

/// A value that can be drawn.
fn finite(value: Option<f64>) -> Option<f64> {
    value.filter(|v| v.is_finite())
}

/// The smallest "nice" number (1, 2 or 5 times a power of ten) at least `max`; 1 when
/// there is nothing above zero.
pub fn nice_ceiling(max: f64) -> f64 {
    if !max.is_finite() || max <= 0.0 {
        return 1.0;
    }
    let power = 10f64.powf(max.log10().floor());
    NICE_STEPS
        .iter()
        .map(|step| step * power)
        .find(|nice| *nice >= max * (1.0 - 1e-9))
        .unwrap_or(10.0 * power)
}

/// A number with at most one decimal, without a trailing `.0`.
fn short(value: f64) -> String {
    let text = format!("{value:.1}");
    text.strip_suffix(".0").map(str::to_owned).unwrap_or(text)
}

/// The label of a y value.
pub fn label(unit: Unit, value: f64) -> String {
    match unit {
        Unit::Count => short(value),
        Unit::Seconds if value == 0.0 => "0".to_owned(),
        Unit::Seconds if value < 1.0 => format!("{} ms", (value * 1_000.0).round()),
        Unit::Seconds if value < SECS_PER_MIN => format!("{} s", short(value)),
        Unit::Seconds => format!("{} min", short(value / SECS_PER_MIN)),
    }
}

/// The label of the x axis at `boundary` (0 = the start of the oldest minute).
fn minute_label(minutes: usize, boundary: usize) -> String {
    match minutes - boundary {
        0 => "now".to_owned(),
        ago => format!("-{ago}m"),
    }
}

/// The top of the y axis: the largest value (stacked, for bars), made nice.
fn y_max(chart: &Chart) -> f64 {
    let max = match chart.style {
        Style::Lines => chart
            .series
            .iter()
            .flat_map(|s| s.values.iter().copied().filter_map(finite))
            .fold(0.0, f64::max),
        Style::StackedBars => (0..chart.minutes)
            .map(|i| {
                chart
                    .series
                    .iter()
                    .filter_map(|s| finite(s.values.get(i).copied().flatten()))
                    .filter(|v| *v > 0.0)
                    .sum::<f64>()
            })
            .fold(0.0, f64::max),
    };
    nice_ceiling(max)
}

/// Whether any series has a value to draw.
fn has_data(chart: &Chart) -> bool {
    chart.series.iter().any(|s| {
        s.values
            .iter()
            .take(chart.minutes)
            .any(|v| finite(*v).is_some())
    })
}

/// The chart as an `<svg class="chart" data-chart="...">` element.
pub fn render(chart: &Chart) -> String {
    let plot_w = WIDTH - LEFT - RIGHT;
    let plot_h = HEIGHT - TOP - BOTTOM;
    let bottom = TOP + plot_h;
    let slots = chart.minutes.max(1);
    let slot_w = plot_w / slots as f64;
    let top = y_max(chart);
    let y = |value: f64| bottom - (value.clamp(0.0, top) / top) * plot_h;
    let x = |slot: usize| LEFT + (slot as f64 + 0.5) * slot_w;
    let key = escape(&chart.key);
    let title = escape(&chart.title);
    let mut out = String::new();
    let _ = write!(
        out,
        "<svg class=\"chart\" data-chart=\"{key}\" viewBox=\"0 0 {WIDTH} {HEIGHT}\" \
         role=\"img\" aria-labelledby=\"chart-{key}-title\">\
         <title id=\"chart-{key}-title\">{title} (last {} minutes)</title>\
         <text class=\"chart-title\" x=\"{LEFT}\" y=\"18\">{title}</text>",
        chart.minutes
    );

    // The y axis: grid lines with their labels at 0, half and the top.
    for tick in [0.0, top / 2.0, top] {
        if chart.unit == Unit::Count && tick.fract() != 0.0 {
            continue;
        }
        let at = y(tick);
        let _ = write!(
            out,
            "<line class=\"grid\" x1=\"{LEFT}\" y1=\"{at:.1}\" x2=\"{:.1}\" y2=\"{at:.1}\"/>\
             <text class=\"tick\" x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"end\">{}</text>",
            LEFT + plot_w,
            LEFT - 6.0,
            at + 4.0,
            escape(&label(chart.unit, tick))
        );
    }
    // The x axis: minute labels at the slot boundaries.
    let _ = write!(
        out,
        "<line class=\"axis\" x1=\"{LEFT}\" y1=\"{bottom:.1}\" x2=\"{:.1}\" y2=\"{bottom:.1}\"/>",
        LEFT + plot_w
    );
    for step in 0..=X_LABEL_STEPS {
        let boundary = chart.minutes * step / X_LABEL_STEPS;
        let at = LEFT + boundary as f64 * slot_w;
        let anchor = match step {
            0 => "start",
            X_LABEL_STEPS => "end",
            _ => "middle",
        };
        let _ = write!(
            out,
            "<text class=\"tick\" x=\"{at:.1}\" y=\"{:.1}\" text-anchor=\"{anchor}\">{}</text>",
            bottom + 16.0,
            escape(&minute_label(chart.minutes, boundary))
        );
    }

    if has_data(chart) {
        match chart.style {
            Style::Lines => lines(&mut out, chart, &x, &y),
            Style::StackedBars => bars(&mut out, chart, slot_w, &x, &y),
        }
    } else {
        let _ = write!(
            out,
            "<text class=\"nodata\" x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"middle\">no data yet</text>",
            LEFT + plot_w / 2.0,
            TOP + plot_h / 2.0
        );
    }
    legend(&mut out, chart, bottom + 36.0);
    out.push_str("</svg>");
    out
}

/// One `<path>` per series (a move at each gap), a dot for each lone value.
fn lines(out: &mut String, chart: &Chart, x: &dyn Fn(usize) -> f64, y: &dyn Fn(f64) -> f64) {
    for series in &chart.series {
        let class = escape(&series.class);
        let values: Vec<Option<f64>> = (0..chart.minutes)
            .map(|i| finite(series.values.get(i).copied().flatten()))
            .collect();
        let mut d = String::new();
        let mut dots = String::new();
        for (i, value) in values.iter().enumerate() {
            let Some(value) = value else { continue };
            let joined = i > 0 && values[i - 1].is_some();
            let _ = write!(
                d,
                "{}{:.1} {:.1}",
                if joined { " L" } else { " M" },
                x(i),
                y(*value)
            );
            let lone = !joined && values.get(i + 1).copied().flatten().is_none();
            if lone {
                let _ = write!(
                    dots,
                    "<circle class=\"dot series-{class}\" cx=\"{:.1}\" cy=\"{:.1}\" r=\"{DOT_RADIUS}\"/>",
                    x(i),
                    y(*value)
                );
            }
        }
        if !d.is_empty() {
            let _ = write!(
                out,
                "<path class=\"line series-{class}\" d=\"{}\"/>",
                d.trim_start()
            );
        }
        out.push_str(&dots);
    }
}

/// One `<rect>` per series and minute with a value above zero, stacked.
fn bars(
    out: &mut String,
    chart: &Chart,
    slot_w: f64,
    x: &dyn Fn(usize) -> f64,
    y: &dyn Fn(f64) -> f64,
) {
    let bar_w = (slot_w * 0.8).max(1.0);
    for i in 0..chart.minutes {
        let mut base = 0.0;
        for series in &chart.series {
            let Some(value) = finite(series.values.get(i).copied().flatten()) else {
                continue;
            };
            if value <= 0.0 {
                continue;
            }
            let (low, high) = (y(base), y(base + value));
            base += value;
            let _ = write!(
                out,
                "<rect class=\"bar series-{}\" x=\"{:.1}\" y=\"{high:.1}\" width=\"{bar_w:.1}\" \
                 height=\"{:.1}\"><title>{}: {}</title></rect>",
                escape(&series.class),
                x(i) - bar_w / 2.0,
                (low - high).max(0.5),
                escape(&series.name),
                escape(&label(chart.unit, value))
            );
        }
    }
}

/// A swatch and a name per series, in a row under the chart.
fn legend(out: &mut String, chart: &Chart, baseline: f64) {
    let mut at = LEFT;
    for series in &chart.series {
        let _ = write!(
            out,
            "<rect class=\"swatch series-{}\" x=\"{at:.1}\" y=\"{:.1}\" width=\"12\" height=\"8\"/>\
             <text class=\"legend\" x=\"{:.1}\" y=\"{baseline:.1}\">{}</text>",
            escape(&series.class),
            baseline - 8.0,
            at + 16.0,
            escape(&series.name)
        );
        at += LEGEND_PAD + series.name.chars().count() as f64 * LEGEND_CHAR;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chart(style: Style, unit: Unit, series: Vec<(&str, Vec<Option<f64>>)>) -> Chart {
        Chart {
            key: "test".into(),
            title: "Test <chart>".into(),
            unit,
            style,
            minutes: 60,
            series: series
                .into_iter()
                .enumerate()
                .map(|(i, (name, values))| Series {
                    name: name.into(),
                    class: format!("c{i}"),
                    values,
                })
                .collect(),
        }
    }

    fn zeros() -> Vec<Option<f64>> {
        vec![Some(0.0); 60]
    }

    fn spike(at: usize, value: f64) -> Vec<Option<f64>> {
        let mut v = zeros();
        v[at] = Some(value);
        v
    }

    #[test]
    fn nice_ceilings_and_labels() {
        // (max, nice)
        let ceilings = [
            (0.0, 1.0),
            (-3.0, 1.0),
            (f64::NAN, 1.0),
            (0.3, 0.5),
            (1.0, 1.0),
            (3.0, 5.0),
            (7.0, 10.0),
            (12.0, 20.0),
            (250.0, 500.0),
        ];
        for (max, nice) in ceilings {
            assert!((nice_ceiling(max) - nice).abs() < 1e-9, "{max} → {nice}");
        }
        // (unit, value, label)
        let labels = [
            (Unit::Count, 0.0, "0"),
            (Unit::Count, 2.5, "2.5"),
            (Unit::Count, 10.0, "10"),
            (Unit::Seconds, 0.0, "0"),
            (Unit::Seconds, 0.25, "250 ms"),
            (Unit::Seconds, 2.0, "2 s"),
            (Unit::Seconds, 1.5, "1.5 s"),
            (Unit::Seconds, 120.0, "2 min"),
        ];
        for (unit, value, want) in labels {
            assert_eq!(label(unit, value), want);
        }
    }

    #[test]
    fn table_of_series_shapes() {
        // (name, chart, wanted in the svg, not wanted)
        let table: Vec<(&str, Chart, Vec<&str>, Vec<&str>)> = vec![
            (
                "no series",
                chart(Style::Lines, Unit::Seconds, vec![]),
                vec!["no data yet", ">-60m<", ">now<"],
                vec!["<path", "<rect class=\"bar"],
            ),
            (
                "empty values",
                chart(Style::StackedBars, Unit::Count, vec![("a", vec![])]),
                vec!["no data yet", "series-c0"],
                vec!["<rect class=\"bar"],
            ),
            (
                "all absent latency",
                chart(Style::Lines, Unit::Seconds, vec![("p50", vec![None; 60])]),
                vec!["no data yet"],
                vec!["<path"],
            ),
            (
                "all zeros",
                chart(Style::StackedBars, Unit::Count, vec![("a", zeros())]),
                vec![">0</text>", ">1</text>"],
                vec!["no data yet", "<rect class=\"bar", ">0.5<"],
            ),
            (
                "one spike of 7",
                chart(Style::StackedBars, Unit::Count, vec![("a", spike(30, 7.0))]),
                vec![">10</text>", ">5</text>", "<title>a: 7</title>"],
                vec!["no data yet"],
            ),
            (
                "NaN is absent",
                chart(
                    Style::Lines,
                    Unit::Seconds,
                    vec![("p99", vec![Some(f64::NAN); 60])],
                ),
                vec!["no data yet"],
                vec!["<path", "NaN"],
            ),
        ];
        for (name, chart, wanted, unwanted) in table {
            let svg = render(&chart);
            assert!(
                svg.starts_with("<svg class=\"chart\" data-chart=\"test\""),
                "{name}"
            );
            assert!(svg.ends_with("</svg>"), "{name}");
            assert!(
                svg.contains(
                    "<title id=\"chart-test-title\">Test &lt;chart&gt; (last 60 minutes)</title>"
                ),
                "{name}: {svg}"
            );
            for want in wanted {
                assert!(svg.contains(want), "{name}: no {want} in {svg}");
            }
            for not in unwanted {
                assert!(!svg.contains(not), "{name}: {not} in {svg}");
            }
            assert!(!svg.contains("style=") && !svg.contains("//"), "{name}");
        }
    }

    #[test]
    fn a_spike_reaches_the_top_and_zero_sits_on_the_axis() {
        let svg = render(&chart(
            Style::StackedBars,
            Unit::Count,
            vec![("a", spike(59, 10.0))],
        ));
        // The top of the plot is TOP; a bar of the full scale starts there.
        assert!(svg.contains(&format!(" y=\"{TOP:.1}\" width=")), "{svg}");
        assert_eq!(svg.matches("<rect class=\"bar").count(), 1);
    }

    #[test]
    fn stacked_bars_stack() {
        let svg = render(&chart(
            Style::StackedBars,
            Unit::Count,
            vec![("replied", spike(0, 3.0)), ("failed", spike(0, 2.0))],
        ));
        // 3 + 2 = 5: the top of the scale is 5, the failed bar ends at the top.
        assert!(svg.contains(">5</text>"), "{svg}");
        assert_eq!(svg.matches("<rect class=\"bar").count(), 2);
        let failed = &svg[svg.find("bar series-c1").expect("a failed bar")..];
        let failed = &failed[..failed.find("width=").expect("a width")];
        assert!(failed.contains(&format!(" y=\"{TOP:.1}\" ")), "{failed}");
    }

    #[test]
    fn missing_latency_breaks_the_line_and_lone_points_get_a_dot() {
        let mut values = vec![None; 60];
        values[10] = Some(0.5);
        values[11] = Some(0.7);
        values[20] = Some(0.6);
        values[40] = Some(0.2);
        values[41] = Some(0.3);
        values[42] = Some(f64::INFINITY);
        let svg = render(&chart(Style::Lines, Unit::Seconds, vec![("p50", values)]));
        let path_at = svg
            .find("<path class=\"line series-c0\" d=\"")
            .expect("a path");
        let d = &svg[path_at
            ..svg[path_at..]
                .find("\"/>")
                .map_or(svg.len(), |e| path_at + e)];
        assert_eq!(d.matches('M').count(), 3, "three runs: {d}");
        assert_eq!(d.matches('L').count(), 2, "two joined points: {d}");
        assert_eq!(svg.matches("<circle").count(), 1, "minute 20 stands alone");
        assert!(svg.contains(">1 s</text>") && svg.contains(">500 ms</text>"));
    }

    #[test]
    fn legend_names_are_escaped() {
        let svg = render(&chart(
            Style::Lines,
            Unit::Seconds,
            vec![("<agent \"x\">", spike(3, 1.0))],
        ));
        assert!(svg.contains(">&lt;agent &quot;x&quot;&gt;</text>"), "{svg}");
        assert!(!svg.contains("<agent"));
    }
}
