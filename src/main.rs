//! `overlink`: a self-hosted Private Link gateway.
//!
//! Subcommands:
//! - `demo`: walks a newcomer through the Private Link workflow on the built-in default
//!   topology: two networks with the same prefix, a service in one, an endpoint in the other.
//! - `ctl`: a client of the admin API (services, endpoints, approvals, flows, counters).

mod ctl;
mod demo;
mod netns_demo;
mod run;

use clap::{Parser, Subcommand};

/// A self-hosted Private Link gateway: reach a service across networks with overlapping IPs.
#[derive(Debug, Parser)]
#[command(name = "overlink", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
#[allow(clippy::large_enum_variant, reason = "parsed once at start-up")]
enum Command {
    /// Run the gateway with a configuration file until SIGINT/SIGTERM.
    Run(run::RunArgs),
    /// Run the built-in demo: consumer and service in two networks with identical prefixes
    /// (network namespaces, needs root; `--in-memory` runs the engine alone, without root).
    Demo {
        /// Drive the engine over in-memory ports instead of namespaces.
        #[arg(long)]
        in_memory: bool,
    },
    /// The demo's service (runs inside the provider namespace).
    #[command(hide = true)]
    DemoServe { addr: std::net::SocketAddr },
    /// The demo's client (runs inside the consumer namespace).
    #[command(hide = true)]
    DemoFetch { addr: std::net::SocketAddr },
    /// Talk to a running gateway's admin API.
    Ctl {
        #[command(flatten)]
        connection: ctl::Connection,
        #[command(subcommand)]
        command: ctl::CtlCommand,
    },
}

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Run(args) => run::run(&args),
        Command::Demo { in_memory: true } => demo::run(),
        Command::Demo { in_memory: false } => netns_demo::run(),
        Command::DemoServe { addr } => netns_demo::serve(addr),
        Command::DemoFetch { addr } => netns_demo::fetch(addr),
        Command::Ctl { connection, command } => ctl::run(&connection, command),
    };
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            // One line: the error and its causes, without a backtrace.
            eprintln!("overlink: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
