//! `nigehban demo`: a first look without any data of one's own.
//!
//! `nigehban demo` starts the platform server on an embedded store with a sample national
//! constituency (nCERT, provincial and sectoral CERTs, ministries, a telecom, an oil and gas
//! company…), one user per role and sample incidents, alerts, indicators and an audit
//! engagement; it prints the URL and the logins and writes them, with an API token each, to
//! `demo-credentials.json` in its data directory. Live monitoring runs with the built-in rule
//! pack, and a live feed (`nigehban_server::monitor::demo_stream`) streams ordinary events of a
//! few organisations with an attack every minute or two, so alerts appear within a minute
//! (`--no-stream` turns it off).
//!
//! `nigehban demo hunt` writes a small set of sample logs (a phishing-to-credential-theft chain
//! on a ministry workstation, password spraying against its domain controller, SSH brute force
//! against a mail server) and rules written for them, then hunts over them.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use clap::{Args, Subcommand};
use nigehban_server::ServerConfig;
use nigehban_server::demo::DemoUser;
use nigehban_server::monitor::demo_stream::{self, StreamSettings};
use nigehban_store::Store;

use crate::hunt::{self, HuntArgs};
use crate::serve::{DEFAULT_LISTEN, init_logging, run_server_with};

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
#[command(args_conflicts_with_subcommands = true)]
pub struct DemoArgs {
    #[command(subcommand)]
    command: Option<DemoCommand>,
    /// Data directory of the demo's store.
    #[arg(long, default_value = "nigehban-demo")]
    data: PathBuf,
    /// Address to listen on.
    #[arg(long, default_value = DEFAULT_LISTEN)]
    listen: SocketAddr,
    /// Start over: delete the demo store in the data directory first.
    #[arg(long)]
    fresh: bool,
    #[command(flatten)]
    stream: StreamArgs,
    /// Also receive syslog over TCP at this address (RFC 6587: octet-counted or one message
    /// per line), for example from rsyslog; every sender's messages are the events of the
    /// organisation `--syslog-org`.
    #[arg(long, value_name = "ADDR")]
    syslog_tcp: Option<SocketAddr>,
    /// Short name of the organisation whose events the syslog listener receives.
    #[arg(long, default_value = "mofa", value_name = "ORG")]
    syslog_org: String,
}

/// The live feed of demo events.
#[derive(Args)]
struct StreamArgs {
    /// Do not stream live demo events (no attacks either).
    #[arg(long)]
    no_stream: bool,
    /// Ordinary events per second the stream sends, over all its organisations.
    #[arg(long, default_value_t = 50, value_name = "N")]
    stream_rate: u32,
    /// Seed of the stream (the events and the attacks' order and times); random by default.
    #[arg(long, value_name = "N")]
    stream_seed: Option<u64>,
    /// Minutes the streamed organisations' events are kept (also those you ingest for them):
    /// older ones are deleted once detected, so a demo left running stays small (0: keep all).
    #[arg(long, default_value_t = 30, value_name = "MINUTES")]
    stream_keep_minutes: u64,
}

impl StreamArgs {
    fn settings(&self) -> Option<StreamSettings> {
        if self.no_stream {
            return None;
        }
        let seed = self.stream_seed.unwrap_or_else(|| {
            std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_nanos() as u64)
        });
        Some(StreamSettings {
            seed,
            events_per_second: self.stream_rate,
            keep_events: (self.stream_keep_minutes > 0).then(|| Duration::from_secs(self.stream_keep_minutes * 60)),
            ..StreamSettings::default()
        })
    }
}

/// How late an event may arrive for the demo's correlation windows: short, so that a
/// correlation (brute force, spraying, mass deletion) is decided seconds after its events
/// rather than five minutes.
const DEMO_LATENESS: Duration = Duration::from_secs(5);

#[derive(Subcommand)]
enum DemoCommand {
    /// Hunt over sample logs written for the demo (no server).
    Hunt(HuntDemoArgs),
}

#[derive(Args)]
pub struct HuntDemoArgs {
    /// Where to write the sample logs and rules.
    #[arg(long, default_value = "nigehban-demo/hunt")]
    dir: PathBuf,
}

/// What `demo-credentials.json` holds.
#[derive(serde::Serialize, serde::Deserialize)]
struct Credentials {
    url: String,
    note: String,
    users: Vec<serde_json::Value>,
}

pub fn run(args: DemoArgs) -> anyhow::Result<ExitCode> {
    match args.command {
        Some(DemoCommand::Hunt(h)) => run_hunt(h),
        None => {
            let mut ingest = nigehban_ingest::IngestConfig::default();
            if let Some(addr) = args.syslog_tcp {
                ingest.orgs.default_org = Some(args.syslog_org.clone());
                ingest.syslog_tcp.push(nigehban_ingest::SyslogTcpConfig::new(addr));
            }
            run_server_demo(args.data, args.listen, args.fresh, args.stream.settings(), ingest)
        }
    }
}

fn run_server_demo(
    data: PathBuf,
    listen: SocketAddr,
    fresh: bool,
    stream: Option<StreamSettings>,
    ingest: nigehban_ingest::IngestConfig,
) -> anyhow::Result<ExitCode> {
    init_logging();
    let creds_path = data.join("demo-credentials.json");
    if fresh {
        for name in ["nigehban.db", "nigehban.db-wal", "nigehban.db-shm", "demo-credentials.json"] {
            let p = data.join(name);
            if p.exists() {
                std::fs::remove_file(&p).with_context(|| format!("removing {}", p.display()))?;
            }
        }
    }
    let rt = tokio::runtime::Runtime::new()?;
    rt.block_on(async {
        let store =
            Store::open_sqlite(&data).await.with_context(|| format!("opening the demo store in {}", data.display()))?;
        let url = format!("http://{listen}");
        let creds = if store.orgs().await?.is_empty() {
            eprintln!("Creating the demo constituency (organisations, users, sample material)…");
            let users = nigehban_server::demo::seed(&store).await.map_err(|e| anyhow::anyhow!("{}", e.message))?;
            let creds = credentials(&url, &users);
            write_private(&creds_path, &serde_json::to_vec_pretty(&creds)?)?;
            creds
        } else {
            let text = std::fs::read(&creds_path).with_context(|| {
                format!(
                    "{} holds a store but no demo-credentials.json: start over with --fresh, or use another --data",
                    data.display()
                )
            })?;
            let mut creds: Credentials =
                serde_json::from_slice(&text).with_context(|| format!("reading {}", creds_path.display()))?;
            creds.url = url.clone();
            creds
        };
        print_logins(&creds, &creds_path);
        if let Some(s) = &stream {
            eprintln!(
                "Live events stream in (about {} a second, seed {}); the first attack comes within half a minute:\n  \
                 see Alerts in the web interface, or GET {}/api/v1/alerts with an API token. Turn it off with --no-stream.\n",
                s.events_per_second, s.seed, creds.url
            );
        }
        if let (Some(tcp), Some(org)) = (ingest.syslog_tcp.first(), &ingest.orgs.default_org) {
            if !store.orgs().await?.iter().any(|o| &o.short_name == org) {
                anyhow::bail!("--syslog-org {org}: the demo has no organisation of that short name");
            }
            eprintln!(
                "Syslog over TCP at {} (octet-counted or one message per line): what arrives is {org}'s.\n",
                tcp.listen
            );
        }
        let mut monitoring = crate::serve::MonitoringSetup { ingest, ..Default::default() };
        monitoring.config.lateness = DEMO_LATENESS;
        let node = nigehban_server::monitor::Node::default();
        run_server_with(store, ServerConfig::default(), listen, Some((monitoring, node)), move |state, stop| {
            let (Some(settings), Some(monitor)) = (stream, state.monitor().cloned()) else { return Vec::new() };
            let store = state.store.clone();
            vec![tokio::spawn(async move {
                match demo_stream::sources(&store).await {
                    Ok(orgs) => demo_stream::run(monitor, orgs, settings, stop).await,
                    Err(e) => tracing::error!(message = "The demo stream could not read the organisations.", error = %e),
                }
            })]
        })
        .await
    })?;
    Ok(ExitCode::SUCCESS)
}

fn credentials(url: &str, users: &[DemoUser]) -> Credentials {
    Credentials {
        url: url.to_owned(),
        note: "Demo accounts: each user's password and an API token acting for its organisation with its role \
               (send it as `Authorization: Bearer <api_token>`). Not for production."
            .into(),
        users: users.iter().map(|u| serde_json::to_value(u).unwrap_or_default()).collect(),
    }
}

/// Writes a file readable by its owner only.
fn write_private(path: &std::path::Path, bytes: &[u8]) -> anyhow::Result<()> {
    std::fs::write(path, bytes).with_context(|| format!("writing {}", path.display()))?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))
            .with_context(|| format!("restricting {}", path.display()))?;
    }
    Ok(())
}

fn print_logins(creds: &Credentials, path: &std::path::Path) {
    eprintln!("\nNigehban demo: open {} and sign in as any of these users:\n", creds.url);
    eprintln!("  {:<18} {:<18} {:<18} {:<40}", "username", "password", "role", "organisation");
    for u in &creds.users {
        let f = |k: &str| u.get(k).and_then(|v| v.as_str()).unwrap_or("").to_owned();
        eprintln!("  {:<18} {:<18} {:<18} {:<40}", f("username"), f("password"), f("role"), f("organisation"));
    }
    eprintln!("\nLogins and an API token per user: {}", path.display());
    eprintln!(
        "API: {}/api/v1/openapi.json   Stop with Ctrl-C; run again to continue, or with --fresh to start over.\n",
        creds.url
    );
}

fn run_hunt(args: HuntDemoArgs) -> anyhow::Result<ExitCode> {
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
