//! `mandate posture`: findings to act on, as a table, JSON or SARIF.

use mandate_core::posture::{Finding, to_sarif};
use serde::Deserialize;

use crate::client::Client;
use crate::output;
use crate::{CliError, ServerArgs};

#[derive(clap::Args)]
pub struct PostureArgs {
    #[command(flatten)]
    server: ServerArgs,
    /// Assess as of this time (RFC 3339), e.g. to see what will be stale.
    #[arg(long)]
    at: Option<String>,
    #[arg(long)]
    dormant_days: Option<u32>,
    #[arg(long)]
    key_max_age_days: Option<u32>,
    #[arg(long)]
    secret_max_age_days: Option<u32>,
    #[arg(long)]
    usage_window_days: Option<u32>,
    #[arg(long)]
    max_depth: Option<u32>,
    #[arg(long)]
    max_width: Option<u32>,
    /// SARIF 2.1.0 for CI pipelines instead of a table.
    #[arg(long, conflicts_with = "json")]
    sarif: bool,
}

#[derive(Deserialize, serde::Serialize)]
pub struct Posture {
    pub summary: std::collections::BTreeMap<String, usize>,
    pub findings: Vec<Finding>,
}

impl PostureArgs {
    fn query(&self) -> String {
        let mut q = Vec::new();
        if let Some(at) = &self.at {
            q.push(format!("at={}", super::human::urlencode(at)));
        }
        for (k, v) in [
            ("dormant_days", self.dormant_days),
            ("key_max_age_days", self.key_max_age_days),
            ("secret_max_age_days", self.secret_max_age_days),
            ("usage_window_days", self.usage_window_days),
            ("max_depth", self.max_depth),
            ("max_width", self.max_width),
        ] {
            if let Some(v) = v {
                q.push(format!("{k}={v}"));
            }
        }
        q.join("&")
    }
}

pub async fn run(a: PostureArgs) -> Result<(), CliError> {
    let c = Client::new(&a.server.server, a.server.token.clone());
    let p = fetch(&c, &a.query()).await?;
    if a.server.json {
        output::json(&p);
    } else if a.sarif {
        output::json(&to_sarif(&p.findings));
    } else {
        print(&p);
    }
    Ok(())
}

pub async fn fetch(c: &Client, query: &str) -> Result<Posture, CliError> {
    c.get(&format!("/v1/posture?{query}")).await
}

/// The findings as a table, with the count per kind.
pub fn print(p: &Posture) {
    let mut t = output::table(&[
        "severity",
        "finding",
        "subject",
        "OWASP NHI",
        "NIST CSF",
        "remediation",
    ]);
    for f in &p.findings {
        t.add_row(vec![
            format!("{:?}", f.severity).to_lowercase(),
            f.title.clone(),
            f.subject.clone(),
            f.owasp.clone(),
            f.nist.clone(),
            f.remediation.clone(),
        ]);
    }
    println!("{t}");
    let counts: Vec<String> = p.summary.iter().map(|(k, n)| format!("{k} {n}")).collect();
    let total: usize = p.summary.values().sum();
    println!("{total} finding(s): {}", counts.join(", "));
}
