//! One exposition out of several: what the parent of `serve --workers N`
//! serves at `/metrics`, made from every worker's own (the OpenMetrics
//! text that [`Metrics::encode`](super::Metrics::encode) writes).
//!
//! Series with the same name and labels are added up, counters and
//! gauges alike (connections, bytes, members: each worker has its share),
//! with three exceptions for chat, whose figures are not shares:
//! `sockit_chat_redis_up` is the lowest (1 only when every worker reaches
//! Redis), `sockit_chat_rooms` the highest (rooms are shared through
//! Redis; the busiest worker's count is a lower bound), and
//! `sockit_chat_remote_members`, which each worker counts as everyone
//! else on the Redis, other workers included, is made the members of
//! the other servers: the most any worker sees in all (its remote plus
//! its own) less the members of every worker. `# HELP`, `# TYPE` and
//! `# UNIT` lines are kept once, families and series in the order they
//! first appear; anything else is dropped, and `# EOF` ends the text.

use std::collections::HashMap;
use std::fmt::Write as _;

const REDIS_UP: &str = "sockit_chat_redis_up";
const ROOMS: &str = "sockit_chat_rooms";
const REMOTE: &str = "sockit_chat_remote_members";
const MEMBERS: &str = "sockit_chat_members";

#[derive(Default)]
struct Family {
    headers: Vec<String>,
    /// Series in first-seen order: the sample's name and labels as
    /// printed, and each exposition's value.
    series: Vec<(String, Vec<Option<f64>>)>,
    index: HashMap<String, usize>,
}

/// Merges `expositions` (see the module docs).
pub fn merge(expositions: &[String]) -> String {
    let count = expositions.len();
    let mut order: Vec<String> = Vec::new();
    let mut families: HashMap<String, Family> = HashMap::new();
    for (i, text) in expositions.iter().enumerate() {
        let mut current = String::new();
        for line in text.lines() {
            if let Some(rest) = line.strip_prefix("# ") {
                let mut words = rest.splitn(3, ' ');
                let (Some(kind), Some(name)) = (words.next(), words.next()) else {
                    continue;
                };
                if !matches!(kind, "HELP" | "TYPE" | "UNIT") {
                    continue;
                }
                current = name.to_owned();
                let family = families.entry(name.to_owned()).or_insert_with(|| {
                    order.push(name.to_owned());
                    Family::default()
                });
                if !family.headers.iter().any(|h| h == line) {
                    family.headers.push(line.to_owned());
                }
                continue;
            }
            let Some((key, value)) = line.rsplit_once(' ') else {
                continue;
            };
            let Ok(value) = value.parse::<f64>() else {
                continue;
            };
            let family = families.entry(current.clone()).or_insert_with(|| {
                order.push(current.clone());
                Family::default()
            });
            let at = *family.index.entry(key.to_owned()).or_insert_with(|| {
                family.series.push((key.to_owned(), vec![None; count]));
                family.series.len() - 1
            });
            family.series[at].1[i] = Some(value);
        }
    }

    let mut out = String::new();
    for name in &order {
        let family = &families[name];
        for header in &family.headers {
            out.push_str(header);
            out.push('\n');
        }
        for (key, values) in &family.series {
            let value = match name.as_str() {
                REDIS_UP => fold(values, f64::min),
                ROOMS => fold(values, f64::max),
                REMOTE => remote_members(key, values, families.get(MEMBERS)),
                _ => values.iter().flatten().sum(),
            };
            let _ = writeln!(out, "{key} {}", number(value));
        }
    }
    out.push_str("# EOF\n");
    out
}

fn fold(values: &[Option<f64>], f: fn(f64, f64) -> f64) -> f64 {
    values.iter().flatten().copied().reduce(f).unwrap_or(0.0)
}

/// The members of the other servers, from each worker's remote count and
/// its own members (the series of `members` with the same labels).
fn remote_members(key: &str, remote: &[Option<f64>], members: Option<&Family>) -> f64 {
    let labels = &key[REMOTE.len()..];
    let own = members.and_then(|m| {
        m.index
            .get(&format!("{MEMBERS}{labels}"))
            .map(|&i| &m.series[i].1)
    });
    let own_of = |i: usize| own.and_then(|v| v[i]).unwrap_or(0.0);
    let everyone = remote
        .iter()
        .enumerate()
        .filter_map(|(i, r)| r.map(|r| r + own_of(i)))
        .fold(0.0, f64::max);
    let ours: f64 = (0..remote.len()).map(own_of).sum();
    (everyone - ours).max(0.0)
}

/// Whole numbers as integers, as prometheus-client writes them.
fn number(value: f64) -> String {
    if value.fract() == 0.0 && value.abs() < 9.0e15 {
        format!("{}", value as i64)
    } else {
        format!("{value}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metrics::Metrics;

    #[test]
    fn shares_are_added_and_headers_kept_once() {
        let one = "# HELP sockit_connections_accepted Stream connections accepted.\n\
                   # TYPE sockit_connections_accepted counter\n\
                   sockit_connections_accepted_total{service=\"ping\",listener=\"tcp://127.0.0.1:1\"} 3\n\
                   # HELP sockit_connections_active Open now.\n\
                   # TYPE sockit_connections_active gauge\n\
                   sockit_connections_active{service=\"ping\",listener=\"tcp://127.0.0.1:1\"} 2\n\
                   # EOF\n";
        let two = "# HELP sockit_connections_accepted Stream connections accepted.\n\
                   # TYPE sockit_connections_accepted counter\n\
                   sockit_connections_accepted_total{service=\"ping\",listener=\"tcp://127.0.0.1:1\"} 4\n\
                   sockit_connections_accepted_total{service=\"ping\",listener=\"unix:///s\"} 1\n\
                   # HELP sockit_connections_active Open now.\n\
                   # TYPE sockit_connections_active gauge\n\
                   sockit_connections_active{service=\"ping\",listener=\"tcp://127.0.0.1:1\"} -1\n\
                   # EOF\n";
        let merged = merge(&[one.to_owned(), two.to_owned()]);
        assert_eq!(
            merged,
            "# HELP sockit_connections_accepted Stream connections accepted.\n\
             # TYPE sockit_connections_accepted counter\n\
             sockit_connections_accepted_total{service=\"ping\",listener=\"tcp://127.0.0.1:1\"} 7\n\
             sockit_connections_accepted_total{service=\"ping\",listener=\"unix:///s\"} 1\n\
             # HELP sockit_connections_active Open now.\n\
             # TYPE sockit_connections_active gauge\n\
             sockit_connections_active{service=\"ping\",listener=\"tcp://127.0.0.1:1\"} 1\n\
             # EOF\n"
        );
        assert_eq!(merge(&[]), "# EOF\n");
        assert_eq!(merge(&["garbage\n# EOF".to_owned()]), "# EOF\n");
    }

    #[test]
    fn a_real_exposition_merged_with_itself_doubles() {
        let metrics = Metrics::new();
        let (common, stream) = metrics.stream_listener("ping", "tcp://127.0.0.1:9", false);
        stream.accepted.inc_by(5);
        common.bytes.received.inc_by(1000);
        let text = metrics.encode();
        let merged = merge(&[text.clone(), text.clone()]);
        let labels = "{service=\"ping\",listener=\"tcp://127.0.0.1:9\"}";
        assert!(
            merged.contains(&format!("sockit_connections_accepted_total{labels} 10\n")),
            "{merged}"
        );
        assert!(merged.contains(&format!("sockit_bytes_received_total{labels} 2000\n")));
        // Same lines, same order: only the values differ.
        assert_eq!(merged.lines().count(), text.lines().count());
        assert_eq!(merge(std::slice::from_ref(&text)), text);
    }

    #[test]
    fn chat_figures_are_not_shares() {
        let worker = |members: u32, remote: u32, up: u32, rooms: u32| {
            let l = "{service=\"chat\",listener=\"tcp://127.0.0.1:5\"}";
            format!(
                "# TYPE sockit_chat_members gauge\nsockit_chat_members{l} {members}\n\
                 # TYPE sockit_chat_rooms gauge\nsockit_chat_rooms{l} {rooms}\n\
                 # TYPE sockit_chat_remote_members gauge\nsockit_chat_remote_members{l} {remote}\n\
                 # TYPE sockit_chat_redis_up gauge\nsockit_chat_redis_up{l} {up}\n# EOF\n"
            )
        };
        // Two workers with 2 and 3 members, and 4 members elsewhere.
        let merged = merge(&[worker(2, 7, 1, 2), worker(3, 6, 0, 3)]);
        let l = "{service=\"chat\",listener=\"tcp://127.0.0.1:5\"}";
        for want in [
            format!("sockit_chat_members{l} 5\n"),
            format!("sockit_chat_rooms{l} 3\n"),
            format!("sockit_chat_remote_members{l} 4\n"),
            format!("sockit_chat_redis_up{l} 0\n"),
        ] {
            assert!(merged.contains(&want), "{want} in {merged}");
        }
    }

    #[test]
    fn numbers_print_as_prometheus_client_does() {
        assert_eq!(number(12.0), "12");
        assert_eq!(number(-3.0), "-3");
        assert_eq!(number(0.5), "0.5");
    }
}
