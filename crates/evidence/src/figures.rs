//! Says where two sets of figures first differ, in the order a reader of a
//! report looks at them, so a failed recompute names the field rather than
//! just "the figures differ".

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Display;

use mandate_core::outcome::{Figures, PeriodFigures};

use crate::pack::show_period;

/// The first difference between the claimed and the recomputed figures, as
/// "<field> is <claimed> but the listed transactions give <recomputed>".
pub(crate) fn first_difference(claimed: &PeriodFigures, got: &PeriodFigures) -> Option<String> {
    if claimed.period != got.period {
        return Some(format!(
            "figures.period is {} but the report's period is {}",
            show_period(&claimed.period),
            show_period(&got.period)
        ));
    }
    figures("totals", &claimed.totals, &got.totals)
        .or_else(|| breakdown("by_agent", &claimed.by_agent, &got.by_agent))
        .or_else(|| breakdown("by_initiator", &claimed.by_initiator, &got.by_initiator))
        .or_else(|| {
            // PartialEq found a difference this walk does not know about
            // (a field added to `Figures` later): still say something.
            (claimed != got).then(|| "the figures differ from the recomputed ones".to_owned())
        })
}

fn differs<T: PartialEq + Display>(field: &str, claimed: T, got: T) -> Option<String> {
    (claimed != got).then(|| format!("{field} is {claimed} but the listed transactions give {got}"))
}

fn figures(at: &str, c: &Figures, g: &Figures) -> Option<String> {
    let show_roai = |r: Option<f64>| r.map_or_else(|| "absent".to_owned(), |x| x.to_string());
    differs(&format!("{at}.reported"), c.reported, g.reported)
        .or_else(|| differs(&format!("{at}.counted"), c.counted, g.counted))
        .or_else(|| {
            let kinds: BTreeSet<_> = c.exceptions.keys().chain(g.exceptions.keys()).collect();
            kinds.into_iter().find_map(|k| {
                let n =
                    |m: &BTreeMap<_, u64>| m.get(k).map_or_else(|| "absent".into(), u64::to_string);
                differs(
                    &format!("{at}.exceptions.{}", k.as_str()),
                    n(&c.exceptions),
                    n(&g.exceptions),
                )
            })
        })
        .or_else(|| differs(&format!("{at}.value"), c.value, g.value))
        .or_else(|| differs(&format!("{at}.cost"), c.cost, g.cost))
        .or_else(|| differs(&format!("{at}.net"), c.net, g.net))
        .or_else(|| differs(&format!("{at}.roai"), show_roai(c.roai), show_roai(g.roai)))
        .or_else(|| {
            differs(
                &format!("{at}.minutes_saved"),
                c.minutes_saved,
                g.minutes_saved,
            )
        })
        .or_else(|| {
            differs(
                &format!("{at}.human_baseline_cost"),
                c.human_baseline_cost,
                g.human_baseline_cost,
            )
        })
        .or_else(|| {
            differs(
                &format!("{at}.model_tokens"),
                c.model_tokens,
                g.model_tokens,
            )
        })
        .or_else(|| {
            // Two ratios that print alike but differ in the last bit.
            (c.roai.map(f64::to_bits) != g.roai.map(f64::to_bits))
                .then(|| format!("{at}.roai differs from the recomputed ratio in its last digits"))
        })
}

fn breakdown<K: Ord + Display>(
    at: &str,
    c: &BTreeMap<K, Figures>,
    g: &BTreeMap<K, Figures>,
) -> Option<String> {
    let keys: BTreeSet<&K> = c.keys().chain(g.keys()).collect();
    keys.into_iter().find_map(|k| match (c.get(k), g.get(k)) {
        (Some(_), None) => Some(format!("{at} lists {k}, which no listed transaction names")),
        (None, Some(f)) => Some(format!(
            "{at} has no entry for {k}, who has {} listed transaction(s)",
            f.reported
        )),
        (Some(cf), Some(gf)) => figures(&format!("{at}[{k}]"), cf, gf),
        (None, None) => None,
    })
}
