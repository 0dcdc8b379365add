//! What a client certificate is matched on: its SHA-256 fingerprint, its subject common names
//! and its DNS subject alternative names. rustls has already verified the chain; this only
//! reads names out of the DER, with a small reader for the few structures needed (so the
//! crate takes no X.509 parser for two fields).

use sha2::{Digest, Sha256};

use crate::config::ClientCertOrg;

/// The names a certificate carries.
#[derive(Debug, Default, PartialEq, Eq)]
pub(crate) struct CertNames {
    pub common_names: Vec<String>,
    pub dns_names: Vec<String>,
}

/// Lower-case hex of the certificate's SHA-256.
pub(crate) fn sha256_hex(der: &[u8]) -> String {
    hex::encode(Sha256::digest(der))
}

/// A configured fingerprint as compared: hex digits only, lower case.
fn normalize_fingerprint(s: &str) -> String {
    s.chars().filter(char::is_ascii_hexdigit).map(|c| c.to_ascii_lowercase()).collect()
}

/// The organisation of a client certificate: the first `entries` element that matches it
/// (both of its fields when it has both), else `default_org`.
pub(crate) fn org_for_cert<'a>(
    der: &[u8],
    entries: &'a [ClientCertOrg],
    default_org: Option<&'a str>,
) -> Option<&'a str> {
    let fingerprint = sha256_hex(der);
    let names = names(der).unwrap_or_default();
    entries
        .iter()
        .find(|e| {
            let sha_ok = e.sha256.as_deref().is_none_or(|f| normalize_fingerprint(f) == fingerprint);
            let name_ok = e.name.as_deref().is_none_or(|n| {
                names.common_names.iter().chain(&names.dns_names).any(|have| have.eq_ignore_ascii_case(n))
            });
            (e.sha256.is_some() || e.name.is_some()) && sha_ok && name_ok
        })
        .map(|e| e.org.as_str())
        .or(default_org)
}

/// A short description of a certificate for logs and source names: its first common name or
/// DNS name, else the start of its fingerprint.
pub(crate) fn describe(der: &[u8]) -> String {
    let names = names(der).unwrap_or_default();
    names
        .common_names
        .into_iter()
        .chain(names.dns_names)
        .next()
        .unwrap_or_else(|| format!("sha256:{}", &sha256_hex(der)[..16]))
}

/// One DER element: its tag, its content, and what follows it. None when malformed.
fn element(input: &[u8]) -> Option<(u8, &[u8], &[u8])> {
    let (&tag, rest) = input.split_first()?;
    let (&first, rest) = rest.split_first()?;
    let (len, rest) = if first < 0x80 {
        (usize::from(first), rest)
    } else {
        let n = usize::from(first & 0x7f);
        if n == 0 || n > 4 || rest.len() < n {
            return None;
        }
        let len = rest[..n].iter().fold(0usize, |acc, b| (acc << 8) | usize::from(*b));
        (len, &rest[n..])
    };
    if rest.len() < len {
        return None;
    }
    Some((tag, &rest[..len], &rest[len..]))
}

const SEQUENCE: u8 = 0x30;
const SET: u8 = 0x31;
const OID: u8 = 0x06;
const OCTET_STRING: u8 = 0x04;
const OID_COMMON_NAME: &[u8] = &[0x55, 0x04, 0x03];
const OID_SUBJECT_ALT_NAME: &[u8] = &[0x55, 0x1d, 0x11];
/// `[0] EXPLICIT` version, `[3] EXPLICIT` extensions, `[2] IMPLICIT` dNSName.
const VERSION_TAG: u8 = 0xa0;
const EXTENSIONS_TAG: u8 = 0xa3;
const DNS_NAME_TAG: u8 = 0x82;

/// The subject common names and DNS subject alternative names of a DER certificate.
pub(crate) fn names(der: &[u8]) -> Option<CertNames> {
    let (tag, cert, _) = element(der)?;
    if tag != SEQUENCE {
        return None;
    }
    let (tag, mut tbs, _) = element(cert)?;
    if tag != SEQUENCE {
        return None;
    }
    // Optional version, then serial number, signature algorithm, issuer, validity.
    let mut fields = Vec::new();
    while let Some((tag, content, rest)) = element(tbs) {
        fields.push((tag, content));
        tbs = rest;
    }
    let skip = if fields.first().is_some_and(|(t, _)| *t == VERSION_TAG) { 1 } else { 0 };
    let (subject_tag, subject) = *fields.get(skip + 4)?;
    if subject_tag != SEQUENCE {
        return None;
    }
    let mut out = CertNames::default();
    let mut rdns = subject;
    while let Some((tag, rdn, rest)) = element(rdns) {
        rdns = rest;
        if tag != SET {
            continue;
        }
        let mut attrs = rdn;
        while let Some((_, attr, rest)) = element(attrs) {
            attrs = rest;
            if let Some((OID, oid, value)) = element(attr)
                && oid == OID_COMMON_NAME
                && let Some((vtag, v, _)) = element(value)
                && let Some(s) = directory_string(vtag, v)
            {
                out.common_names.push(s);
            }
        }
    }
    if let Some((_, extensions)) = fields.iter().skip(skip + 6).find(|(t, _)| *t == EXTENSIONS_TAG)
        && let Some((SEQUENCE, mut list, _)) = element(extensions)
    {
        while let Some((_, ext, rest)) = element(list) {
            list = rest;
            let Some((OID, oid, mut after)) = element(ext) else { continue };
            if oid != OID_SUBJECT_ALT_NAME {
                continue;
            }
            // Skip the optional `critical` BOOLEAN up to the OCTET STRING.
            while let Some((tag, value, rest)) = element(after) {
                after = rest;
                if tag != OCTET_STRING {
                    continue;
                }
                if let Some((SEQUENCE, mut general_names, _)) = element(value) {
                    while let Some((tag, name, rest)) = element(general_names) {
                        general_names = rest;
                        if tag == DNS_NAME_TAG {
                            out.dns_names.push(String::from_utf8_lossy(name).into_owned());
                        }
                    }
                }
            }
        }
    }
    Some(out)
}

/// A DirectoryString's text: UTF8String, PrintableString, IA5String, TeletexString, or
/// BMPString (UTF-16 big-endian).
fn directory_string(tag: u8, value: &[u8]) -> Option<String> {
    match tag {
        0x0c | 0x13 | 0x16 | 0x14 => Some(String::from_utf8_lossy(value).into_owned()),
        0x1e => {
            let units: Vec<u16> = value.chunks_exact(2).map(|c| u16::from_be_bytes([c[0], c[1]])).collect();
            Some(String::from_utf16_lossy(&units))
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cert(cn: &str, sans: &[&str]) -> Vec<u8> {
        let mut params =
            rcgen::CertificateParams::new(sans.iter().map(|s| (*s).to_owned()).collect::<Vec<_>>()).expect("params");
        params.distinguished_name.push(rcgen::DnType::OrganizationName, "Org");
        params.distinguished_name.push(rcgen::DnType::CommonName, cn);
        let key = rcgen::KeyPair::generate().expect("key");
        params.self_signed(&key).expect("cert").der().to_vec()
    }

    #[test]
    fn reads_common_name_and_dns_names() {
        let der = cert("fw1.org-a.example", &["fw1.org-a.example", "fw1-backup.org-a.example"]);
        let n = names(&der).expect("names");
        assert_eq!(n.common_names, ["fw1.org-a.example"]);
        assert_eq!(n.dns_names, ["fw1.org-a.example", "fw1-backup.org-a.example"]);
        assert_eq!(describe(&der), "fw1.org-a.example");
    }

    #[test]
    fn maps_by_fingerprint_or_name() {
        let der = cert("device-7", &["dev7.org-b.example"]);
        let fp = sha256_hex(&der);
        let colons: String =
            fp.as_bytes().chunks(2).map(|c| String::from_utf8_lossy(c).to_uppercase()).collect::<Vec<_>>().join(":");
        let by_fp = [ClientCertOrg { sha256: Some(colons), name: None, org: "b".into() }];
        assert_eq!(org_for_cert(&der, &by_fp, None), Some("b"));
        let by_name = [
            ClientCertOrg { sha256: None, name: Some("other".into()), org: "x".into() },
            ClientCertOrg { sha256: None, name: Some("DEV7.org-b.example".into()), org: "b".into() },
        ];
        assert_eq!(org_for_cert(&der, &by_name, None), Some("b"));
        let both_must_match =
            [ClientCertOrg { sha256: Some("00".into()), name: Some("device-7".into()), org: "x".into() }];
        assert_eq!(org_for_cert(&der, &both_must_match, None), None);
        assert_eq!(org_for_cert(&der, &both_must_match, Some("d")), Some("d"));
    }

    proptest::proptest! {
        /// Whatever the bytes (a certificate with flipped bytes, or noise): no panic.
        #[test]
        fn never_panics_on_arbitrary_der(
            noise in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..512),
            flips in proptest::collection::vec((proptest::prelude::any::<usize>(), proptest::prelude::any::<u8>()), 0..8),
        ) {
            let _ = names(&noise);
            let mut der = cert("x", &["y"]);
            let len = der.len();
            for (at, byte) in flips {
                der[at % len] = byte;
            }
            let _ = names(&der);
        }
    }

    #[test]
    fn malformed_der_gives_no_names_and_no_panic() {
        assert_eq!(names(b""), None);
        assert_eq!(names(&[0x30, 0x84, 0xff, 0xff, 0xff, 0xff]), None);
        for len in 0..64 {
            let der = cert("x", &["y"]);
            let _ = names(&der[..len.min(der.len())]);
        }
    }
}
