//! Indicator values: their types, how a bare value's type is recognised, and normalization
//! (so that `HTTP://Evil.EXAMPLE:80/a` and `http://evil.example/a` are one indicator).

use std::net::IpAddr;

/// What an indicator is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum IndicatorType {
    /// An address or a network (IPv4 or IPv6, with or without a prefix length).
    Ip,
    /// A domain name (it also matches its subdomains).
    Domain,
    /// A URL.
    Url,
    /// An e-mail address.
    Email,
    /// An MD5 file hash.
    Md5,
    /// A SHA-1 file hash.
    Sha1,
    /// A SHA-256 file hash.
    Sha256,
}

impl IndicatorType {
    /// Its name.
    pub fn as_str(self) -> &'static str {
        match self {
            IndicatorType::Ip => "ip",
            IndicatorType::Domain => "domain",
            IndicatorType::Url => "url",
            IndicatorType::Email => "email",
            IndicatorType::Md5 => "md5",
            IndicatorType::Sha1 => "sha1",
            IndicatorType::Sha256 => "sha256",
        }
    }
}

/// A value that is not a valid indicator of its type.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{value:?} is not a valid {kind}: {reason}")]
pub struct ValueError {
    pub value: String,
    pub kind: &'static str,
    pub reason: &'static str,
}

/// A normalized indicator value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Normalized {
    /// A network: address and prefix length (a single address has the full length).
    Net(IpAddr, u8),
    /// Lowercase domain without a trailing dot.
    Domain(String),
    /// A normalized URL.
    Url(String),
    /// Lowercase e-mail address.
    Email(String),
    /// Hash bytes.
    Md5([u8; 16]),
    Sha1([u8; 20]),
    Sha256([u8; 32]),
}

fn err(value: &str, kind: &'static str, reason: &'static str) -> ValueError {
    ValueError { value: value.to_owned(), kind, reason }
}

/// Recognises a bare value's type (for plain lists): an address or CIDR, a hash by its length,
/// a URL by its scheme, an e-mail address by its `@`, else a domain if it looks like one.
pub fn classify(value: &str) -> Option<IndicatorType> {
    let v = value.trim();
    if v.is_empty() {
        return None;
    }
    if parse_net(v).is_some() {
        return Some(IndicatorType::Ip);
    }
    if v.bytes().all(|b| b.is_ascii_hexdigit()) {
        return match v.len() {
            32 => Some(IndicatorType::Md5),
            40 => Some(IndicatorType::Sha1),
            64 => Some(IndicatorType::Sha256),
            _ => None,
        };
    }
    if v.contains("://") {
        return Some(IndicatorType::Url);
    }
    if v.contains('@') && !v.contains('/') && !v.contains(char::is_whitespace) {
        return Some(IndicatorType::Email);
    }
    if valid_domain(&v.trim_end_matches('.').to_ascii_lowercase()) && v.contains('.') {
        return Some(IndicatorType::Domain);
    }
    None
}

fn parse_net(v: &str) -> Option<(IpAddr, u8)> {
    let (addr, len) = match v.split_once('/') {
        Some((a, l)) => (a, Some(l)),
        None => (v, None),
    };
    let ip: IpAddr = addr.trim_start_matches('[').trim_end_matches(']').parse().ok()?;
    let max = if ip.is_ipv4() { 32 } else { 128 };
    let len = match len {
        Some(l) => l.parse::<u8>().ok().filter(|l| *l <= max)?,
        None => max,
    };
    Some((ip, len))
}

/// The network with its host bits cleared.
pub(crate) fn masked(ip: IpAddr, len: u8) -> IpAddr {
    match ip {
        IpAddr::V4(a) => {
            let bits = u32::from(a);
            let mask = if len == 0 { 0 } else { u32::MAX << (32 - u32::from(len)) };
            IpAddr::V4((bits & mask).into())
        }
        IpAddr::V6(a) => {
            let bits = u128::from(a);
            let mask = if len == 0 { 0 } else { u128::MAX << (128 - u32::from(len)) };
            IpAddr::V6((bits & mask).into())
        }
    }
}

fn valid_domain(d: &str) -> bool {
    !d.is_empty()
        && d.len() <= 253
        && d.split('.').all(|l| {
            !l.is_empty()
                && l.len() <= 63
                && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_' || b >= 0x80)
        })
}

/// The lowercase domain without a trailing dot, if it is one.
pub(crate) fn normalize_domain(v: &str) -> Option<String> {
    let d = v.trim().trim_end_matches('.').to_lowercase();
    valid_domain(&d).then_some(d)
}

/// Normalizes a URL: lowercase scheme and host, default port removed, fragment removed, an
/// empty path written `/`; the path and query keep their case.
pub(crate) fn normalize_url(v: &str) -> Option<String> {
    let v = v.trim();
    let (scheme, rest) = v.split_once("://")?;
    if scheme.is_empty() || !scheme.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'+' || b == b'-' || b == b'.') {
        return None;
    }
    let scheme = scheme.to_ascii_lowercase();
    let rest = rest.split('#').next().unwrap_or("");
    let split = rest.find(['/', '?']).unwrap_or(rest.len());
    let (authority, path) = rest.split_at(split);
    let host_port = authority.rsplit('@').next().unwrap_or("");
    if host_port.is_empty() {
        return None;
    }
    let (host, port) = if host_port.starts_with('[') {
        let end = host_port.find(']')?;
        (&host_port[..=end], host_port[end + 1..].strip_prefix(':'))
    } else {
        match host_port.rsplit_once(':') {
            Some((h, p)) if p.bytes().all(|b| b.is_ascii_digit()) => (h, Some(p)),
            _ => (host_port, None),
        }
    };
    let host = host.trim_end_matches('.').to_lowercase();
    let port = match (scheme.as_str(), port) {
        ("http", Some("80")) | ("https", Some("443")) | (_, Some("")) | (_, None) => String::new(),
        (_, Some(p)) => format!(":{p}"),
    };
    let path = if path.is_empty() || path.starts_with('?') { format!("/{path}") } else { path.to_owned() };
    Some(format!("{scheme}://{host}{port}{path}"))
}

fn hex_bytes<const N: usize>(v: &str) -> Option<[u8; N]> {
    if v.len() != N * 2 {
        return None;
    }
    let mut out = [0u8; N];
    for (i, chunk) in v.as_bytes().chunks(2).enumerate() {
        let s = std::str::from_utf8(chunk).ok()?;
        out[i] = u8::from_str_radix(s, 16).ok()?;
    }
    Some(out)
}

/// Normalizes a value of a known type.
pub fn normalize(kind: IndicatorType, value: &str) -> Result<Normalized, ValueError> {
    let v = value.trim();
    match kind {
        IndicatorType::Ip => parse_net(v)
            .map(|(ip, len)| Normalized::Net(masked(ip, len), len))
            .ok_or_else(|| err(v, "IP address or CIDR range", "cannot be read as one")),
        IndicatorType::Domain => normalize_domain(v)
            .map(Normalized::Domain)
            .ok_or_else(|| err(v, "domain", "labels of letters, digits and -")),
        IndicatorType::Url => {
            normalize_url(v).map(Normalized::Url).ok_or_else(|| err(v, "URL", "expected scheme://host/…"))
        }
        IndicatorType::Email => {
            let e = v.to_lowercase();
            match e.rsplit_once('@') {
                Some((local, domain)) if !local.is_empty() && valid_domain(domain) => Ok(Normalized::Email(e)),
                _ => Err(err(v, "e-mail address", "expected local@domain")),
            }
        }
        IndicatorType::Md5 => {
            hex_bytes(v).map(Normalized::Md5).ok_or_else(|| err(v, "MD5 hash", "expected 32 hex digits"))
        }
        IndicatorType::Sha1 => {
            hex_bytes(v).map(Normalized::Sha1).ok_or_else(|| err(v, "SHA-1 hash", "expected 40 hex digits"))
        }
        IndicatorType::Sha256 => {
            hex_bytes(v).map(Normalized::Sha256).ok_or_else(|| err(v, "SHA-256 hash", "expected 64 hex digits"))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recognises_types() {
        assert_eq!(classify("10.1.2.3"), Some(IndicatorType::Ip));
        assert_eq!(classify("10.0.0.0/8"), Some(IndicatorType::Ip));
        assert_eq!(classify("2001:db8::/32"), Some(IndicatorType::Ip));
        assert_eq!(classify("d41d8cd98f00b204e9800998ecf8427e"), Some(IndicatorType::Md5));
        assert_eq!(classify(&"a".repeat(64)), Some(IndicatorType::Sha256));
        assert_eq!(classify("https://evil.example/x"), Some(IndicatorType::Url));
        assert_eq!(classify("ceo@evil.example"), Some(IndicatorType::Email));
        assert_eq!(classify("Evil.Example."), Some(IndicatorType::Domain));
        assert_eq!(classify("not a value"), None);
        assert_eq!(classify("10.0.0.0/33"), None);
    }

    #[test]
    fn normalizes_urls() {
        let n = |u| normalize_url(u).unwrap();
        assert_eq!(n("HTTP://Evil.EXAMPLE:80/A?b=C#frag"), "http://evil.example/A?b=C");
        assert_eq!(n("https://evil.example:443"), "https://evil.example/");
        assert_eq!(n("https://evil.example:8443?x"), "https://evil.example:8443/?x");
        assert_eq!(n("http://user:pw@Host.example/p"), "http://host.example/p");
        assert_eq!(n("http://[2001:DB8::1]:8080/p"), "http://[2001:db8::1]:8080/p");
        assert!(normalize_url("no scheme").is_none());
    }

    #[test]
    fn masks_networks() {
        assert_eq!(
            normalize(IndicatorType::Ip, "10.1.2.3/8").unwrap(),
            Normalized::Net("10.0.0.0".parse().unwrap(), 8)
        );
        assert_eq!(normalize(IndicatorType::Ip, "10.1.2.3").unwrap(), Normalized::Net("10.1.2.3".parse().unwrap(), 32));
    }
}
