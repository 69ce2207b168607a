//! What a load run measured, and how it is reported: [`Totals`] holds the
//! counters, and [`Report`] turns them and the run's [`Latency`] histogram
//! into the text summary or the `--json` object (fields documented in
//! `docs/bench.md`).

use std::fmt::Write as _;
use std::time::Duration;

use serde::Serialize;

use crate::stats::{Latency, LatencySummary, format_ms};

/// A byte count in binary units, as sizes are written on the command line.
pub(crate) fn format_bytes(bytes: f64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut value = bytes;
    let mut unit = 0;
    while value >= 1024.0 && unit < UNITS.len() - 1 {
        value /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{value:.0} B")
    } else {
        format!("{value:.2} {}", UNITS[unit])
    }
}

/// The counters of a run (or of one worker), inside the measured window.
#[derive(Debug, Default, Clone, Copy)]
pub(crate) struct Totals {
    /// Requests that got their reply.
    pub(crate) requests: u64,
    pub(crate) bytes_sent: u64,
    pub(crate) bytes_received: u64,
    /// Requests that did not get a reply (timed out, or lost with a broken
    /// connection), and connections that could not be reopened.
    pub(crate) errors: u64,
    /// Of the errors, the datagram requests whose reply did not come within
    /// `--timeout`.
    pub(crate) timeouts: u64,
    /// Replies that matched no request in flight: a datagram reply after its
    /// request timed out, or a stream line no request asked for.
    pub(crate) unexpected: u64,
    /// Connections opened for a request (`--reconnect`).
    pub(crate) handshakes: u64,
    /// Of those, the TLS sessions resumed rather than negotiated in full.
    pub(crate) resumed: u64,
}

impl Totals {
    /// Adds `other`'s counts.
    pub(crate) fn add(&mut self, other: &Totals) {
        self.requests += other.requests;
        self.bytes_sent += other.bytes_sent;
        self.bytes_received += other.bytes_received;
        self.errors += other.errors;
        self.timeouts += other.timeouts;
        self.unexpected += other.unexpected;
        self.handshakes += other.handshakes;
        self.resumed += other.resumed;
    }
}

/// What a run was asked to do, as the report repeats it.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct Scenario {
    pub(crate) addr: String,
    pub(crate) transport: &'static str,
    /// `closed` (keep `pipeline` requests in flight), `open` (`--rate`) or
    /// `reconnect` (a new connection per request).
    pub(crate) mode: &'static str,
    pub(crate) connections: usize,
    pub(crate) pipeline: usize,
    pub(crate) threads: usize,
    /// Bytes per request, line end included.
    pub(crate) request_size: usize,
    /// Requests per second asked for (open loop only).
    pub(crate) target_rate: Option<f64>,
    pub(crate) warmup_s: f64,
}

/// The outcome of a run: the `--json` object, and the text summary.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct Report {
    #[serde(flatten)]
    pub(crate) scenario: Scenario,
    /// The measured window: `-d`, or less after Ctrl-C.
    pub(crate) duration_s: f64,
    pub(crate) requests: u64,
    pub(crate) requests_per_sec: f64,
    pub(crate) bytes_sent: u64,
    pub(crate) bytes_received: u64,
    pub(crate) sent_bytes_per_sec: f64,
    pub(crate) received_bytes_per_sec: f64,
    pub(crate) errors: u64,
    pub(crate) timeouts: u64,
    pub(crate) unexpected_replies: u64,
    /// `--reconnect` only: connections opened (TLS: handshakes), per
    /// second, and how many of the TLS sessions were resumed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) handshakes: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) handshakes_per_sec: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) resumed: Option<u64>,
    /// Milliseconds; from the intended send time in open loop. `null` when
    /// no request completed.
    pub(crate) latency_ms: Option<LatencySummary>,
}

impl Report {
    /// Builds the report of a run that measured for `elapsed`.
    pub(crate) fn new(
        scenario: Scenario,
        elapsed: Duration,
        totals: &Totals,
        latency: &Latency,
    ) -> Report {
        let secs = elapsed.as_secs_f64();
        let per_sec = |n: u64| {
            if secs > 0.0 {
                (n as f64 / secs * 10.0).round() / 10.0
            } else {
                0.0
            }
        };
        Report {
            duration_s: (secs * 1e3).round() / 1e3,
            requests: totals.requests,
            requests_per_sec: per_sec(totals.requests),
            bytes_sent: totals.bytes_sent,
            bytes_received: totals.bytes_received,
            sent_bytes_per_sec: per_sec(totals.bytes_sent),
            received_bytes_per_sec: per_sec(totals.bytes_received),
            errors: totals.errors,
            timeouts: totals.timeouts,
            unexpected_replies: totals.unexpected,
            handshakes: (scenario.mode == "reconnect").then_some(totals.handshakes),
            handshakes_per_sec: (scenario.mode == "reconnect").then(|| per_sec(totals.handshakes)),
            resumed: (scenario.mode == "reconnect" && scenario.transport == "tls")
                .then_some(totals.resumed),
            latency_ms: latency.summary(),
            scenario,
        }
    }

    /// The `--json` object, on one line.
    pub(crate) fn to_json(&self) -> String {
        serde_json::to_string(self).expect("a report always serialises")
    }

    /// The text summary, one figure per line.
    pub(crate) fn to_text(&self) -> String {
        let s = &self.scenario;
        let mut out = String::new();
        let mode = match s.target_rate {
            Some(rate) => format!("open loop at {rate} req/s"),
            None if s.mode == "reconnect" => "a new connection per request".to_owned(),
            None => "closed loop".to_owned(),
        };
        let _ = writeln!(
            out,
            "{}: {} connection{} x {} pipeline, {}, {}-byte requests, {} thread{}",
            s.addr,
            s.connections,
            plural(s.connections),
            s.pipeline,
            mode,
            s.request_size,
            s.threads,
            plural(s.threads),
        );
        let _ = writeln!(
            out,
            "  duration  {:.2}s (after {:.2}s warm-up)",
            self.duration_s, s.warmup_s
        );
        let _ = writeln!(
            out,
            "  requests  {} ({:.1}/s)",
            self.requests, self.requests_per_sec
        );
        let _ = writeln!(
            out,
            "  sent      {} ({}/s)",
            format_bytes(self.bytes_sent as f64),
            format_bytes(self.sent_bytes_per_sec)
        );
        let _ = writeln!(
            out,
            "  received  {} ({}/s)",
            format_bytes(self.bytes_received as f64),
            format_bytes(self.received_bytes_per_sec)
        );
        let _ = write!(
            out,
            "  errors    {} ({} timeouts",
            self.errors, self.timeouts
        );
        if self.unexpected_replies > 0 {
            let _ = write!(out, ", {} unexpected replies", self.unexpected_replies);
        }
        out.push_str(")\n");
        if let (Some(opened), Some(per_sec)) = (self.handshakes, self.handshakes_per_sec) {
            let _ = write!(out, "  opened    {opened} connections ({per_sec:.1}/s)");
            if let Some(resumed) = self.resumed {
                let _ = write!(out, ", {resumed} TLS sessions resumed");
            }
            out.push('\n');
        }
        match &self.latency_ms {
            None => out.push_str("  latency   no request completed\n"),
            Some(l) => {
                let _ = writeln!(
                    out,
                    "  latency   min {}  avg {}  max {}  stdev {} ms",
                    format_ms(l.min),
                    format_ms(l.avg),
                    format_ms(l.max),
                    format_ms(l.mdev)
                );
                let _ = writeln!(
                    out,
                    "            p50 {}  p90 {}  p99 {}  p99.9 {}  p99.99 {} ms",
                    format_ms(l.p50),
                    format_ms(l.p90),
                    format_ms(l.p99),
                    format_ms(l.p99_9),
                    format_ms(l.p99_99)
                );
            }
        }
        out
    }
}

fn plural(n: usize) -> &'static str {
    if n == 1 { "" } else { "s" }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bytes_in_binary_units() {
        assert_eq!(format_bytes(512.0), "512 B");
        assert_eq!(format_bytes(1536.0), "1.50 KiB");
        assert_eq!(format_bytes(3.0 * 1024.0 * 1024.0), "3.00 MiB");
    }

    #[test]
    fn report_renders_text_and_json() {
        let mut latency = Latency::new();
        latency.record(Duration::from_micros(80));
        let totals = Totals {
            requests: 100,
            bytes_sent: 1600,
            bytes_received: 1600,
            ..Totals::default()
        };
        let scenario = Scenario {
            addr: "tcp://127.0.0.1:1".into(),
            transport: "tcp",
            mode: "closed",
            connections: 1,
            pipeline: 1,
            threads: 1,
            request_size: 16,
            target_rate: None,
            warmup_s: 0.0,
        };
        let report = Report::new(scenario, Duration::from_secs(2), &totals, &latency);
        assert_eq!(report.requests_per_sec, 50.0);
        let json: serde_json::Value = serde_json::from_str(&report.to_json()).unwrap();
        assert_eq!(json["requests"], 100);
        assert_eq!(json["mode"], "closed");
        assert_eq!(json["latency_ms"]["p50"], 0.08);
        assert!(json["latency_ms"]["p99.9"].is_number());
        let text = report.to_text();
        assert!(text.contains("requests  100 (50.0/s)"), "{text}");
        assert!(text.contains("p50 0.080"), "{text}");
    }
}
