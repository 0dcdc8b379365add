//! The server's tests: through HTTP, against SQLite always and against a fresh PostgreSQL
//! database when `NIGEHBAN_TEST_PG` is set (`.ci/run` sets it).

mod bad_input;
mod cert_rules;
mod common;
mod demo_stream;
mod matrix_http;
mod monitoring;
mod notify;
mod overload;
mod retrohunt;
mod scaleout;
mod ui_alerts;
mod ui_e2e;
