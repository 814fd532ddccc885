//! `mandate policy ...`: Cedar policy sets, validated locally or on a server.

use std::path::{Path, PathBuf};

use clap::Subcommand;
use mandate_policy::{Change, PolicySet, diff};
use mandate_server::routes::policies::{PolicyText, VersionOut};

use crate::client::Client;
use crate::{CliError, ServerArgs};

#[derive(Subcommand)]
pub enum PolicyCommand {
    /// Validate a policy file against Mandate's schema (no server needed).
    Validate { file: PathBuf },
    /// Validate, store as a new version and make it active.
    Push {
        #[command(flatten)]
        server: ServerArgs,
        file: PathBuf,
    },
    /// List the stored versions, newest first.
    List {
        #[command(flatten)]
        server: ServerArgs,
    },
    /// Show a version's text (a hash, a unique prefix, or `active`).
    Show {
        #[command(flatten)]
        server: ServerArgs,
        #[arg(default_value = "active")]
        version: String,
    },
    /// What changed between two versions, by policy @id. Each side is a stored
    /// version (hash, prefix or `active`) or a file path.
    Diff {
        #[command(flatten)]
        server: ServerArgs,
        old: String,
        new: String,
    },
}

fn read(path: &Path) -> Result<String, CliError> {
    std::fs::read_to_string(path)
        .map_err(|e| CliError::Usage(format!("cannot read {}: {e}", path.display())))
}

/// Parses and validates, with every problem on its own line.
fn parse(text: &str, origin: &str) -> Result<PolicySet, CliError> {
    PolicySet::parse(text).map_err(|e| {
        let lines: Vec<String> = e.problems.iter().map(|p| format!("{origin}:{p}")).collect();
        CliError::Usage(format!("invalid policy set\n{}", lines.join("\n")))
    })
}

async fn version_text(c: &Client, key: &str) -> Result<(String, String), CliError> {
    let p = Path::new(key);
    if p.exists() {
        return Ok((read(p)?, key.to_owned()));
    }
    let v: VersionOut = c
        .get(&format!("/v1/policies/{}", super::human::urlencode(key)))
        .await?;
    Ok((v.text.unwrap_or_default(), format!("version {}", v.version)))
}

fn short(hash: &str) -> &str {
    &hash[..hash.len().min(12)]
}

pub async fn run(cmd: PolicyCommand) -> Result<(), CliError> {
    match cmd {
        PolicyCommand::Validate { file } => {
            let set = parse(&read(&file)?, &file.display().to_string())?;
            for w in set.warnings() {
                eprintln!("warning: {w}");
            }
            println!("valid: {} policies, hash {}", set.len(), set.hash());
        }
        PolicyCommand::Push { server, file } => {
            let text = read(&file)?;
            // Validate here first so the error names the file; the server validates again.
            parse(&text, &file.display().to_string())?;
            let c = Client::new(&server.server, server.token.clone());
            let v: VersionOut = c.post("/v1/policies", &PolicyText { text }).await?;
            if server.json {
                crate::output::json(&v);
            } else {
                for w in &v.warnings {
                    eprintln!("warning: {w}");
                }
                println!(
                    "active: version {} ({}), {} policies",
                    v.version,
                    short(&v.hash),
                    v.policies.as_ref().map_or(0, Vec::len)
                );
            }
        }
        PolicyCommand::List { server } => {
            let c = Client::new(&server.server, server.token.clone());
            let all: Vec<VersionOut> = c.get("/v1/policies").await?;
            if server.json {
                crate::output::json(&all);
            } else {
                for v in &all {
                    println!(
                        "{} {:>3}  {}  {}",
                        if v.active { "*" } else { " " },
                        v.version,
                        short(&v.hash),
                        v.pushed_at.rfc3339()
                    );
                }
            }
        }
        PolicyCommand::Show { server, version } => {
            let c = Client::new(&server.server, server.token.clone());
            let v: VersionOut = c
                .get(&format!(
                    "/v1/policies/{}",
                    super::human::urlencode(&version)
                ))
                .await?;
            if server.json {
                crate::output::json(&v);
            } else {
                println!(
                    "// version {} ({}){}",
                    v.version,
                    v.hash,
                    if v.active { ", active" } else { "" }
                );
                print!("{}", v.text.unwrap_or_default());
            }
        }
        PolicyCommand::Diff { server, old, new } => {
            let c = Client::new(&server.server, server.token.clone());
            let (a, an) = version_text(&c, &old).await?;
            let (b, bn) = version_text(&c, &new).await?;
            let changes = diff(&parse(&a, &an)?, &parse(&b, &bn)?);
            if server.json {
                crate::output::json(&changes);
                return Ok(());
            }
            if changes.is_empty() {
                println!("no policy changed between {an} and {bn}");
            }
            for ch in changes {
                let mark = match ch.change {
                    Change::Added => "+",
                    Change::Removed => "-",
                    Change::Changed => "~",
                };
                println!("{mark} {}", ch.id);
                for l in ch.old.iter().flat_map(|o| o.lines()) {
                    println!("    - {l}");
                }
                for l in ch.new.iter().flat_map(|n| n.lines()) {
                    println!("    + {l}");
                }
            }
        }
    }
    Ok(())
}
