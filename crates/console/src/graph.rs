//! A delegation tree drawn as SVG on the server: the human at the top, each
//! task below the task it was delegated from, each node with its agent,
//! status and scope, and a link to the node's details on the page.
//!
//! Layout is the classic tidy tree, simplified: leaves take consecutive
//! columns in depth-first order and a parent sits above the middle of its
//! children, so edges never cross. Text goes through `maud`, escaped.

use maud::{Markup, html};

/// One box of the graph.
#[derive(Debug, Clone)]
pub struct Node {
    /// Fragment the box links to (`#task-...`).
    pub href: String,
    pub title: String,
    pub subtitle: String,
    /// The scope, one grant a line.
    pub lines: Vec<String>,
    /// CSS-ish status used to colour the border.
    pub status: String,
    /// Index of the parent node; `None` for the root.
    pub parent: Option<usize>,
}

const W: f64 = 230.0;
const H_BASE: f64 = 46.0;
const LINE: f64 = 15.0;
const MAX_LINES: usize = 4;
const GAP_X: f64 = 24.0;
const GAP_Y: f64 = 46.0;
const PAD: f64 = 12.0;

fn colour(status: &str) -> &'static str {
    match status {
        "open" | "human" => "#0b5cad",
        "completed" => "#1b6b34",
        "revoked" | "failed" => "#a4121c",
        "expired" => "#8a4b00",
        _ => "#4a4a4a",
    }
}

/// Characters that fit a line of the box (no font metrics on the server).
fn fit(s: &str, max: usize) -> String {
    if s.chars().count() <= max {
        s.to_owned()
    } else {
        let mut t: String = s.chars().take(max.saturating_sub(1)).collect();
        t.push('…');
        t
    }
}

/// Draws `nodes` (node 0 is the root; parents come before children).
pub fn tree(title: &str, nodes: &[Node]) -> Markup {
    let n = nodes.len();
    let mut children: Vec<Vec<usize>> = vec![Vec::new(); n];
    let mut depth = vec![0usize; n];
    for (i, node) in nodes.iter().enumerate() {
        if let Some(p) = node.parent.filter(|p| *p < i) {
            children[p].push(i);
            depth[i] = depth[p] + 1;
        }
    }
    // Columns: leaves in depth-first order; parents centred over children.
    // An explicit stack, so no tree is deep enough to exhaust the call stack.
    let mut col = vec![0f64; n];
    let mut next_leaf = 0f64;
    let mut stack: Vec<(usize, bool)> = (0..n)
        .filter(|i| nodes[*i].parent.is_none_or(|p| p >= *i))
        .rev()
        .map(|i| (i, false))
        .collect();
    while let Some((i, expanded)) = stack.pop() {
        if children[i].is_empty() {
            col[i] = next_leaf;
            next_leaf += 1.0;
        } else if expanded {
            let first = col[children[i][0]];
            let last = col[*children[i].last().unwrap_or(&children[i][0])];
            col[i] = (first + last) / 2.0;
        } else {
            stack.push((i, true));
            for c in children[i].iter().rev() {
                stack.push((*c, false));
            }
        }
    }
    let rows = depth.iter().max().map_or(0, |d| d + 1);
    let box_h = H_BASE + LINE * MAX_LINES as f64;
    let width = PAD * 2.0 + next_leaf.max(1.0) * (W + GAP_X) - GAP_X;
    let height = PAD * 2.0 + rows as f64 * (box_h + GAP_Y) - GAP_Y;
    let x = |i: usize| PAD + col[i] * (W + GAP_X);
    let y = |i: usize| PAD + depth[i] as f64 * (box_h + GAP_Y);
    html! {
        svg.lineage viewBox=(format!("0 0 {width:.0} {height:.0}")) width=(format!("{width:.0}"))
            role="group" aria-label=(title) {
            title { (title) }
            @for (i, node) in nodes.iter().enumerate() {
                @if let Some(p) = node.parent.filter(|p| *p < i) {
                    path d=(format!("M{:.1} {:.1} C{:.1} {:.1} {:.1} {:.1} {:.1} {:.1}",
                        x(p) + W / 2.0, y(p) + box_h,
                        x(p) + W / 2.0, y(p) + box_h + GAP_Y / 2.0,
                        x(i) + W / 2.0, y(i) - GAP_Y / 2.0,
                        x(i) + W / 2.0, y(i)))
                        fill="none" stroke="#8a8a8a" stroke-width="1.5" {}
                }
            }
            @for (i, node) in nodes.iter().enumerate() {
                a href=(node.href) {
                    title { (node.title) ": " (node.subtitle) }
                    rect x=(format!("{:.1}", x(i))) y=(format!("{:.1}", y(i))) width=(W) height=(box_h)
                        rx="6" fill="#ffffff" stroke=(colour(&node.status)) stroke-width="2" {}
                    text x=(format!("{:.1}", x(i) + 10.0)) y=(format!("{:.1}", y(i) + 19.0))
                        font-family="system-ui, sans-serif" font-size="13" font-weight="600" fill="#1a1a1a" {
                        (fit(&node.title, 30))
                    }
                    text x=(format!("{:.1}", x(i) + 10.0)) y=(format!("{:.1}", y(i) + 36.0))
                        font-family="system-ui, sans-serif" font-size="11.5" fill=(colour(&node.status)) {
                        (fit(&node.subtitle, 36))
                    }
                    @for (l, line) in node.lines.iter().take(MAX_LINES).enumerate() {
                        text x=(format!("{:.1}", x(i) + 10.0)) y=(format!("{:.1}", y(i) + 54.0 + l as f64 * LINE))
                            font-family="ui-monospace, monospace" font-size="10.5" fill="#333333" {
                            @if l + 1 == MAX_LINES && node.lines.len() > MAX_LINES {
                                (format!("+{} more grants", node.lines.len() - (MAX_LINES - 1)))
                            } @else {
                                (fit(line, 38))
                            }
                        }
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node(parent: Option<usize>) -> Node {
        Node {
            href: "#x".into(),
            title: "<agent>".into(),
            subtitle: "open".into(),
            lines: vec!["a on b".into(); 6],
            status: "open".into(),
            parent,
        }
    }

    #[test]
    fn a_tree_draws_every_node_and_edge_escaped() {
        let nodes = vec![node(None), node(Some(0)), node(Some(0)), node(Some(1))];
        let svg = tree("t", &nodes).into_string();
        assert_eq!(svg.matches("<rect").count(), 4);
        assert_eq!(svg.matches("<path").count(), 3);
        assert!(svg.contains("&lt;agent&gt;"), "text is escaped");
        assert!(!svg.contains("<agent>"));
        assert!(svg.contains("+3 more grants"));
    }

    #[test]
    fn a_deep_chain_does_not_overflow() {
        let mut nodes = vec![node(None)];
        for i in 0..5000 {
            nodes.push(node(Some(i)));
        }
        let svg = tree("deep", &nodes).into_string();
        assert_eq!(svg.matches("<rect").count(), 5001);
    }
}
