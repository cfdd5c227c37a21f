//! `kcdscope kcd token`: the gateway's delegation client on its own, for an administrator
//! checking a configuration (does alice get a ticket for Exchange, and if not, why) and for
//! the tests that hold it against real KDCs.

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Instant;

use anyhow::{anyhow, bail, Context, Result};
use clap::{Args, Subcommand};
use kcd_client::{Config, EventSink, KcdClient, KcdError, NoEvents, Token};

#[derive(Subcommand)]
pub enum KcdCommand {
    /// Obtain a Negotiate token for a user through S4U2Self + S4U2Proxy, and print it (or
    /// send it to a URL). On failure, print which step failed, the KDC's error and the fix.
    Token(TokenArgs),
    /// Check a configuration file and print it back without its secrets.
    CheckConfig {
        #[arg(long, value_name = "FILE")]
        config: PathBuf,
    },
    /// Print an example configuration.
    ExampleConfig,
}

#[derive(Args)]
pub struct TokenArgs {
    /// The gateway's configuration (TOML; `kcdscope kcd example-config` prints one).
    #[arg(long, value_name = "FILE")]
    config: PathBuf,
    /// The user, as a UPN (alice@lab.test).
    #[arg(long)]
    user: String,
    /// The target SPN; default: kcd.target_spn from the configuration.
    #[arg(long)]
    spn: Option<String>,
    /// Send `GET URL` with the token and print the status and body.
    #[arg(long, value_name = "URL")]
    url: Option<String>,
    /// Obtain tokens in this many rounds, one after another (later ones use the cached
    /// ticket).
    #[arg(long, default_value_t = 1, value_name = "N")]
    repeat: u64,
    /// Obtain this many tokens at the same time in each round (the first round's share one
    /// S4U exchange).
    #[arg(long, default_value_t = 1, value_name = "N")]
    concurrent: u32,
    /// Write the client's events (NDJSON, the agent's schema) to this file.
    #[arg(long, value_name = "FILE")]
    events: Option<PathBuf>,
    /// Print no tokens, only the summary (for timing many tokens).
    #[arg(long)]
    quiet: bool,
    /// First learn what the KDC does with enterprise names, as the gateway does when it
    /// starts (one S4U2Self for the service account itself), and print it.
    #[arg(long)]
    learn_enterprise_names: bool,
}

pub fn run(cmd: KcdCommand) -> Result<ExitCode> {
    match cmd {
        KcdCommand::ExampleConfig => {
            print!("{}", kcd_client::config::EXAMPLE);
            Ok(ExitCode::SUCCESS)
        }
        KcdCommand::CheckConfig { config } => {
            let c = Config::load(&config).map_err(|e| anyhow!("{e}"))?;
            println!("{c:#?}");
            Ok(ExitCode::SUCCESS)
        }
        KcdCommand::Token(a) => token(a),
    }
}

fn explain(e: &KcdError, spn: &str) -> String {
    let mut s = format!("kcdscope: {e}\n  finding: {}\n  fix: {}", e.finding_id(), e.fix(Some(spn)));
    if let KcdError::Kdc { ntstatus: Some(st), .. } = e {
        s.push_str(&format!("\n  NTSTATUS: {st}"));
    }
    s.push_str(&format!("\n  the gateway would answer the device: HTTP {}", e.http_status()));
    s
}

fn token(a: TokenArgs) -> Result<ExitCode> {
    let cfg = match Config::load(&a.config) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("kcdscope: {e}");
            return Ok(ExitCode::from(2));
        }
    };
    if !cfg.enabled {
        eprintln!("kcdscope: kcd.enabled is false in {}", a.config.display());
        return Ok(ExitCode::from(2));
    }
    if a.repeat == 0 || a.concurrent == 0 {
        eprintln!("kcdscope: --repeat and --concurrent must be at least 1");
        return Ok(ExitCode::from(2));
    }
    // Before any KDC traffic: a URL this command cannot fetch is a usage error.
    if let Some(url) = &a.url {
        if let Err(e) = check_url(url) {
            eprintln!("kcdscope: --url {url}: {e}");
            return Ok(ExitCode::from(2));
        }
    }
    let spn = a.spn.clone().unwrap_or_else(|| cfg.target_spn.clone());
    let events: Arc<dyn EventSink> = match &a.events {
        Some(p) => Arc::new(kcd_gateway::server::NdjsonFile(std::sync::Mutex::new(std::io::BufWriter::new(
            std::fs::File::create(p).with_context(|| format!("cannot create {}", p.display()))?,
        )))),
        None => Arc::new(NoEvents),
    };
    let client = Arc::new(KcdClient::new(cfg, events.clone()));
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    // --repeat rounds of --concurrent tokens each: exactly repeat x concurrent tokens.
    let outcome = rt.block_on(async {
        let start = Instant::now();
        let mut tokens: Vec<Result<Token, KcdError>> = Vec::new();
        let mut first_latency = None;
        let mut last = None;
        if a.learn_enterprise_names {
            match client.learn_enterprise_names().await {
                Ok(Some(true)) => println!("the KDC keeps enterprise names in S4U2Self tickets: users are asked for under their account names"),
                Ok(_) => println!("the KDC canonicalises enterprise names in S4U2Self tickets: users are asked for under their UPNs"),
                Err(e) => eprintln!("kcdscope: the KDC's way with enterprise names not learnt ({e}); the first user will show it"),
            }
        }
        for _ in 0..a.repeat {
            let t0 = Instant::now();
            let mut round = Vec::with_capacity(a.concurrent as usize);
            if a.concurrent == 1 {
                round.push(client.token(&a.user, a.spn.as_deref()).await);
            } else {
                let mut set = tokio::task::JoinSet::new();
                for _ in 0..a.concurrent {
                    let c = client.clone();
                    let (u, s) = (a.user.clone(), a.spn.clone());
                    set.spawn(async move { c.token(&u, s.as_deref()).await });
                }
                while let Some(r) = set.join_next().await {
                    round.push(r.map_err(|e| KcdError::Config { key: "task".into(), problem: e.to_string() })?);
                }
            }
            first_latency.get_or_insert(t0.elapsed());
            for r in round {
                match r {
                    // --quiet keeps one token (for the summary's names) and every failure.
                    Ok(t) if a.quiet => last = Some(t),
                    other => tokens.push(other),
                }
            }
        }
        if let Some(t) = last {
            tokens.push(Ok(t));
        }
        Ok::<_, KcdError>((tokens, first_latency, start.elapsed()))
    });
    let mut failed = false;
    let write_events = || events.flush().context("writing the events");
    let (tokens, first_latency, total) = match outcome {
        Ok(x) => x,
        Err(e) => {
            write_events()?;
            eprintln!("{}", explain(&e, &spn));
            return Ok(ExitCode::from(1));
        }
    };
    let adopted = client.adopted_clock();
    if let Some((kdc, off)) = &adopted {
        eprintln!("kcdscope: {}", kcd_client::adopted_words(kdc, *off));
    }
    let mut out = std::io::stdout().lock();
    let mut first_err = None;
    let mut skew_explained = false;
    for t in &tokens {
        match t {
            Ok(t) => {
                if let Some(url) = &a.url {
                    let (status, body) = rt.block_on(get(url, &t.header_value()))?;
                    writeln!(out, "HTTP {status}")?;
                    out.write_all(&body)?;
                    if !body.ends_with(b"\n") && !body.is_empty() {
                        writeln!(out)?;
                    }
                    if !(200..300).contains(&status) {
                        failed = true;
                    }
                    if status == 401 && !skew_explained {
                        if let Some((kdc, off)) = &adopted {
                            skew_explained = true;
                            eprintln!("{}", target_skew(kdc, *off));
                        }
                    }
                } else if !a.quiet {
                    writeln!(out, "{}", t.header_value())?;
                }
            }
            Err(e) => {
                failed = true;
                if first_err.is_none() {
                    first_err = Some(e.clone());
                }
            }
        }
    }
    drop(out);
    write_events()?;
    if let Some(e) = first_err {
        eprintln!("{}", explain(&e, &spn));
    }
    let n = a.repeat * u64::from(a.concurrent);
    if let (Some(ok), true) = (tokens.iter().find_map(|t| t.as_ref().ok()), n > 1 || a.quiet) {
        eprintln!(
            "kcdscope: tokens for {} to {}; first {} {:.2} ms; {n} token{} in {:.3} s ({:.0} per second); clock offset {} s",
            ok.client,
            ok.spn,
            if a.concurrent > 1 { "round" } else { "token" },
            first_latency.map(|d| d.as_secs_f64() * 1e3).unwrap_or(0.0),
            if n == 1 { "" } else { "s" },
            total.as_secs_f64(),
            n as f64 / total.as_secs_f64().max(1e-9),
            client.clock_offset_seconds()
        );
    } else if let Some(ok) = tokens.iter().find_map(|t| t.as_ref().ok()) {
        eprintln!("kcdscope: token for {} to {}", ok.client, ok.spn);
    }
    Ok(if failed { ExitCode::from(1) } else { ExitCode::SUCCESS })
}

/// The target refused a token made on a KDC's adopted clock: say whose clock is wrong.
fn target_skew(kdc: &str, off: i64) -> String {
    let rule = &kcd_findings::catalogue::CLOCK_SKEW;
    format!(
        "kcdscope: the target refused the token (HTTP 401) after the client adopted KDC {kdc}'s clock ({off:+} s from this host's): this host and the target agree, so KDC {kdc}'s clock is the wrong one\n  finding: {}\n  fix: {} Here: correct the time on domain controller {kdc} (w32tm /resync, or its NTP source).",
        rule.id, rule.fix
    )
}

/// The URLs `get` can fetch: plain http:// with a host.
fn check_url(url: &str) -> Result<hyper::Uri> {
    let uri: hyper::Uri = url.parse().with_context(|| format!("{url:?} is not a URL"))?;
    if uri.scheme_str() != Some("http") {
        bail!("only http:// URLs are supported here (HTTPS to Exchange is the gateway's job)");
    }
    if uri.host().is_none() {
        bail!("no host");
    }
    Ok(uri)
}

/// GET over plain HTTP/1.1 with the token (the gateway's GET, the CRL fetcher's too).
/// (HTTPS to Exchange is the gateway's job.)
async fn get(url: &str, authorization: &str) -> Result<(u16, Vec<u8>)> {
    check_url(url)?;
    let client = kcd_gateway::fetch::http_client(std::time::Duration::from_secs(10));
    let (status, _, body) = kcd_gateway::fetch::http_get(&client, url, &[(hyper::header::AUTHORIZATION, authorization)], 64 << 20)
        .await
        .map_err(|e| anyhow!("GET {url}: {e}"))?;
    Ok((status.as_u16(), body.to_vec()))
}

