//! The `push-cache` command: `push-cache --config FILE [--secrets DIR]` runs
//! the service; `push-cache schema-registry --listen ADDR [--data FILE]` runs
//! the local Schema Registry used for local stacks and tests.
//!
//! Exit codes: 0 after a clean stop, 2 for bad arguments or configuration,
//! 1 when the service cannot start.

use push_cache::service;
use std::process::ExitCode;

const USAGE: &str = "usage:
  push-cache --config FILE [--secrets DIR]
  push-cache schema-registry --listen ADDR [--data FILE]";

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    init_logging();
    let result = match args.first().map(String::as_str) {
        Some("schema-registry") => service::run_registry(&args[1..]),
        Some("--help" | "-h") => {
            println!("{USAGE}");
            return ExitCode::SUCCESS;
        }
        Some("--version" | "-V") => {
            println!("push-cache {}", env!("CARGO_PKG_VERSION"));
            return ExitCode::SUCCESS;
        }
        _ => service::run_server(&args),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("push-cache: {e}");
            if e.is_usage() {
                eprintln!("{USAGE}");
            }
            ExitCode::from(e.exit_code())
        }
    }
}

/// Log level from `CAPTURE_LOG` (EnvFilter syntax), `warn` by default.
fn init_logging() {
    let filter = tracing_subscriber::EnvFilter::try_from_env("CAPTURE_LOG").unwrap_or_else(|_| "warn".into());
    tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).init();
}
