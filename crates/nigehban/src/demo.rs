//! `nigehban demo`: a first look without any data of one's own. Writes a small set of sample
//! logs (a phishing-to-credential-theft chain on a ministry workstation, password spraying
//! against its domain controller, SSH brute force against a mail server) and rules written
//! for them, then hunts over them.
//!
//! The platform server (constituency tree, accounts, live monitoring) joins the demo as it
//! lands; today the demo shows the detection engine that everything else builds on.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::Args;

use crate::hunt::{self, HuntArgs};

const FILES: &[(&str, &str)] = &[
    ("logs/ws014-sysmon.ndjson", include_str!("../demo/logs/ws014-sysmon.ndjson")),
    ("logs/dc01-security.ndjson", include_str!("../demo/logs/dc01-security.ndjson")),
    ("logs/mail01-auth.log", include_str!("../demo/logs/mail01-auth.log")),
    ("rules/linux_sshd_brute_force.yml", include_str!("../demo/rules/linux_sshd_brute_force.yml")),
    ("rules/linux_sshd_failed_password.yml", include_str!("../demo/rules/linux_sshd_failed_password.yml")),
    ("rules/proc_domain_admins_discovery.yml", include_str!("../demo/rules/proc_domain_admins_discovery.yml")),
    ("rules/proc_lsass_dump_comsvcs.yml", include_str!("../demo/rules/proc_lsass_dump_comsvcs.yml")),
    (
        "rules/proc_office_app_spawns_script_host.yml",
        include_str!("../demo/rules/proc_office_app_spawns_script_host.yml"),
    ),
    ("rules/proc_powershell_encoded_hidden.yml", include_str!("../demo/rules/proc_powershell_encoded_hidden.yml")),
    (
        "rules/sec_member_added_to_administrators.yml",
        include_str!("../demo/rules/sec_member_added_to_administrators.yml"),
    ),
    ("rules/sec_network_logon_failed.yml", include_str!("../demo/rules/sec_network_logon_failed.yml")),
    ("rules/sec_password_spraying.yml", include_str!("../demo/rules/sec_password_spraying.yml")),
    ("rules/sec_security_log_cleared.yml", include_str!("../demo/rules/sec_security_log_cleared.yml")),
];

#[derive(Args)]
pub struct DemoArgs {
    /// Where to write the sample logs and rules.
    #[arg(long, default_value = "nigehban-demo")]
    dir: PathBuf,
}

pub fn run(args: DemoArgs) -> anyhow::Result<ExitCode> {
    for (name, text) in FILES {
        let path = args.dir.join(name);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).with_context(|| format!("creating {}", parent.display()))?;
        }
        std::fs::write(&path, text).with_context(|| format!("writing {}", path.display()))?;
    }
    let logs = args.dir.join("logs");
    let rules = args.dir.join("rules");
    eprintln!("Nigehban demo: sample logs in {}, rules in {}", logs.display(), rules.display());
    eprintln!("Hunting: nigehban hunt {} --rules {}\n", logs.display(), rules.display());
    let code = hunt::run(HuntArgs::new(vec![logs], vec![rules]))?;
    eprintln!(
        "\nNext: hunt your own logs (EVTX, JSON, syslog, Zeek; folders are read recursively) with SigmaHQ's rules:\n  \
         nigehban hunt /path/to/logs --rules /path/to/sigma/rules --min-level high\n\
         Add --format csv|json|jsonl --output FILE for a report, and see `nigehban rules check` for rule load reports."
    );
    Ok(code)
}
