//! Charts as `<svg>` strings, drawn on the server: no script, no fonts and
//! nothing fetched, so a page that inlines them works offline, in a mail
//! client and on paper. The web console reuses these functions as they are.
//!
//! Every chart is horizontal bars: labels on the left stay readable however
//! long the names, and the height simply grows with the rows. Each function
//! takes plain numbers and display texts, not report types, so any figure
//! can be charted. Values that are negative or not finite draw as zero-length
//! bars (their text still shows); a chart with nothing to draw says "no data".
//!
//! All text is escaped by `maud`. The output carries no `xmlns`: inline SVG
//! in HTML needs none, and leaving it out keeps pages free of any URL. Use
//! [`document`] for a standalone `.svg` file.

use maud::{Markup, html};

/// Palette shared by the report page and the console, chosen to stay
/// distinguishable for the common colour-vision deficiencies and in greyscale.
pub mod colour {
    /// Counted transactions, the figure that matters.
    pub const COUNTED: &str = "#1b7f3b";
    /// Excluded outcomes.
    pub const EXCLUDED: &str = "#d55e00";
    /// Value produced.
    pub const VALUE: &str = "#0072b2";
    /// Money spent.
    pub const COST: &str = "#7a7a7a";
    /// The report period.
    pub const PERIOD: &str = "#0072b2";
    /// The baseline period, paler: it is the reference, not the news.
    pub const BASELINE: &str = "#9fc4de";
}

/// A named series and the colour its bars are drawn in.
#[derive(Debug, Clone, PartialEq)]
pub struct Series {
    pub name: String,
    pub colour: String,
}

impl Series {
    pub fn new(name: impl Into<String>, colour: impl Into<String>) -> Self {
        Series {
            name: name.into(),
            colour: colour.into(),
        }
    }
}

/// One bar: its label, its length, and the text written after it.
#[derive(Debug, Clone, PartialEq)]
pub struct Bar {
    pub label: String,
    pub value: f64,
    pub text: String,
}

impl Bar {
    pub fn new(label: impl Into<String>, value: f64, text: impl Into<String>) -> Self {
        Bar {
            label: label.into(),
            value,
            text: text.into(),
        }
    }
}

/// A labelled group of bars, one per series, drawn one under the other
/// (two periods of one figure, or value beside cost).
#[derive(Debug, Clone, PartialEq)]
pub struct Group {
    pub label: String,
    /// `(length, text)` for each series, in the series' order.
    pub values: Vec<(f64, String)>,
}

/// One bar split into parts, one per series, and the text after it.
#[derive(Debug, Clone, PartialEq)]
pub struct Stack {
    pub label: String,
    /// One length per series, in the series' order.
    pub parts: Vec<f64>,
    pub text: String,
}

// Geometry, in SVG user units; the chart scales to its container.
const WIDTH: f64 = 560.0;
const LABEL_W: f64 = 160.0;
/// Estimated width of one character of value text (no font metrics on the
/// server; generous so text after the longest bar is never clipped).
const CHAR_W: f64 = 7.8;
/// The narrowest the bars may get to make room for their texts.
const MIN_BAR_AREA: f64 = 120.0;
const TITLE_H: f64 = 30.0;
const LEGEND_H: f64 = 22.0;
const BAR_H: f64 = 18.0;
const SUB_BAR_H: f64 = 15.0;
const ROW_GAP: f64 = 10.0;
/// The room a row label may take, left of the bars.
const LABEL_ROOM: f64 = LABEL_W - 14.0;
const FONT: &str = "system-ui, -apple-system, 'Segoe UI', Roboto, sans-serif";
const INK: &str = "#222";
const MUTED: &str = "#555";

/// A single-series horizontal bar chart.
pub fn bar_chart(title: &str, colour: &str, bars: &[Bar]) -> String {
    let groups: Vec<Group> = bars
        .iter()
        .map(|b| Group {
            label: b.label.clone(),
            values: vec![(b.value, b.text.clone())],
        })
        .collect();
    grouped_bar_chart(title, &[Series::new("", colour)], &groups)
}

/// Bars grouped by label, one bar per series: compares two periods, or
/// value with cost. A legend is drawn when there is more than one series.
pub fn grouped_bar_chart(title: &str, series: &[Series], groups: &[Group]) -> String {
    let max = groups
        .iter()
        .flat_map(|g| g.values.iter().map(|(v, _)| length(*v)))
        .fold(0.0, f64::max);
    if groups.is_empty() || series.is_empty() || max <= 0.0 {
        return no_data(title);
    }
    let area = bar_area(
        groups
            .iter()
            .flat_map(|g| g.values.iter().map(|(_, t)| t.as_str())),
    );
    let legend = series.len() > 1;
    let top = TITLE_H + if legend { LEGEND_H } else { 0.0 };
    let per_series = if series.len() > 1 { SUB_BAR_H } else { BAR_H };
    let group_h = per_series * series.len() as f64 + ROW_GAP;
    let height = top + group_h * groups.len() as f64 + 4.0;
    let body = html! {
        @for (i, g) in groups.iter().enumerate() {
            @let y0 = top + group_h * i as f64;
            (label(&g.label, y0 + per_series * 0.5 * series.len() as f64))
            @for (j, s) in series.iter().enumerate() {
                @if let Some((v, text)) = g.values.get(j) {
                    @let y = y0 + per_series * j as f64;
                    (bar(LABEL_W, y, scaled(*v, max, area), per_series - 2.0, &s.colour, text))
                }
            }
        }
    };
    frame(title, height, legend.then_some(series), body)
}

/// Stacked horizontal bars: each row's parts laid end to end, so a row
/// shows its whole (reported) and its split (counted, excluded) at once.
pub fn stacked_bar_chart(title: &str, series: &[Series], stacks: &[Stack]) -> String {
    let total = |s: &Stack| s.parts.iter().map(|p| length(*p)).sum::<f64>();
    let max = stacks.iter().map(total).fold(0.0, f64::max);
    if stacks.is_empty() || series.is_empty() || !max.is_finite() || max <= 0.0 {
        return no_data(title);
    }
    let area = bar_area(stacks.iter().map(|s| s.text.as_str()));
    let top = TITLE_H + LEGEND_H;
    let row_h = BAR_H + ROW_GAP;
    let height = top + row_h * stacks.len() as f64 + 4.0;
    let body = html! {
        @for (i, s) in stacks.iter().enumerate() {
            @let y = top + row_h * i as f64;
            (label(&s.label, y + BAR_H * 0.5))
            @let (segments, end) = segments(&s.parts, max, area);
            @for (j, (x, w)) in segments.into_iter().enumerate() {
                @let colour = series.get(j).map_or(MUTED, |s| s.colour.as_str());
                @if w > 0.0 {
                    rect x=(n(x)) y=(n(y)) width=(n(w)) height=(n(BAR_H)) fill=(colour) {}
                }
            }
            text x=(n(end + 6.0)) y=(n(y + BAR_H - 4.0)) fill=(INK) { (s.text) }
        }
    };
    frame(title, height, Some(series), body)
}

/// A chart as a standalone SVG document (for a `.svg` file or an `<img>`),
/// which, unlike inline SVG, must declare its namespace.
pub fn document(chart: &str) -> String {
    let body = chart.strip_prefix("<svg").unwrap_or(chart);
    format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<svg xmlns=\"http://www.w3.org/2000/svg\"{body}"
    )
}

/// The `<svg>` element around a chart: size, accessible name, title, legend.
fn frame(title: &str, height: f64, legend: Option<&[Series]>, body: Markup) -> String {
    html! {
        svg class="chart" viewBox=(format!("0 0 {} {}", n(WIDTH), n(height)))
            width=(n(WIDTH)) height=(n(height)) role="img" aria-label=(title)
            font-family=(FONT) font-size="13" {
            title { (title) }
            text x="0" y="16" font-size="15" font-weight="600" fill=(INK) { (title) }
            @if let Some(series) = legend {
                @for (x, s) in legend_positions(series) {
                    rect x=(n(x)) y=(n(TITLE_H)) width="10" height="10" fill=(s.colour) {}
                    text x=(n(x + 14.0)) y=(n(TITLE_H + 9.0)) fill=(MUTED) { (s.name) }
                }
            }
            (body)
        }
    }
    .into_string()
}

/// What an empty chart shows: its title and "no data", never an empty box
/// a reader could mistake for zeros drawn.
fn no_data(title: &str) -> String {
    let height = TITLE_H + 40.0;
    frame(
        title,
        height,
        None,
        html! {
            text x=(n(WIDTH / 2.0)) y=(n(TITLE_H + 24.0)) text-anchor="middle" font-size="15" fill=(MUTED) {
                "no data"
            }
        },
    )
}

/// A row label, right-aligned against the bars, shortened to fit; the full
/// text stays available as a tooltip.
fn label(text: &str, mid_y: f64) -> Markup {
    let short = shorten(text, LABEL_ROOM);
    html! {
        text x=(n(LABEL_W - 8.0)) y=(n(mid_y + 4.0)) text-anchor="end" fill=(INK) {
            @if short != text { title { (text) } }
            (short)
        }
    }
}

/// One bar with its text after it.
fn bar(x: f64, y: f64, w: f64, h: f64, colour: &str, text: &str) -> Markup {
    html! {
        @if w > 0.0 {
            rect x=(n(x)) y=(n(y)) width=(n(w)) height=(n(h)) fill=(colour) rx="2" {}
        }
        text x=(n(x + w + 6.0)) y=(n(y + h - 2.0)) fill=(MUTED) { (text) }
    }
}

/// Where each part of a stack starts and how wide it is, and where the
/// stack ends (for the text after it). Parts are clamped so that rounding
/// up small parts can never push the stack past the bar area.
fn segments(parts: &[f64], max: f64, area: f64) -> (Vec<(f64, f64)>, f64) {
    let mut x = LABEL_W;
    let mut out = Vec::with_capacity(parts.len());
    for p in parts {
        let w = scaled(*p, max, area).min(LABEL_W + area - x).max(0.0);
        out.push((x, w));
        x += w;
    }
    (out, x)
}

/// Legend entries side by side, each as wide as its name (estimated: the
/// server knows no font metrics).
fn legend_positions(series: &[Series]) -> Vec<(f64, &Series)> {
    let mut x = 0.0;
    series
        .iter()
        .map(|s| {
            let at = x;
            x += 26.0 + 7.5 * s.name.chars().count() as f64;
            (at, s)
        })
        .collect()
}

/// The width the longest bar gets: what the chart has left after the
/// labels and the longest value text.
fn bar_area<'a>(texts: impl Iterator<Item = &'a str>) -> f64 {
    let longest = texts.map(|t| t.chars().count()).max().unwrap_or(0);
    let room = WIDTH - LABEL_W - 10.0 - 6.0 - CHAR_W * longest as f64;
    room.clamp(MIN_BAR_AREA, WIDTH - LABEL_W - 10.0)
}

/// A drawable length: negative, NaN and infinite values draw as nothing.
fn length(v: f64) -> f64 {
    if v.is_finite() && v > 0.0 { v } else { 0.0 }
}

/// A value's bar width; a non-zero value gets at least one unit so that
/// "small" never looks like "none".
fn scaled(v: f64, max: f64, area: f64) -> f64 {
    let v = length(v);
    if v <= 0.0 || max <= 0.0 {
        return 0.0;
    }
    (v / max * area).clamp(1.0, area)
}

/// Coordinates with one decimal: enough for a screen, short in the page.
fn n(v: f64) -> String {
    format!("{v:.1}")
}

/// As much of `s` as fits in `room`, cut in the middle: ids and names
/// often differ only at the end (UUIDv7s minted the same day share their
/// first digits; `payments-bot-eu` and `-us`), so both ends are kept.
fn shorten(s: &str, room: f64) -> String {
    if s.chars().map(char_width).sum::<f64>() <= room {
        return s.to_owned();
    }
    let half = (room - char_width('…')) / 2.0;
    let take = |chars: &mut dyn Iterator<Item = char>| {
        let mut used = 0.0;
        let mut out = Vec::new();
        for c in chars {
            used += char_width(c);
            if used > half {
                break;
            }
            out.push(c);
        }
        out
    };
    let head = take(&mut s.chars());
    let mut tail = take(&mut s.chars().rev());
    tail.reverse();
    let mut out: String = head.into_iter().collect();
    out.push('…');
    out.extend(tail);
    out
}

/// A character's rough width at the chart's 13-unit font: the server has
/// no font metrics, so this errs wide (a label cut early beats one clipped).
fn char_width(c: char) -> f64 {
    match c {
        ' ' | '.' | ',' | ':' | ';' | '\'' | '|' | 'i' | 'j' | 'l' | '!' | '(' | ')' => 4.5,
        'a'..='z' | '-' | '_' => 7.6,
        '0'..='9' => 8.4,
        'A'..='Z' => 9.4,
        c if c.is_ascii() => 8.4,
        // Wide scripts (CJK and the like) and anything else unknown.
        _ => 13.5,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_and_zero_charts_say_no_data() {
        assert!(bar_chart("t", colour::COUNTED, &[]).contains("no data"));
        let zeros = [Bar::new("a", 0.0, "0"), Bar::new("b", f64::NAN, "?")];
        assert!(bar_chart("t", colour::COUNTED, &zeros).contains("no data"));
        let s = [Series::new("x", "#000")];
        let st = [Stack {
            label: "p".into(),
            parts: vec![0.0, -1.0],
            text: "0".into(),
        }];
        assert!(stacked_bar_chart("t", &s, &st).contains("no data"));
    }

    #[test]
    fn bars_scale_to_the_largest_and_text_is_escaped() {
        let svg = bar_chart(
            "<b>",
            "#000",
            &[Bar::new("<i>", 10.0, "ten"), Bar::new("b", 5.0, "five")],
        );
        assert!(svg.starts_with("<svg"));
        let area = bar_area(["ten", "five"].into_iter());
        assert!((MIN_BAR_AREA..WIDTH - LABEL_W).contains(&area));
        assert!(svg.contains(&format!("width=\"{}\"", n(area))));
        assert!(svg.contains(&format!("width=\"{}\"", n(area / 2.0))));
        assert!(svg.contains("&lt;i&gt;") && svg.contains("&lt;b&gt;"));
        assert!(!svg.contains("<i>") && !svg.contains("<b>"));
        assert!(!svg.contains("http"));
    }

    #[test]
    fn long_labels_are_shortened_with_a_tooltip() {
        let long = "x".repeat(100);
        let svg = bar_chart("t", "#000", &[Bar::new(long.clone(), 1.0, "1")]);
        let short = shorten(&long, LABEL_ROOM);
        assert!(short.contains('…') && short.len() < long.len());
        let id = "0196a4c2-7d1e-7abc-9def-0123456789ab";
        assert!(
            shorten(id, LABEL_ROOM).ends_with("6789ab"),
            "ids keep their tail"
        );
        assert!(svg.contains(&format!("</title>{short}</text>")));
        assert_eq!(shorten("phantom", LABEL_ROOM), "phantom");
        assert!(svg.contains(&format!("<title>{long}</title>")));
    }

    #[test]
    fn a_document_declares_its_namespace() {
        let doc = document(&bar_chart("t", "#000", &[Bar::new("a", 1.0, "1")]));
        assert!(doc.contains("<svg xmlns=\"http://www.w3.org/2000/svg\" class=\"chart\""));
    }
}
