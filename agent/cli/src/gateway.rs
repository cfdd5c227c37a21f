//! `kcdscope gateway`: the certificate-to-Kerberos gateway (kcd-gateway) as a command.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::{Arc, Mutex};

use anyhow::{Context, Result};
use clap::{Args, Subcommand};
use kcd_client::{EventSink, NoEvents};
use kcd_gateway::config::GatewayConfig;

#[derive(Args)]
#[command(args_conflicts_with_subcommands = true)]
pub struct GatewayArgs {
    #[command(subcommand)]
    command: Option<GatewayCommand>,
    /// The gateway's configuration (TOML; `kcdscope gateway example-config` prints one).
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,
    /// Write one NDJSON event per request (and the delegation client's events) to FILE, or
    /// to the Unix stream socket at PATH with `unix:PATH`; repeatable.
    #[arg(long, value_name = "FILE")]
    events: Vec<PathBuf>,
    /// --bulk/--hec/--kafka/--syslog ship the first --events FILE (the spool), as `replay -o` does.
    #[command(flatten)]
    ship: crate::outputs::ShipArgs,
    /// The --events files' rotation and fsync.
    #[command(flatten)]
    file: crate::outputs::RotationArgs,
}

#[derive(Subcommand)]
enum GatewayCommand {
    /// Print a commented example configuration.
    ExampleConfig,
    /// Check a configuration (files, certificates, keys included) and print it without secrets.
    CheckConfig {
        #[arg(long, value_name = "FILE")]
        config: PathBuf,
    },
}

pub fn run(a: GatewayArgs) -> Result<ExitCode> {
    match a.command {
        Some(GatewayCommand::ExampleConfig) => {
            print!("{}", kcd_gateway::config::EXAMPLE);
            Ok(ExitCode::SUCCESS)
        }
        Some(GatewayCommand::CheckConfig { config }) => match GatewayConfig::load(&config) {
            Ok(c) => {
                println!("{c:#?}");
                Ok(ExitCode::SUCCESS)
            }
            Err(e) => {
                eprintln!("kcdscope: {e}");
                Ok(ExitCode::from(2))
            }
        },
        None => {
            let Some(config) = a.config else {
                eprintln!("kcdscope: gateway needs --config FILE (kcdscope gateway example-config prints one)");
                return Ok(ExitCode::from(2));
            };
            if let Err(e) = GatewayConfig::load(&config) {
                eprintln!("kcdscope: {e}");
                return Ok(ExitCode::from(2));
            }
            tracing_subscriber::fmt().with_writer(std::io::stderr).with_target(false).init();
            let mut sinks: Vec<Arc<dyn EventSink>> = Vec::new();
            for p in &a.events {
                match p.to_str().and_then(|s| s.strip_prefix("unix:")) {
                    Some(sock) => sinks.push(Arc::new(kcd_gateway::server::NdjsonSocket::new(sock.into()))),
                    // Appended to, as before a restart; rotated as -o is.
                    None => sinks.push(Arc::new(kcd_gateway::server::NdjsonFile(Mutex::new(std::io::BufWriter::new(
                        kcd_export::outputs::file::RotatingFile::append(p, a.file.rotation(p, &a.ship))
                            .with_context(|| format!("cannot open {}", p.display()))?,
                    ))))),
                }
            }
            let events: Arc<dyn EventSink> = match sinks.len() {
                0 => Arc::new(NoEvents),
                1 => sinks.remove(0),
                _ => Arc::new(kcd_gateway::server::FanOut(sinks)),
            };
            let spool = a.events.iter().find(|p| !p.to_str().is_some_and(|s| s.starts_with("unix:")));
            if a.file.given() && spool.is_none() {
                anyhow::bail!("--rotate-*, --fsync and --spool-max-bytes are of an --events FILE: give one");
            }
            let shippers = match (a.ship.any(), spool) {
                (false, _) => None,
                (true, Some(p)) => Some(a.ship.start(p, Arc::new(std::sync::atomic::AtomicBool::new(false)))?),
                (true, None) => anyhow::bail!("--bulk, --hec, --kafka and --syslog ship an --events FILE: give one"),
            };
            let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build().context("starting the runtime")?;
            let extra: Vec<Box<dyn prometheus_client::collector::Collector>> = shippers.iter().map(|s| Box::new(s.metrics()) as _).collect();
            let r = rt.block_on(kcd_gateway::server::run_with_metrics(config, events, extra));
            // The gateway has stopped writing: the shippers get --ship-drain-seconds to finish.
            let shipped = shippers.is_none_or(|s| s.finish(false));
            match r {
                Ok(()) if shipped => Ok(ExitCode::SUCCESS),
                Ok(()) => Ok(ExitCode::from(1)),
                Err(e) => {
                    eprintln!("kcdscope: {e}");
                    Ok(ExitCode::from(1))
                }
            }
        }
    }
}
