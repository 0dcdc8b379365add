//! The `nigehban` command: one binary for every role.

mod admin;
mod demo;
mod hunt;
mod ingest;
mod parse;
mod rules;
mod serve;

use clap::{Parser, Subcommand};

/// jemalloc on Linux. Live monitoring parses events on one thread and detects and frees them
/// on another; glibc's allocator serialises such frees on its arenas' locks, which cost the
/// server about a third of its CPU in the ingest benchmark (BENCHMARKS.md), for the same
/// memory. It also serves the C code's `malloc` (the workspace enables tikv-jemallocator's
/// `unprefixed_malloc_on_supported_platforms`): SQLite's per-value copies, allocated on its
/// connections' threads and freed on the requests', took glibc's arena locks as well
/// (BENCHMARKS.md, Platform API). Hunting runs as fast and as small with either.
/// `--no-default-features` keeps the system's allocator.
#[cfg(all(target_os = "linux", feature = "jemalloc"))]
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

/// Gives the pages of freed memory back to the system now rather than when they have aged
/// (jemalloc keeps them for ten seconds by default, for reuse). For after a large structure
/// that the rest of the run does not need is freed: what comes next then starts from the
/// smaller footprint instead of adding to the larger one.
pub fn release_freed_memory() {
    #[cfg(all(target_os = "linux", feature = "jemalloc"))]
    // SAFETY: `arena.<i>.purge` with `i` = MALLCTL_ARENAS_ALL (4096) reads and writes nothing;
    // the name is a NUL-terminated constant.
    #[allow(unsafe_code)]
    unsafe {
        tikv_jemalloc_sys::mallctl(
            c"arena.4096.purge".as_ptr(),
            std::ptr::null_mut(),
            std::ptr::null_mut(),
            std::ptr::null_mut(),
            0,
        );
    }
}

#[derive(Parser)]
#[command(name = "nigehban", version, about = "Detection, hunting and coordination for a national CERT and its SOC")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// A first look: the platform with a sample constituency and users (or `demo hunt`).
    Demo(demo::DemoArgs),
    /// Run the platform server (web UI and API).
    Serve(serve::ServeArgs),
    /// Operator commands (audit log verification).
    #[command(subcommand)]
    Admin(admin::AdminCommand),
    /// Sweep files and folders of logs with the built-in pack, Sigma rules and indicators.
    Hunt(hunt::HuntArgs),
    /// Send log files, folders or standard input to a platform server for live monitoring.
    Ingest(ingest::IngestArgs),
    /// Show what the readers make of log files: each event's fields, as JSON lines.
    Parse(parse::ParseArgs),
    /// Work with rule sets.
    #[command(subcommand)]
    Rules(rules::RulesCommand),
}

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Demo(args) => demo::run(args),
        Command::Serve(args) => serve::run(args),
        Command::Admin(cmd) => admin::run(cmd),
        Command::Hunt(args) => hunt::run(args),
        Command::Rules(cmd) => rules::run(cmd),
        Command::Parse(args) => parse::run(args),
        Command::Ingest(args) => ingest::run(args),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::ExitCode::from(2)
        }
    }
}
