//! `kcdscope tui`, `kcdscope replay --tui` and `kcdscope` on a terminal: the incident UI.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, ValueEnum};
use kcd_tui::{Input, Options, Source, Speed};

use crate::{demo, DiagnosisArgs, Limits};

#[derive(Clone, Copy, ValueEnum)]
pub enum SpeedArg {
    #[value(name = "1")]
    X1,
    #[value(name = "10")]
    X10,
    #[value(name = "100")]
    X100,
    Max,
}

#[derive(Args)]
pub struct TuiArgs {
    /// Capture files to replay (pcap or pcapng), in order.
    #[arg(value_name = "FILE", conflicts_with = "events")]
    files: Vec<PathBuf>,
    /// The incident captures built into kcdscope (the default without FILEs or --events).
    #[arg(long, conflicts_with = "events")]
    demo: bool,
    /// An NDJSON event file (the agent's or the gateway's) instead of captures.
    #[arg(long, value_name = "FILE")]
    events: Option<PathBuf>,
    /// With --events: keep reading as the file grows.
    #[arg(long, requires = "events")]
    follow: bool,
    /// The gateway's own events, joined with the captures in time order (devices).
    #[arg(long, value_name = "FILE", conflicts_with = "events")]
    gateway_events: Option<PathBuf>,
    /// Replay speed to start with.
    #[arg(long, value_enum, default_value = "10")]
    speed: SpeedArg,
    /// No colour (as NO_COLOR does): glyphs, words and reverse video only.
    #[arg(long)]
    mono: bool,
    #[command(flatten)]
    diagnosis: DiagnosisArgs,
    #[command(flatten)]
    limits: Limits,
}

fn speed(s: SpeedArg) -> Speed {
    match s {
        SpeedArg::X1 => Speed::X1,
        SpeedArg::X10 => Speed::X10,
        SpeedArg::X100 => Speed::X100,
        SpeedArg::Max => Speed::Max,
    }
}

fn inputs(files: &[PathBuf], demo_too: bool) -> (Vec<Input>, String) {
    let mut v = Vec::new();
    if demo_too || files.is_empty() {
        v.extend(demo::INCIDENT.iter().map(|(n, b)| Input::Bytes((*n).to_string(), b)));
    }
    v.extend(files.iter().cloned().map(Input::File));
    let label = match (files.len(), demo_too || files.is_empty()) {
        (0, _) => "replay: the bundled incident".to_string(),
        (1, false) => format!("replay: {}", files[0].display()),
        (n, false) => format!("replay: {n} files"),
        (n, true) => format!("replay: the bundled incident and {n} files"),
    };
    (v, label)
}

fn go(src: Source, label: String, speed: Speed, mono: bool) -> ExitCode {
    let color = !mono && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty());
    let opts = Options { label, color, speed, export_dir: PathBuf::from("."), capture: None };
    match kcd_tui::run(src, opts) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("kcdscope: the terminal UI failed: {e}");
            ExitCode::from(1)
        }
    }
}

pub fn from_replay(files: &[PathBuf], demo_too: bool, gateway_events: Option<&PathBuf>, d: &DiagnosisArgs, l: &Limits) -> ExitCode {
    let (mut inputs, label) = inputs(files, demo_too);
    inputs.extend(gateway_events.cloned().map(Input::GatewayEvents));
    go(Source::Replay { inputs, decode: l.config(), diagnosis: d.config() }, label, Speed::X10, false)
}

pub fn run(a: TuiArgs) -> ExitCode {
    let sp = speed(a.speed);
    if let Some(p) = a.events {
        let label = format!("events: {}{}", p.display(), if a.follow { " (following)" } else { "" });
        return go(Source::Events { path: p, follow: a.follow, diagnosis: a.diagnosis.config() }, label, sp, a.mono);
    }
    let (mut inputs, label) = inputs(&a.files, a.demo);
    inputs.extend(a.gateway_events.map(Input::GatewayEvents));
    go(Source::Replay { inputs, decode: a.limits.config(), diagnosis: a.diagnosis.config() }, label, sp, a.mono)
}
