//! Sender address → organisation: the most specific configured network that holds the
//! address wins; an address no network holds goes to the default organisation, or is refused.

use std::net::IpAddr;

use ipnet::IpNet;
use serde::Deserialize;

/// The mapping as configured (`[ingest.orgs]`).
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OrgMapping {
    #[serde(default)]
    pub networks: Vec<NetworkOrg>,
    /// The organisation of senders that no network holds; without it they are refused.
    #[serde(default)]
    pub default_org: Option<String>,
}

/// One network and the organisation its senders belong to.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NetworkOrg {
    pub cidr: IpNet,
    pub org: String,
}

/// The mapping prepared for lookups.
#[derive(Clone, Debug)]
pub struct OrgMap {
    /// Most specific first, so the first network that holds an address is the answer.
    /// Mappings are hand-written lists (tens to hundreds of entries), so a scan is cheaper
    /// than keeping a trie, and it runs once per datagram batch or connection.
    networks: Vec<(IpNet, String)>,
    default_org: Option<String>,
}

impl OrgMap {
    /// Prepares `mapping`. Host bits in a configured network are ignored (`10.1.2.3/16` is
    /// `10.1.0.0/16`).
    pub fn new(mapping: &OrgMapping) -> Self {
        let mut networks: Vec<(IpNet, String)> =
            mapping.networks.iter().map(|n| (n.cidr.trunc(), n.org.clone())).collect();
        // Stable sort: of two identical networks the one listed first wins.
        networks.sort_by_key(|(net, _)| std::cmp::Reverse(net.prefix_len()));
        OrgMap { networks, default_org: mapping.default_org.clone() }
    }

    /// The organisation of a sender, or None if it is refused. IPv4 senders that reach a
    /// dual-stack socket (`::ffff:10.1.2.3`) are matched as IPv4.
    pub fn org_for(&self, addr: IpAddr) -> Option<&str> {
        let addr = addr.to_canonical();
        self.networks
            .iter()
            .find(|(net, _)| net.contains(&addr))
            .map(|(_, org)| org.as_str())
            .or(self.default_org.as_deref())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn map(entries: &[(&str, &str)], default_org: Option<&str>) -> OrgMap {
        OrgMap::new(&OrgMapping {
            networks: entries
                .iter()
                .map(|(c, o)| NetworkOrg { cidr: c.parse().expect("test cidr"), org: (*o).to_owned() })
                .collect(),
            default_org: default_org.map(str::to_owned),
        })
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().expect("test address")
    }

    #[test]
    fn the_most_specific_prefix_wins_whatever_the_order() {
        let m = map(&[("10.0.0.0/8", "wide"), ("10.1.2.0/24", "narrow"), ("10.1.0.0/16", "middle")], None);
        assert_eq!(m.org_for(ip("10.1.2.3")), Some("narrow"));
        assert_eq!(m.org_for(ip("10.1.3.3")), Some("middle"));
        assert_eq!(m.org_for(ip("10.9.9.9")), Some("wide"));
        assert_eq!(m.org_for(ip("192.0.2.1")), None);
        let m = map(&[("10.1.2.3/32", "host"), ("0.0.0.0/0", "all")], None);
        assert_eq!(m.org_for(ip("10.1.2.3")), Some("host"));
        assert_eq!(m.org_for(ip("10.1.2.4")), Some("all"));
    }

    #[test]
    fn unmatched_senders_go_to_the_default_or_are_refused() {
        let m = map(&[("2001:db8::/32", "v6")], Some("fallback"));
        assert_eq!(m.org_for(ip("2001:db8::1")), Some("v6"));
        assert_eq!(m.org_for(ip("2001:db9::1")), Some("fallback"));
        assert_eq!(map(&[], None).org_for(ip("127.0.0.1")), None);
    }

    #[test]
    fn mapped_ipv4_senders_match_ipv4_networks_and_host_bits_are_ignored() {
        let m = map(&[("10.1.2.3/16", "a")], None);
        assert_eq!(m.org_for(ip("::ffff:10.1.200.1")), Some("a"));
    }

    proptest! {
        /// Against a naive oracle: of all networks that hold the address, one with the
        /// longest prefix (the first listed among equals).
        #[test]
        fn matches_a_linear_scan(
            nets in proptest::collection::vec((any::<u32>(), 0u8..=32), 0..20),
            addr in any::<u32>(),
        ) {
            let entries: Vec<NetworkOrg> = nets
                .iter()
                .enumerate()
                .map(|(i, (a, len))| NetworkOrg {
                    cidr: IpNet::V4(ipnet::Ipv4Net::new((*a).into(), *len).expect("len <= 32")),
                    org: i.to_string(),
                })
                .collect();
            let m = OrgMap::new(&OrgMapping { networks: entries.clone(), default_org: None });
            let addr = IpAddr::V4(addr.into());
            let mut best: Option<(u8, &str)> = None;
            for e in &entries {
                if e.cidr.trunc().contains(&addr) && best.is_none_or(|(len, _)| e.cidr.prefix_len() > len) {
                    best = Some((e.cidr.prefix_len(), &e.org));
                }
            }
            prop_assert_eq!(m.org_for(addr), best.map(|(_, o)| o));
        }
    }
}
