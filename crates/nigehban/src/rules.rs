use std::path::PathBuf;
use std::process::ExitCode;

use clap::Subcommand;
use nigehban_hunt::rules;

#[derive(Subcommand)]
pub enum RulesCommand {
    /// Load rules and report what loads, what fails and why.
    Check {
        /// Rule files or folders.
        #[arg(required = true)]
        paths: Vec<PathBuf>,
        /// Output format: text or json.
        #[arg(long, default_value = "text")]
        format: String,
        /// Also list the rules that load with a caveat (e.g. an unmapped log source).
        #[arg(long)]
        warnings: bool,
    },
}

pub fn run(cmd: RulesCommand) -> anyhow::Result<ExitCode> {
    match cmd {
        RulesCommand::Check { paths, format, warnings } => {
            let loaded = rules::load(&paths);
            let report = loaded.rules.report();
            match format.as_str() {
                "json" => {
                    let failed: Vec<_> = report
                        .failed
                        .iter()
                        .map(|f| {
                            serde_json::json!({"path": &*f.path, "id": f.id, "title": f.title, "error": f.error.to_string()})
                        })
                        .collect();
                    let warn: Vec<_> =
                        report.warnings.iter().map(|(p, w)| serde_json::json!({"path": &**p, "warning": w})).collect();
                    let doc = serde_json::json!({
                        "files": report.files,
                        "loaded": report.loaded,
                        "correlations": report.correlations,
                        "failed": failed,
                        "warnings": warn,
                        "unreadable": loaded.unreadable.iter().map(|(p, r)| serde_json::json!({"path": p.display().to_string(), "error": r})).collect::<Vec<_>>(),
                    });
                    println!("{}", serde_json::to_string_pretty(&doc)?);
                }
                "text" => {
                    for f in &report.failed {
                        let what = match (&f.title, &f.id) {
                            (Some(t), Some(id)) => format!(" ({t}, {id})"),
                            (Some(t), None) => format!(" ({t})"),
                            _ => String::new(),
                        };
                        println!("FAILED {}{what}: {}", f.path, f.error);
                    }
                    if warnings {
                        for (p, w) in &report.warnings {
                            println!("WARNING {p}: {w}");
                        }
                    }
                    for (p, r) in &loaded.unreadable {
                        println!("UNREADABLE {}: {r}", p.display());
                    }
                    println!(
                        "{} files: {} rules loaded, {} correlation rules, {} failed, {} with warnings",
                        report.files,
                        report.loaded,
                        report.correlations,
                        report.failed.len(),
                        report.warnings.len()
                    );
                }
                other => anyhow::bail!("`{other}` is not a report format (text, json)"),
            }
            Ok(if report.failed.is_empty() && loaded.unreadable.is_empty() {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(1)
            })
        }
    }
}
