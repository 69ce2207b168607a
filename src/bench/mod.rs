//! `sockit bench ADDR`: the load generator.
//!
//! [`run`] checks the command line into a `load::Plan`, runs it on its own
//! worker threads (`load`), shows a progress line on a terminal, and
//! prints the `report::Report` as text or JSON (`report`).

pub(crate) mod load;
mod reconnect;
pub(crate) mod report;

use std::io::{IsTerminal, Write};
use std::time::Duration;

use anyhow::{Context, anyhow};

use crate::cli::BenchArgs;
use crate::error::UsageError;
use crate::net::addr::{DefaultScheme, Endpoint};
use crate::net::connect::Connector;
use crate::service::ping::MIN_REQUEST;
use load::{Plan, Request};
use report::{Report, Scenario};

/// The largest datagram request: the most a UDP datagram over IPv4 carries.
const MAX_DATAGRAM: usize = 65_507;

/// The largest stream request; sockit's own services take lines up to
/// 64 KiB by default, and this leaves room for bigger `--max-line`s.
const MAX_STREAM_REQUEST: usize = 16 << 20;

/// The lowest `--rate`: one request every 1000 s. With at most 10,000
/// connections, each one's send interval stays below four months.
pub const MIN_RATE: f64 = 0.001;

/// The highest `--rate`: well beyond what one host sends, and low enough
/// that each connection's send interval is at least a nanosecond.
pub const MAX_RATE: f64 = 100_000_000.0;

/// Runs a benchmark. It starts its own runtimes (one per worker thread),
/// so it is called outside any runtime.
///
/// # Errors
/// Bad options or address (exit status 2); a connection that cannot be
/// opened or does not answer; no request completed.
pub fn run(args: &BenchArgs) -> anyhow::Result<()> {
    let plan = plan(args)?;
    let mut display = Display::new(&plan);
    let outcome = load::run(&plan, &mut display, crate::shutdown::interrupted());
    display.finish();
    let outcome = outcome?;

    let scenario = Scenario {
        addr: plan.addr.clone(),
        transport: plan.endpoint.scheme(),
        mode: if plan.reconnect {
            "reconnect"
        } else if plan.rate.is_some() {
            "open"
        } else {
            "closed"
        },
        connections: plan.connections,
        pipeline: plan.pipeline,
        threads: plan.threads.min(plan.connections),
        request_size: plan.request.bytes.len(),
        target_rate: plan.rate,
        warmup_s: plan.warmup.as_secs_f64(),
    };
    let report = Report::new(scenario, outcome.elapsed, &outcome.totals, &outcome.latency);
    let mut out = std::io::stdout().lock();
    if args.json {
        writeln!(out, "{}", report.to_json())?;
    } else {
        write!(out, "{}", report.to_text())?;
    }
    out.flush().context("write to stdout")?;
    if report.requests == 0 {
        return Err(anyhow!(
            "no request to {} completed in {:.1}s",
            plan.addr,
            report.duration_s
        ));
    }
    Ok(())
}

/// Checks the command line.
fn plan(args: &BenchArgs) -> anyhow::Result<Plan> {
    let endpoint = Endpoint::parse(&args.addr, DefaultScheme::Tcp)?;
    let usage = |msg: String| -> anyhow::Error { UsageError(msg).into() };
    let request = match &args.request {
        Some(line) if line.contains(['\n', '\r']) => {
            return Err(usage(
                "invalid request: --request is one line, without a line end".into(),
            ));
        }
        Some(line) => Request::custom(line),
        None if args.size < MIN_REQUEST => {
            return Err(usage(format!(
                "invalid -s/--size {}: at least {MIN_REQUEST} bytes (`ping\\n`)",
                args.size
            )));
        }
        None => Request::generated(args.size),
    };
    let max = if endpoint.is_datagram() {
        MAX_DATAGRAM
    } else {
        MAX_STREAM_REQUEST
    };
    if request.bytes.len() > max {
        let (len, scheme) = (request.bytes.len(), endpoint.scheme());
        return Err(usage(match args.request {
            Some(_) => format!(
                "invalid --request: {len} bytes with its line end, at most {max} over {scheme}"
            ),
            None => format!("invalid -s/--size {len}: at most {max} bytes over {scheme}"),
        }));
    }
    let threads = match args.threads {
        Some(n) => n as usize,
        None => std::thread::available_parallelism().map_or(1, usize::from),
    };
    let addr = endpoint.to_string();
    if args.reconnect && endpoint.is_datagram() {
        return Err(usage(format!(
            "--reconnect opens a connection per request: {} has none",
            endpoint.scheme()
        )));
    }
    if args.no_resume && !matches!(endpoint, Endpoint::Tls(_)) {
        return Err(usage("--no-resume is for tls:// addresses".into()));
    }
    let mut tls = args.tls.options();
    tls.no_resume = args.no_resume;
    let connector = Connector::new(&endpoint, load::CONNECT_TIMEOUT, &tls)?;
    Ok(Plan {
        endpoint,
        connector,
        reconnect: args.reconnect,
        addr,
        connections: args.connections as usize,
        pipeline: args.pipeline as usize,
        threads,
        warmup: args.warmup,
        duration: args.duration,
        rate: args.rate,
        timeout: args.timeout,
        request,
    })
}

/// The live progress line: an indicatif bar on stderr when stderr is a
/// terminal, nothing otherwise (scripts and CI get the result alone).
struct Display {
    bar: Option<indicatif::ProgressBar>,
    warmup: Duration,
    /// The counts and time of the previous tick, for the live rate.
    last: (u64, Duration),
}

impl Display {
    fn new(plan: &Plan) -> Display {
        let bar = std::io::stderr().is_terminal().then(|| {
            let total = plan.warmup + plan.duration;
            let bar = indicatif::ProgressBar::with_draw_target(
                Some(total.as_millis() as u64),
                indicatif::ProgressDrawTarget::stderr(),
            );
            let style = indicatif::ProgressStyle::with_template("{bar:30} {elapsed:>4} {msg}")
                .expect("a valid template")
                .progress_chars("=> ");
            bar.set_style(style);
            bar.set_message(format!("connecting to {}", plan.addr));
            bar
        });
        Display {
            bar,
            warmup: plan.warmup,
            last: (0, Duration::ZERO),
        }
    }

    fn finish(&mut self) {
        if let Some(bar) = self.bar.take() {
            bar.finish_and_clear();
        }
    }
}

impl load::Watch for Display {
    fn tick(&mut self, elapsed: Duration, replies: u64, errors: u64) {
        let Some(bar) = &self.bar else {
            return;
        };
        let (last_replies, last_time) = self.last;
        let span = elapsed.saturating_sub(last_time).as_secs_f64();
        bar.set_position(elapsed.as_millis() as u64);
        if last_time.is_zero() && replies == 0 {
            // Connected, nothing back yet: say so rather than "connecting".
            bar.set_message(if elapsed < self.warmup {
                "warm-up"
            } else {
                "running"
            });
        }
        if span < 0.5 {
            return;
        }
        let rate = (replies - last_replies) as f64 / span;
        self.last = (replies, elapsed);
        let phase = if elapsed < self.warmup {
            "warm-up, "
        } else {
            ""
        };
        bar.set_message(format!("{phase}{rate:.0} req/s, {errors} errors"));
    }
}
