//! What an open connection holds while it is served: its `--max-conns`
//! permit and, with `--max-conns-per-ip`, its place in its address's
//! count (across every listener of a service, so that one address cannot
//! take every slot). Unix peers are not counted per address (they have
//! none; file permissions decide who connects). It also holds the
//! listener's `sockit_connections_active` gauge up while it lives.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};

use prometheus_client::metrics::gauge::Gauge;
use tokio::sync::OwnedSemaphorePermit;

/// A connection's right to be served, given back when it is dropped.
#[derive(Debug)]
pub(super) struct Permit {
    _conns: OwnedSemaphorePermit,
    _ip: Option<IpSlot>,
    /// The listener's open-connection gauge: raised when the permit is
    /// made, lowered when it drops (a pointer, no allocation: parked
    /// connections hold one too).
    active: Gauge,
}

impl Permit {
    /// Holds both, and counts the connection as active in `active`.
    pub(super) fn new(conns: OwnedSemaphorePermit, ip: Option<IpSlot>, active: Gauge) -> Permit {
        active.inc();
        Permit {
            _conns: conns,
            _ip: ip,
            active,
        }
    }
}

impl Drop for Permit {
    fn drop(&mut self) {
        self.active.dec();
    }
}

/// The open connections of each address, for one service.
#[derive(Debug)]
pub(super) struct PerIp {
    max: usize,
    /// Only addresses with a connection open: bounded by `--max-conns`.
    open: Mutex<HashMap<IpAddr, usize>>,
}

/// One connection's place in its address's count, given back on drop.
#[derive(Debug)]
pub(super) struct IpSlot {
    table: Arc<PerIp>,
    ip: IpAddr,
}

impl PerIp {
    /// At most `max` connections per address.
    pub(super) fn new(max: usize) -> Arc<PerIp> {
        Arc::new(PerIp {
            max,
            open: Mutex::new(HashMap::new()),
        })
    }

    /// The most connections one address may hold.
    pub(super) fn max(&self) -> usize {
        self.max
    }

    /// A slot for one more connection from `ip`, or `None` when it holds
    /// its maximum already.
    pub(super) fn take(self: &Arc<Self>, ip: IpAddr) -> Option<IpSlot> {
        let mut open = self.open.lock().unwrap_or_else(|e| e.into_inner());
        let count = open.entry(ip).or_insert(0);
        if *count >= self.max {
            return None;
        }
        *count += 1;
        Some(IpSlot {
            table: self.clone(),
            ip,
        })
    }
}

impl Drop for IpSlot {
    fn drop(&mut self) {
        let mut open = self.table.open.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(count) = open.get_mut(&self.ip) {
            *count -= 1;
            if *count == 0 {
                open.remove(&self.ip);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_address_up_to_its_limit_and_slots_come_back() {
        let table = PerIp::new(2);
        let (a, b): (IpAddr, IpAddr) = ("10.0.0.1".parse().unwrap(), "::1".parse().unwrap());
        let a1 = table.take(a).unwrap();
        let a2 = table.take(a).unwrap();
        assert!(table.take(a).is_none());
        // Another address is not affected.
        let _b1 = table.take(b).unwrap();
        drop(a1);
        let a3 = table.take(a).unwrap();
        drop((a2, a3));
        // Nothing left behind for an address with no connection.
        assert!(!table.open.lock().unwrap().contains_key(&a));
    }
}
