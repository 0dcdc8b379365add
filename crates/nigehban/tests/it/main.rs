//! The `nigehban` command as a user runs it.

mod cli;
mod ingest;
mod kill9;
mod multinode;
mod net;
mod rsyslog;
mod server;
