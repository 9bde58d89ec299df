//! The per-step timing chart: inline SVG, one bar per step of a run (`load`, `compile`,
//! `plan`, `commit`…), or two side by side per step when two runs are compared. No
//! JavaScript: each bar's exact figures are in its `<title>`, shown on hover.

use maud::{Markup, html};
use strata_transport::wire::StepTime;

/// The chart's width, in CSS pixels.
const WIDTH: u64 = 720;
/// Left of the bars: the step's name.
const LABEL: u64 = 150;
/// Right of the longest bar: its figure.
const FIGURE: u64 = 110;
/// One bar's height, and the gap between steps.
const BAR: u64 = 14;
const GAP: u64 = 8;
/// The runs' colours, in the order given.
const COLOURS: [&str; 2] = ["#0a58ca", "#b8860b"];

/// One run in a chart: its id and its steps.
#[derive(Debug, Clone, Copy)]
pub struct Series<'a> {
    /// The run's id.
    pub run: i64,
    /// Its steps, in order.
    pub steps: &'a [StepTime],
}

/// `1.25 s`, `830 ms`, `42 µs`.
pub fn duration(us: u64) -> String {
    match us {
        0..1000 => format!("{us} µs"),
        1000..1_000_000 => format!("{:.0} ms", us as f64 / 1e3),
        _ => format!("{:.2} s", us as f64 / 1e6),
    }
}

/// `512 MiB`.
pub fn mib(bytes: u64) -> String {
    format!("{} MiB", bytes >> 20)
}

/// The steps' names in the order they first appear across the runs.
fn names<'a>(series: &[Series<'a>]) -> Vec<&'a str> {
    let mut out: Vec<&str> = Vec::new();
    for s in series {
        for step in s.steps {
            if !out.contains(&step.name.as_str()) {
                out.push(&step.name);
            }
        }
    }
    out
}

/// The chart of one run, or of two side by side; nothing when no run has steps (a
/// report from an agent older than steps in reports).
pub fn chart(series: &[Series<'_>]) -> Markup {
    let names = names(series);
    if names.is_empty() {
        return html! { p.nosteps { "This run's report carries no step timings." } };
    }
    let max = series
        .iter()
        .flat_map(|s| s.steps)
        .map(|s| s.wall_us)
        .max()
        .unwrap_or(0)
        .max(1);
    let per_step = BAR * series.len() as u64 + GAP;
    let legend = if series.len() > 1 { 20 } else { 0 };
    let height = legend + per_step * names.len() as u64 + GAP;
    let span = WIDTH - LABEL - FIGURE;
    html! {
        svg.steps xmlns="http://www.w3.org/2000/svg" width=(WIDTH) height=(height)
            viewBox={ "0 0 " (WIDTH) " " (height) } role="img"
            aria-label="time per step" {
            @if series.len() > 1 {
                @for (i, s) in series.iter().enumerate() {
                    rect x=(LABEL + i as u64 * 120) y="4" width="10" height="10"
                        fill=(COLOURS[i % 2]) {}
                    text x=(LABEL + 14 + i as u64 * 120) y="13" font-size="12" {
                        "run " (s.run)
                    }
                }
            }
            @for (row, name) in names.iter().enumerate() {
                @let top = legend + GAP + row as u64 * per_step;
                text x=(LABEL - 6) y=(top + BAR - 3) font-size="12" text-anchor="end" {
                    (name)
                }
                @for (i, s) in series.iter().enumerate() {
                    @if let Some(step) = s.steps.iter().find(|st| st.name == *name) {
                        @let y = top + i as u64 * BAR;
                        @let w = bar_width(span, step.wall_us, max);
                        rect.bar x=(LABEL) y=(y) width=(w) height=(BAR - 2)
                            fill=(COLOURS[i % 2]) data-step=(name) data-run=(s.run)
                            data-wall-us=(step.wall_us) {
                            title { "run " (s.run) ", " (name) ": " (duration(step.wall_us))
                                ", peak RSS " (mib(step.max_rss)) }
                        }
                        text x=(LABEL + w + 4) y=(y + BAR - 3) font-size="11" {
                            (duration(step.wall_us))
                        }
                    }
                }
            }
        }
    }
}

/// A bar's width: `wall` of `max` over `span` pixels, at least 1 (whatever a node sent).
fn bar_width(span: u64, wall: u64, max: u64) -> u64 {
    let w = (u128::from(span) * u128::from(wall.min(max))).div_ceil(u128::from(max.max(1)));
    u64::try_from(w).unwrap_or(span).max(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn step(name: &str, wall_us: u64) -> StepTime {
        StepTime {
            name: name.into(),
            wall_us,
            max_rss: 64 << 20,
        }
    }

    #[test]
    fn one_bar_per_step_and_per_run_compared() {
        let a = [step("load", 2000), step("compile", 1_500_000)];
        let b = [step("load", 500), step("plan", 10), step("<commit>", 0)];
        let one = chart(&[Series { run: 1, steps: &a }]).into_string();
        assert_eq!(one.matches("<rect class=\"bar\"").count(), 2, "{one}");
        assert!(one.contains("1.50 s") && one.contains("2 ms"), "{one}");
        let two =
            chart(&[Series { run: 1, steps: &a }, Series { run: 2, steps: &b }]).into_string();
        assert_eq!(two.matches("<rect class=\"bar\"").count(), 5, "{two}");
        assert!(two.contains("data-run=\"2\" data-wall-us=\"0\""), "{two}");
        assert!(
            two.contains("&lt;commit&gt;") && !two.contains("<commit>"),
            "{two}"
        );
        // The longest bar spans the chart; the others in proportion, never 0 wide.
        assert!(
            two.contains(&format!("width=\"{}\"", WIDTH - LABEL - FIGURE)),
            "{two}"
        );
        assert_eq!(bar_width(400, u64::MAX, u64::MAX), 400);
        assert_eq!(bar_width(400, 0, u64::MAX), 1);
        assert!(
            chart(&[Series { run: 1, steps: &[] }])
                .into_string()
                .contains("no step timings")
        );
    }
}
