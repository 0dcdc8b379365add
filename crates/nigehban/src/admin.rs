//! `nigehban admin`: operator commands against the store.

use std::path::Path;
use std::process::ExitCode;

use clap::Subcommand;

use crate::serve::StoreArgs;

#[derive(Subcommand)]
pub enum AdminCommand {
    /// Check the audit log's hash chain: exits 1 if an entry was edited, deleted or reordered.
    VerifyAudit {
        #[command(flatten)]
        store: StoreArgs,
        /// Print the report as JSON.
        #[arg(long)]
        json: bool,
    },
}

pub fn run(cmd: AdminCommand) -> anyhow::Result<ExitCode> {
    let rt = tokio::runtime::Runtime::new()?;
    match cmd {
        AdminCommand::VerifyAudit { store, json } => rt.block_on(async {
            let store = store.open(Path::new("nigehban-data")).await?;
            let report = store.verify_audit().await?;
            store.close().await;
            if json {
                println!("{}", serde_json::to_string_pretty(&report)?);
            } else if report.ok() {
                println!(
                    "audit log intact: {} entries; head #{} {}\n(keep the head hash elsewhere: a later run that shows a different hash for #{} means the log was rewritten)",
                    report.entries, report.head_seq, report.head_hash, report.head_seq
                );
            } else {
                println!("audit log BROKEN: {} problems in {} entries", report.problems.len(), report.entries);
                for p in &report.problems {
                    println!("  {p}");
                }
            }
            Ok(if report.ok() { ExitCode::SUCCESS } else { ExitCode::from(1) })
        }),
    }
}
