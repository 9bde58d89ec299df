//! The address filters of `ansible.utils` (`ipaddr`, `ipv4`, `ipv6`, `ipwrap`), in their
//! common forms: validity, `address`, `network`, `netmask`, `prefix`, `broadcast`,
//! `subnet`/`cidr`, `host`, `net`, `size`, `public`/`private`, `hostmask`, the `n`-th
//! address of a network, and lists filtered to what is valid. Anything else is an error
//! naming the query.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use minijinja::value::ValueKind;
use minijinja::{Error, Value};

use super::fail;

/// An address with its prefix, as netaddr's `IPNetwork`.
#[derive(Debug, Clone, Copy)]
struct Net {
    ip: IpAddr,
    prefix: u32,
    /// Whether it was written with a prefix (`10.0.0.1/24`), not as a lone address.
    cidr: bool,
}

impl Net {
    fn parse(s: &str) -> Option<Net> {
        let (addr, prefix) = match s.split_once('/') {
            Some((a, p)) => (a, Some(p)),
            None => (s, None),
        };
        let ip: IpAddr = addr
            .trim_start_matches('[')
            .trim_end_matches(']')
            .parse()
            .ok()?;
        let bits = Net::bits_of(ip);
        let prefix = match prefix {
            None => bits,
            Some(p) => match p.parse::<u32>() {
                Ok(n) if n <= bits => n,
                Ok(_) => return None,
                Err(_) => {
                    // A netmask: 10.0.0.1/255.255.255.0.
                    let m: Ipv4Addr = p.parse().ok()?;
                    let m = u32::from(m);
                    if m.leading_ones() + m.trailing_zeros() != 32 || !ip.is_ipv4() {
                        return None;
                    }
                    m.leading_ones()
                }
            },
        };
        Some(Net {
            ip,
            prefix,
            cidr: s.contains('/'),
        })
    }

    fn bits_of(ip: IpAddr) -> u32 {
        if ip.is_ipv4() { 32 } else { 128 }
    }

    fn bits(&self) -> u32 {
        Net::bits_of(self.ip)
    }

    fn value(&self) -> u128 {
        match self.ip {
            IpAddr::V4(a) => u128::from(u32::from(a)),
            IpAddr::V6(a) => u128::from(a),
        }
    }

    fn addr(&self, v: u128) -> IpAddr {
        match self.ip {
            IpAddr::V4(_) => IpAddr::V4(Ipv4Addr::from(v as u32)),
            IpAddr::V6(_) => IpAddr::V6(Ipv6Addr::from(v)),
        }
    }

    fn mask(&self) -> u128 {
        let all = if self.bits() == 32 {
            u128::from(u32::MAX)
        } else {
            u128::MAX
        };
        let host = if self.prefix == self.bits() {
            0
        } else {
            all >> self.prefix
        };
        all & !host
    }

    fn network(&self) -> u128 {
        self.value() & self.mask()
    }

    fn hostmask(&self) -> u128 {
        let all = if self.bits() == 32 {
            u128::from(u32::MAX)
        } else {
            u128::MAX
        };
        all & !self.mask()
    }

    fn size(&self) -> u128 {
        1u128
            .checked_shl(self.bits() - self.prefix)
            .unwrap_or(u128::MAX)
    }

    fn private(&self) -> bool {
        match self.ip {
            IpAddr::V4(a) => {
                a.is_private()
                    || a.is_loopback()
                    || a.is_link_local()
                    || (a.octets()[0] == 100 && (a.octets()[1] & 0xc0) == 64)
            }
            IpAddr::V6(a) => {
                (a.segments()[0] & 0xfe00) == 0xfc00
                    || a.is_loopback()
                    || (a.segments()[0] & 0xffc0) == 0xfe80
            }
        }
    }
}

/// One value through one query; `false` when it does not qualify.
fn query(v: &str, q: &str, version: Option<u32>) -> Result<Value, Error> {
    let Some(n) = Net::parse(v) else {
        return Ok(Value::from(false));
    };
    let no = Value::from(false);
    if version.is_some_and(|want| (want == 4) != n.ip.is_ipv4()) {
        return Ok(no);
    }
    let s = |x: u128| Value::from(n.addr(x).to_string());
    let with_prefix = |x: u128| Value::from(format!("{}/{}", n.addr(x), n.prefix));
    Ok(match q {
        "" => {
            if n.cidr {
                with_prefix(n.value())
            } else {
                s(n.value())
            }
        }
        "address" if n.size() > 1 && n.value() == n.network() => no,
        "address" => s(n.value()),
        "network" => s(n.network()),
        "netmask" => s(n.mask()),
        "hostmask" => s(n.hostmask()),
        "prefix" => Value::from(n.prefix),
        "broadcast" if n.size() > 2 && n.ip.is_ipv4() => s(n.network() | n.hostmask()),
        "broadcast" => no,
        "subnet" | "cidr" => with_prefix(n.network()),
        "host" if n.size() == 1 || n.value() != n.network() => with_prefix(n.value()),
        "host" => no,
        "net" if n.size() > 1 && n.value() == n.network() => with_prefix(n.network()),
        "net" => no,
        "size" => Value::from(n.size()),
        "private" if n.private() => Value::from(v),
        "public" if !n.private() => Value::from(v),
        "private" | "public" => no,
        "ipv4" if n.ip.is_ipv4() => Value::from(v),
        "ipv6" if !n.ip.is_ipv4() => Value::from(v),
        "ipv4" | "ipv6" => no,
        "bool" => Value::from(true),
        "wrap" | "ipwrap" => Value::from(wrap(v)),
        q => match q.parse::<i128>() {
            Ok(i) if i.unsigned_abs() < n.size() => {
                let x = if i >= 0 {
                    n.network() + i.unsigned_abs()
                } else {
                    (n.network() | n.hostmask()) + 1 - i.unsigned_abs()
                };
                with_prefix(x)
            }
            Ok(_) => no,
            Err(_) => return Err(fail(format!("ipaddr: unknown query `{q}`"))),
        },
    })
}

fn each(value: &Value, q: &str, version: Option<u32>) -> Result<Value, Error> {
    match value.kind() {
        ValueKind::Seq => {
            let mut out = Vec::new();
            for item in value.try_iter()? {
                let r = query(&item.to_string(), q, version)?;
                if r.is_true() {
                    out.push(r);
                }
            }
            Ok(Value::from(out))
        }
        ValueKind::String | ValueKind::Number => query(&value.to_string(), q, version),
        _ => Ok(Value::from(false)),
    }
}

fn query_of(q: Option<Value>) -> String {
    q.map(|q| q.to_string()).unwrap_or_default()
}

/// `x | ipaddr(query='')`.
pub(super) fn ipaddr(value: Value, q: Option<Value>) -> Result<Value, Error> {
    each(&value, &query_of(q), None)
}

/// `x | ipv4(query='')`: `ipaddr` for IPv4 only.
pub(super) fn ipv4(value: Value, q: Option<Value>) -> Result<Value, Error> {
    each(&value, &query_of(q), Some(4))
}

/// `x | ipv6(query='')`: `ipaddr` for IPv6 only.
pub(super) fn ipv6(value: Value, q: Option<Value>) -> Result<Value, Error> {
    each(&value, &query_of(q), Some(6))
}

fn wrap(v: &str) -> String {
    match Net::parse(v) {
        Some(n) if !n.ip.is_ipv4() => match v.split_once('/') {
            Some((a, p)) => format!("[{a}]/{p}"),
            None => format!("[{v}]"),
        },
        _ => v.to_string(),
    }
}

/// `x | ipwrap`: IPv6 addresses in brackets, anything else as it is.
pub(super) fn ipwrap(value: Value) -> Result<Value, Error> {
    match value.kind() {
        ValueKind::Seq => Ok(value
            .try_iter()?
            .map(|x| match x.as_str() {
                Some(s) => Value::from(wrap(s)),
                None => x,
            })
            .collect()),
        _ => Ok(value
            .as_str()
            .map_or(value.clone(), |s| Value::from(wrap(s)))),
    }
}

#[cfg(test)]
mod tests {
    use crate::ansible::testing::{r, try_render};

    #[test]
    fn validity_and_lists() {
        assert_eq!(r("{{ '192.168.0.1' | ipaddr }}"), "192.168.0.1");
        assert_eq!(
            r("{{ '192.168.0.1/24' | ansible.utils.ipaddr }}"),
            "192.168.0.1/24"
        );
        assert_eq!(r("{{ 'example.com' | ipaddr }}"), "False");
        assert_eq!(r("{{ '10.0.0.1/33' | ipaddr }}"), "False");
        assert_eq!(
            r(
                "{{ ['192.24.2.1', 'host.fqdn', '::1', '192.168.32.0/24', 'fe80::100/10', true] | ipaddr }}"
            ),
            "['192.24.2.1', '::1', '192.168.32.0/24', 'fe80::100/10']"
        );
        assert_eq!(r("{{ ['192.24.2.1', '::1'] | ipv4 }}"), "['192.24.2.1']");
        assert_eq!(
            r("{{ ['192.24.2.1', '::1'] | ansible.netcommon.ipv6 }}"),
            "['::1']"
        );
    }

    #[test]
    fn queries_as_documented() {
        let q = |v: &str, q: &str| r(&format!("{{{{ '{v}' | ipaddr('{q}') }}}}"));
        assert_eq!(q("192.168.0.1/24", "address"), "192.168.0.1");
        assert_eq!(q("192.168.0.0/24", "address"), "False");
        assert_eq!(q("192.168.0.1/24", "network"), "192.168.0.0");
        assert_eq!(q("192.168.0.1/24", "netmask"), "255.255.255.0");
        assert_eq!(q("192.168.0.1/24", "hostmask"), "0.0.0.255");
        assert_eq!(q("192.168.0.1/24", "prefix"), "24");
        assert_eq!(q("192.168.0.1/24", "broadcast"), "192.168.0.255");
        assert_eq!(q("192.168.0.1/24", "subnet"), "192.168.0.0/24");
        assert_eq!(q("192.168.0.1/24", "host"), "192.168.0.1/24");
        assert_eq!(q("192.168.0.1", "host"), "192.168.0.1/32");
        assert_eq!(q("192.168.0.0/24", "net"), "192.168.0.0/24");
        assert_eq!(q("192.168.0.0/24", "size"), "256");
        assert_eq!(q("192.168.0.0/24", "1"), "192.168.0.1/24");
        assert_eq!(q("192.168.0.0/24", "-1"), "192.168.0.255/24");
        assert_eq!(q("10.0.0.1", "private"), "10.0.0.1");
        assert_eq!(q("8.8.8.8", "private"), "False");
        assert_eq!(q("8.8.8.8", "public"), "8.8.8.8");
        assert_eq!(q("10.1.2.3/255.255.0.0", "prefix"), "16");
        assert_eq!(q("2001:db8::1/64", "network"), "2001:db8::");
        assert_eq!(q("2001:db8::1/64", "address"), "2001:db8::1");
        assert!(try_render("{{ '10.0.0.1' | ipaddr('colour') }}", serde_json::json!({})).is_err());
    }

    #[test]
    fn ipwrap_brackets_ipv6_only() {
        assert_eq!(
            r("{{ ['192.24.2.1', '::1', '2001:db8::1/64', 'host.fqdn'] | ipwrap }}"),
            "['192.24.2.1', '[::1]', '[2001:db8::1]/64', 'host.fqdn']"
        );
        assert_eq!(r("{{ '::1' | ansible.utils.ipwrap }}"), "[::1]");
    }
}
