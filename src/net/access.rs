//! `--allow` / `--deny`: which peer addresses a server talks to.
//!
//! Deny wins; once any allow rule exists, a peer outside every allowed
//! network is denied. Rules are checked at accept (the connection is
//! closed before a byte is read) and per datagram (it is dropped).
//! IPv4-mapped IPv6 peers (`::ffff:a.b.c.d`) are checked as IPv4, so one
//! rule covers a dual-stack listener.

use std::net::IpAddr;

use ipnet::IpNet;

use crate::net::addr::quote;

/// A checked set of allow and deny rules.
#[derive(Debug, Clone, Default)]
pub struct AccessList {
    allow: Vec<IpNet>,
    deny: Vec<IpNet>,
}

impl AccessList {
    /// Builds the list from CIDR strings (`10.0.0.0/8`, `::1/128`) or bare
    /// addresses (a single host).
    ///
    /// # Errors
    /// A one-line message naming the rule that is not a network.
    ///
    /// ```
    /// use sockit::net::access::AccessList;
    /// let acl = AccessList::new(&["10.0.0.0/8".into()], &["10.0.0.1".into()]).unwrap();
    /// assert!(acl.permits("10.1.2.3".parse().unwrap()));
    /// assert!(!acl.permits("10.0.0.1".parse().unwrap()));
    /// assert!(!acl.permits("192.168.0.1".parse().unwrap()));
    /// ```
    pub fn new(allow: &[String], deny: &[String]) -> Result<Self, String> {
        Ok(AccessList {
            allow: allow
                .iter()
                .map(|s| parse_net(s))
                .collect::<Result<_, _>>()?,
            deny: deny
                .iter()
                .map(|s| parse_net(s))
                .collect::<Result<_, _>>()?,
        })
    }

    /// Whether there are no rules at all (everything permitted).
    pub fn is_open(&self) -> bool {
        self.allow.is_empty() && self.deny.is_empty()
    }

    /// Whether a peer at `ip` may talk to the server.
    pub fn permits(&self, ip: IpAddr) -> bool {
        let ip = ip.to_canonical();
        if self.deny.iter().any(|net| net.contains(&ip)) {
            return false;
        }
        self.allow.is_empty() || self.allow.iter().any(|net| net.contains(&ip))
    }
}

fn parse_net(text: &str) -> Result<IpNet, String> {
    if let Ok(net) = text.parse::<IpNet>() {
        return Ok(net.trunc());
    }
    text.parse::<IpAddr>().map(IpNet::from).map_err(|_| {
        format!(
            "invalid network {}: expected CIDR like 10.0.0.0/8 or fd00::/8, or an address",
            quote(text)
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn acl(allow: &[&str], deny: &[&str]) -> AccessList {
        let own = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        AccessList::new(&own(allow), &own(deny)).unwrap()
    }

    #[test]
    fn open_list_permits_everyone() {
        assert!(acl(&[], &[]).permits("8.8.8.8".parse().unwrap()));
    }

    #[test]
    fn deny_wins_and_allow_restricts() {
        let a = acl(&["127.0.0.0/8", "::1/128"], &["127.0.0.2/32"]);
        assert!(a.permits("127.0.0.1".parse().unwrap()));
        assert!(a.permits("::1".parse().unwrap()));
        assert!(!a.permits("127.0.0.2".parse().unwrap()));
        assert!(!a.permits("10.0.0.1".parse().unwrap()));
    }

    #[test]
    fn mapped_ipv6_is_checked_as_ipv4() {
        let a = acl(&[], &["127.0.0.1/32"]);
        assert!(!a.permits("::ffff:127.0.0.1".parse().unwrap()));
    }

    #[test]
    fn bad_rules_are_refused() {
        assert!(AccessList::new(&["10.0.0.0/33".into()], &[]).is_err());
        assert!(AccessList::new(&[], &["nonsense".into()]).is_err());
    }
}
