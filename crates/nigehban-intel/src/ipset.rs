//! Networks by prefix length: one hash map per length present, searched from the longest, so a
//! lookup costs one probe per distinct prefix length in the set (usually a handful).

use std::net::IpAddr;

use hashbrown::HashMap;

#[derive(Default)]
pub(crate) struct IpSet {
    /// (prefix length, network bits → indicator), longest first.
    v4: Vec<(u8, HashMap<u32, u32>)>,
    v6: Vec<(u8, HashMap<u128, u32>)>,
}

fn mask4(len: u8) -> u32 {
    if len == 0 { 0 } else { u32::MAX << (32 - u32::from(len)) }
}

fn mask6(len: u8) -> u128 {
    if len == 0 { 0 } else { u128::MAX << (128 - u32::from(len)) }
}

fn slot<K>(tables: &mut Vec<(u8, HashMap<K, u32>)>, len: u8) -> &mut HashMap<K, u32> {
    let i = match tables.iter().position(|(l, _)| *l <= len) {
        Some(i) if tables[i].0 == len => i,
        Some(i) => {
            tables.insert(i, (len, HashMap::new()));
            i
        }
        None => {
            tables.push((len, HashMap::new()));
            tables.len() - 1
        }
    };
    &mut tables[i].1
}

impl IpSet {
    pub(crate) fn len(&self) -> usize {
        self.v4.iter().map(|(_, m)| m.len()).sum::<usize>() + self.v6.iter().map(|(_, m)| m.len()).sum::<usize>()
    }

    /// Inserts a (masked) network unless present; returns the value already there.
    pub(crate) fn insert(&mut self, net: IpAddr, len: u8, value: u32) -> Option<u32> {
        match net {
            IpAddr::V4(a) => {
                let m = slot(&mut self.v4, len);
                let key = u32::from(a) & mask4(len);
                if let Some(v) = m.get(&key) {
                    return Some(*v);
                }
                m.insert(key, value);
            }
            IpAddr::V6(a) => {
                let m = slot(&mut self.v6, len);
                let key = u128::from(a) & mask6(len);
                if let Some(v) = m.get(&key) {
                    return Some(*v);
                }
                m.insert(key, value);
            }
        }
        None
    }

    fn lookup_v4(&self, bits: u32, f: &mut impl FnMut(u32, u8) -> bool) -> bool {
        for (len, m) in &self.v4 {
            if let Some(v) = m.get(&(bits & mask4(*len)))
                && f(*v, *len)
            {
                return true;
            }
        }
        false
    }

    /// Calls `f(value, prefix length)` for each network containing `ip`, longest first, until
    /// `f` returns true. IPv4-mapped IPv6 addresses (`::ffff:a.b.c.d`) are looked up as IPv4
    /// first.
    pub(crate) fn lookup(&self, ip: IpAddr, mut f: impl FnMut(u32, u8) -> bool) {
        match ip {
            IpAddr::V4(a) => {
                self.lookup_v4(u32::from(a), &mut f);
            }
            IpAddr::V6(a) => {
                if let Some(v4) = a.to_ipv4_mapped()
                    && self.lookup_v4(u32::from(v4), &mut f)
                {
                    return;
                }
                let bits = u128::from(a);
                for (len, m) in &self.v6 {
                    if let Some(v) = m.get(&(bits & mask6(*len)))
                        && f(*v, *len)
                    {
                        return;
                    }
                }
            }
        }
    }

    pub(crate) fn shrink(&mut self) {
        for (_, m) in &mut self.v4 {
            m.shrink_to_fit();
        }
        for (_, m) in &mut self.v6 {
            m.shrink_to_fit();
        }
    }

    pub(crate) fn heap_bytes(&self) -> usize {
        self.v4.iter().map(|(_, m)| m.capacity() * 9).sum::<usize>()
            + self.v6.iter().map(|(_, m)| m.capacity() * 21).sum::<usize>()
    }
}
