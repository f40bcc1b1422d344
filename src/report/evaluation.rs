//! A self-contained HTML page of an evaluation's summary: the table of each method's metrics
//! beside the random baseline's, and inline SVG curves of comprehensiveness and sufficiency
//! against k. No script, no external resource.

use maud::{html as markup, Markup, PreEscaped, DOCTYPE};

use super::clean;
use crate::evaluate::summary::RANDOM;
use crate::evaluate::{EvaluateOptions, Spread, Summary, SummaryRow};

/// Line colours of the methods, in order (Okabe–Ito, told apart with colour-blindness); the
/// random baseline is grey and dashed.
const COLOURS: [&str; 5] = ["#0072B2", "#D55E00", "#009E73", "#CC79A7", "#E69F00"];
const RANDOM_COLOUR: &str = "#777777";

pub fn html(title: &str, options: &EvaluateOptions, summary: &Summary) -> String {
    let title = clean(title);
    let metrics: Vec<&str> = options.metrics.iter().map(|m| m.name()).collect();
    markup! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                title { (title) " — faithfulness" }
                style { (PreEscaped(STYLE)) }
            }
            body {
                h1 { (title) " — faithfulness" }
                p class="what" {
                    (summary.pairs) " pairs; metrics: " (metrics.join(", "))
                    "; random baseline: " (options.random_orders) " orders per pair."
                }
                table {
                    thead {
                        tr {
                            th scope="col" { "method" }
                            th scope="col" { "AOPC comprehensiveness ↑" }
                            th scope="col" { "AOPC sufficiency ↓" }
                            th scope="col" { "leave-one-out τ ↑" }
                        }
                    }
                    tbody {
                        @for row in &summary.rows {
                            tr class=[(row.method == RANDOM).then_some("random")] {
                                th scope="row" { (row.method) }
                                td { (spread(&row.aopc_comprehensiveness)) }
                                td { (spread(&row.aopc_sufficiency)) }
                                td {
                                    (spread(&row.loo_kendall_tau))
                                    @if let Some(s) = row.loo_kendall_tau {
                                        @if s.count < summary.pairs {
                                            " (" (s.count) " pairs)"
                                        }
                                    }
                                }
                            }
                        }
                    }
                }
                p class="note" {
                    "Mean ± standard deviation over the pairs. Comprehensiveness: the answer's "
                    "probability lost when the top k% of tokens are masked (higher: the top "
                    "tokens matter). Sufficiency: lost when only they are kept (lower: they "
                    "suffice). τ: Kendall's τ-b of the scores and each token's leave-one-out drop."
                }
                div class="charts" {
                    @if summary.rows.iter().any(|r| r.comprehensiveness.is_some()) {
                        (chart("Comprehensiveness (higher is more faithful)", &summary.percents,
                               &summary.rows, |r| r.comprehensiveness.as_deref()))
                    }
                    @if summary.rows.iter().any(|r| r.sufficiency.is_some()) {
                        (chart("Sufficiency (lower is more faithful)", &summary.percents,
                               &summary.rows, |r| r.sufficiency.as_deref()))
                    }
                }
            }
        }
    }
    .into_string()
}

fn spread(s: &Option<Spread>) -> Markup {
    markup! {
        @match s {
            Some(s) => { (format!("{:.4}", s.mean)) " ± " (format!("{:.4}", s.std)) },
            None => "—",
        }
    }
}

/// One SVG chart: a polyline per row of `curve(row)` against the percents, with axes, ticks
/// and a legend.
fn chart(
    heading: &str,
    percents: &[usize],
    rows: &[SummaryRow],
    curve: impl Fn(&SummaryRow) -> Option<&[f64]>,
) -> Markup {
    const W: f64 = 440.0;
    const H: f64 = 260.0;
    const LEFT: f64 = 56.0;
    const RIGHT: f64 = 12.0;
    const TOP: f64 = 12.0;
    const BOTTOM: f64 = 40.0;
    let values: Vec<f64> = rows.iter().filter_map(&curve).flatten().copied().collect();
    let (mut low, mut high) = values
        .iter()
        .fold((0.0f64, 0.0f64), |(l, h), &v| (l.min(v), h.max(v)));
    if high - low < 1e-9 {
        high += 0.5;
        low -= 0.5;
    }
    let x = |k: usize| LEFT + (W - LEFT - RIGHT) * k as f64 / 100.0;
    let y = |v: f64| TOP + (H - TOP - BOTTOM) * (high - v) / (high - low);
    let ticks: Vec<f64> = (0..=4)
        .map(|i| low + (high - low) * i as f64 / 4.0)
        .collect();
    let lines: Vec<(&str, &str, bool, String)> = rows
        .iter()
        .enumerate()
        .filter_map(|(i, r)| {
            let points = curve(r)?
                .iter()
                .zip(percents)
                .map(|(&v, &k)| format!("{:.1},{:.1}", x(k), y(v)))
                .collect::<Vec<_>>()
                .join(" ");
            let random = r.method == RANDOM;
            let colour = if random {
                RANDOM_COLOUR
            } else {
                COLOURS[i % COLOURS.len()]
            };
            Some((r.method.as_str(), colour, random, points))
        })
        .collect();
    markup! {
        figure {
            figcaption { (heading) }
            svg xmlns="http://www.w3.org/2000/svg" viewBox={ "0 0 " (W) " " (H) }
                role="img" aria-label=(heading) {
                line x1=(LEFT) y1=(y(low)) x2=(LEFT) y2=(y(high)) class="axis" {}
                line x1=(LEFT) y1=(H - BOTTOM) x2=(W - RIGHT) y2=(H - BOTTOM) class="axis" {}
                @if low < 0.0 {
                    line x1=(LEFT) y1=(y(0.0)) x2=(W - RIGHT) y2=(y(0.0)) class="zero" {}
                }
                @for t in &ticks {
                    text x=(LEFT - 6.0) y=(y(*t) + 4.0) text-anchor="end" { (format!("{t:.2}")) }
                }
                @for &k in percents {
                    text x=(x(k)) y=(H - BOTTOM + 16.0) text-anchor="middle" { (k) }
                }
                text x=((LEFT + W - RIGHT) / 2.0) y=(H - 6.0) text-anchor="middle" { "k (% of tokens)" }
                @for (method, colour, random, points) in &lines {
                    polyline points=(points) fill="none" stroke=(colour) stroke-width="2"
                        stroke-dasharray=[random.then_some("5 4")] {
                        title { (method) }
                    }
                }
            }
            ul class="key" {
                @for (method, colour, random, _) in &lines {
                    li {
                        span class=(if *random { "swatch dashed" } else { "swatch" })
                            style={ "border-color: " (colour) } {}
                        (method)
                    }
                }
            }
        }
    }
}

const STYLE: &str = "\
body{font-family:system-ui,sans-serif;margin:1.5em auto;max-width:62em;padding:0 1em;color:#111}\
h1{font-size:1.4em}\
.what,.note{color:#333}\
table{border-collapse:collapse;margin:1em 0}\
th,td{border:1px solid #bbb;padding:.35em .7em;text-align:right}\
th[scope=row],thead th{text-align:left}\
tr.random{color:#444;font-style:italic}\
.charts{display:flex;flex-wrap:wrap;gap:1.5em}\
figure{margin:0;flex:1 1 26em}\
figcaption{font-weight:600;margin-bottom:.3em}\
svg{width:100%;height:auto;font-size:11px}\
.axis{stroke:#333}\
.zero{stroke:#aaa;stroke-dasharray:2 3}\
.key{list-style:none;padding:0;display:flex;flex-wrap:wrap;gap:.4em 1.2em}\
.swatch{display:inline-block;width:1.6em;border-top:3px solid;margin-right:.4em;vertical-align:middle}\
.swatch.dashed{border-top-style:dashed}";
