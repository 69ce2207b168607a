//! What keeps a UDP reply from being abused (SPEC 2), for the datagram
//! services and the peer node alike: the loop guard against the classic
//! service ports ([`from_classic_port`]), and per-source rate limiting, so
//! a sockit UDP socket can't be used to flood a third party whose address
//! an attacker forged.
//!
//! Each source IP gets a token bucket. The table of buckets is bounded:
//! when it is full, idle buckets are swept out, and sources that still find
//! no slot share one overflow bucket, so an attacker cycling through forged
//! sources gains nothing but the overflow bucket's small budget.
//! Loopback sources are exempt: the kernel drops loopback-sourced packets
//! arriving from outside, so they cannot be forged by a remote attacker,
//! and local load tests should not be throttled.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::time::Instant;

/// Source ports of the classic small services (echo, discard, daytime,
/// chargen, time).
const CLASSIC_PORTS: [u16; 5] = [7, 9, 13, 19, 37];

/// Whether a datagram from `from` must go unanswered because of where it
/// comes from: a classic service port, or port 0 (which no reply reaches).
/// Answering one is how two UDP services (echo and chargen, say) get
/// tricked into replying to each other forever.
pub fn from_classic_port(from: SocketAddr) -> bool {
    CLASSIC_PORTS.contains(&from.port()) || from.port() == 0
}

/// How many sources are tracked at once.
const MAX_SOURCES: usize = 4096;

/// A token bucket: it holds up to a burst of tokens, refills at a rate of
/// tokens a second, and each event it allows takes one.
///
/// The rate and the burst are the owner's and passed in, so that a table
/// of thousands of buckets ([`RateLimiter`]) keeps 16 bytes per source.
#[derive(Debug, Clone, Copy)]
pub struct TokenBucket {
    tokens: f64,
    /// When it was last refilled.
    last: Instant,
}

impl TokenBucket {
    /// A bucket holding `tokens` at `now`.
    pub fn new(tokens: f64, now: Instant) -> TokenBucket {
        TokenBucket { tokens, last: now }
    }

    /// Adds the tokens `rate` per second earned since the last refill, up
    /// to `burst`.
    pub fn refill(&mut self, rate: f64, burst: f64, now: Instant) {
        let elapsed = now.saturating_duration_since(self.last).as_secs_f64();
        self.tokens = (self.tokens + elapsed * rate).min(burst);
        self.last = now;
    }

    /// Whether there is a token to take.
    pub fn has_token(&self) -> bool {
        self.tokens >= 1.0
    }

    /// Takes a token if there is one; whether there was.
    pub fn take(&mut self) -> bool {
        let taken = self.has_token();
        if taken {
            self.tokens -= 1.0;
        }
        taken
    }

    /// Refills, then takes a token if there is one: whether the event may
    /// happen now.
    pub fn allow(&mut self, rate: f64, burst: f64, now: Instant) -> bool {
        self.refill(rate, burst, now);
        self.take()
    }

    /// Whether the bucket will be full again by `now`, so that forgetting
    /// it changes nothing.
    fn full_by(&self, rate: f64, burst: f64, now: Instant) -> bool {
        self.tokens + now.saturating_duration_since(self.last).as_secs_f64() * rate >= burst
    }
}

/// Replies-per-second limiter keyed by source address.
#[derive(Debug)]
pub struct RateLimiter {
    /// Sustained replies per second per source; 0 disables the limiter.
    rate: f64,
    /// Burst size: a source may send this many at once after idling.
    burst: f64,
    buckets: HashMap<IpAddr, TokenBucket>,
    overflow: TokenBucket,
    /// When the table was last swept; sweeps are at most once a second so
    /// a stream of new sources cannot make every datagram cost a sweep.
    last_sweep: Instant,
}

impl RateLimiter {
    /// A limiter allowing `per_second` replies per source, with bursts of
    /// twice that. `per_second == 0` allows everything.
    pub fn new(per_second: u32) -> Self {
        let rate = f64::from(per_second);
        RateLimiter {
            rate,
            burst: rate * 2.0,
            buckets: HashMap::new(),
            overflow: TokenBucket::new(rate * 2.0, Instant::now()),
            last_sweep: Instant::now(),
        }
    }

    /// Whether replies to `source` are never limited (no limit set, or a
    /// loopback source): then [`allow`](Self::allow) needs no clock.
    pub fn exempt(&self, source: IpAddr) -> bool {
        self.rate == 0.0 || source.to_canonical().is_loopback()
    }

    /// Whether a reply to `source` may be sent now; takes a token if so.
    pub fn allow(&mut self, source: IpAddr, now: Instant) -> bool {
        if self.exempt(source) {
            return true;
        }
        if self.buckets.len() >= MAX_SOURCES
            && now.saturating_duration_since(self.last_sweep).as_secs() >= 1
            && !self.buckets.contains_key(&source)
        {
            self.sweep(now);
        }
        let (rate, burst) = (self.rate, self.burst);
        let bucket = if self.buckets.len() < MAX_SOURCES || self.buckets.contains_key(&source) {
            self.buckets
                .entry(source)
                .or_insert(TokenBucket::new(burst, now))
        } else {
            &mut self.overflow
        };
        bucket.allow(rate, burst, now)
    }

    /// Drops buckets that have refilled completely: forgetting them
    /// changes nothing.
    fn sweep(&mut self, now: Instant) {
        self.last_sweep = now;
        let (rate, burst) = (self.rate, self.burst);
        self.buckets.retain(|_, b| !b.full_by(rate, burst, now));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn classic_ports_and_port_0_are_guarded() {
        for port in [0, 7, 9, 13, 19, 37] {
            assert!(from_classic_port(SocketAddr::new(ip("192.0.2.1"), port)));
        }
        for port in [1, 8, 53, 1024, 40000] {
            assert!(!from_classic_port(SocketAddr::new(ip("::1"), port)));
        }
    }

    #[test]
    fn a_bucket_refills_up_to_its_burst() {
        let t0 = Instant::now();
        let mut b = TokenBucket::new(2.0, t0);
        assert!(b.allow(10.0, 4.0, t0));
        assert!(b.allow(10.0, 4.0, t0));
        assert!(!b.allow(10.0, 4.0, t0));
        // A second at 10/s refills only up to the burst of 4.
        b.refill(10.0, 4.0, t0 + Duration::from_secs(1));
        assert!((0..4).all(|_| b.take()));
        assert!(!b.has_token());
    }

    #[test]
    fn burst_then_steady_rate() {
        let mut rl = RateLimiter::new(10);
        let t0 = Instant::now();
        let sent = (0..100).filter(|_| rl.allow(ip("192.0.2.1"), t0)).count();
        assert_eq!(sent, 20);
        assert!(!rl.allow(ip("192.0.2.1"), t0));
        assert!(rl.allow(ip("192.0.2.1"), t0 + Duration::from_millis(100)));
        // Another source has its own bucket.
        assert!(rl.allow(ip("192.0.2.2"), t0));
    }

    #[test]
    fn loopback_and_zero_rate_are_unlimited() {
        let mut rl = RateLimiter::new(1);
        let t0 = Instant::now();
        assert!((0..1000).all(|_| rl.allow(ip("127.0.0.1"), t0)));
        assert!((0..1000).all(|_| rl.allow(ip("::1"), t0)));
        let mut off = RateLimiter::new(0);
        assert!((0..1000).all(|_| off.allow(ip("192.0.2.1"), t0)));
    }

    #[test]
    fn forged_sources_share_the_overflow_bucket() {
        let mut rl = RateLimiter::new(1);
        let t0 = Instant::now();
        let mut sent = 0;
        for i in 0..20_000u32 {
            let src = IpAddr::from((0xC000_0000u32 + i).to_be_bytes());
            if rl.allow(src, t0) {
                sent += 1;
            }
        }
        // Every tracked source was answered; the rest shared 2 tokens.
        assert_eq!(sent, MAX_SOURCES + 2);
        assert!(rl.buckets.len() <= MAX_SOURCES);
    }
}
