//! eDeploy's spec language: elements that match one string of a fact tuple.

use std::collections::BTreeMap;
use std::net::IpAddr;

/// A test on one value.
#[derive(Debug, Clone)]
pub enum Matcher {
    /// Numerically greater than.
    Gt(f64),
    /// Numerically greater than or equal.
    Ge(f64),
    /// Numerically less than.
    Lt(f64),
    /// Numerically less than or equal.
    Le(f64),
    /// Numerically within `[a, b]`.
    Range(f64, f64),
    /// One of these strings.
    In(Vec<String>),
    /// An IP address inside this network.
    Network(IpAddr, u8),
    /// A regular expression (anchored at both ends, as eDeploy's re.match was at the start).
    Regexp(regex::Regex),
    /// The inner matcher fails.
    Not(Box<Matcher>),
    /// All inner matchers succeed.
    And(Vec<Matcher>),
    /// Any inner matcher succeeds.
    Or(Vec<Matcher>),
}

/// One of the four elements of a spec entry.
#[derive(Debug, Clone)]
pub enum Element {
    /// Equal to this string.
    Literal(String),
    /// A variable, bound to the value (then required equal everywhere it appears); with an
    /// optional matcher the value must also pass; `identity` for `$$var`.
    Var {
        /// Its name, without `$`.
        name: String,
        /// `$$var`: an identity variable (sticky pool assignment).
        identity: bool,
        /// `$var=matcher`.
        matcher: Option<Matcher>,
    },
    /// A matcher.
    Match(Matcher),
}

const NAMES: [&str; 11] = [
    "gt", "ge", "lt", "le", "range", "in", "network", "regexp", "not", "and", "or",
];

impl Matcher {
    /// Parses `name(args)`; `Ok(None)` when the text is not a matcher call at all.
    pub fn parse(text: &str) -> Result<Option<Matcher>, String> {
        let text = text.trim();
        let Some(open) = text.find('(') else {
            return Ok(None);
        };
        let name = &text[..open];
        if !NAMES.contains(&name) {
            if name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
                && text.ends_with(')')
                && !name.is_empty()
            {
                return Err(format!(
                    "unknown matcher `{name}` (known: {})",
                    NAMES.join(", ")
                ));
            }
            return Ok(None);
        }
        let inner = text[open + 1..]
            .strip_suffix(')')
            .ok_or_else(|| format!("`{text}`: missing closing parenthesis"))?;
        let num = |s: &str| {
            s.trim()
                .parse::<f64>()
                .map_err(|_| format!("`{text}`: `{}` is not a number", s.trim()))
        };
        let args = split_args(inner).map_err(|e| format!("`{text}`: {e}"))?;
        let one = |args: &[String]| -> Result<String, String> {
            match args {
                [a] => Ok(a.clone()),
                _ => Err(format!("`{text}`: {name} takes one argument")),
            }
        };
        let m = match name {
            "gt" => Matcher::Gt(num(&one(&args)?)?),
            "ge" => Matcher::Ge(num(&one(&args)?)?),
            "lt" => Matcher::Lt(num(&one(&args)?)?),
            "le" => Matcher::Le(num(&one(&args)?)?),
            "range" => match &args[..] {
                [a, b] => Matcher::Range(num(a)?, num(b)?),
                _ => return Err(format!("`{text}`: range takes two numbers")),
            },
            "in" => Matcher::In(args.iter().map(|a| a.trim().to_string()).collect()),
            "network" => Matcher::network(&one(&args)?, text)?,
            // The whole inner text is the expression: commas and parentheses included.
            "regexp" => Matcher::Regexp(
                regex::Regex::new(&format!("^(?:{inner})$"))
                    .map_err(|e| format!("`{text}`: {e}"))?,
            ),
            "not" => Matcher::Not(Box::new(Matcher::required(&one(&args)?, text)?)),
            "and" | "or" => {
                let inner: Vec<Matcher> = args
                    .iter()
                    .map(|a| Matcher::required(a, text))
                    .collect::<Result<_, _>>()?;
                if name == "and" {
                    Matcher::And(inner)
                } else {
                    Matcher::Or(inner)
                }
            }
            _ => unreachable!("names are checked above"),
        };
        Ok(Some(m))
    }

    /// `network(ADDRESS/PREFIX)`, its argument `cidr` of the matcher `whole`.
    fn network(cidr: &str, whole: &str) -> Result<Matcher, String> {
        let (ip, bits) = cidr
            .trim()
            .split_once('/')
            .ok_or_else(|| format!("`{whole}`: expected ADDRESS/PREFIX"))?;
        let ip: IpAddr = ip
            .parse()
            .map_err(|_| format!("`{whole}`: `{ip}` is not an IP address"))?;
        let bits: u8 = bits
            .parse()
            .map_err(|_| format!("`{whole}`: bad prefix `{bits}`"))?;
        if bits > if ip.is_ipv4() { 32 } else { 128 } {
            return Err(format!("`{whole}`: prefix /{bits} is too long"));
        }
        Ok(Matcher::Network(ip, bits))
    }

    fn required(text: &str, whole: &str) -> Result<Matcher, String> {
        Matcher::parse(text)?
            .ok_or_else(|| format!("`{whole}`: `{}` is not a matcher", text.trim()))
    }

    /// Whether `value` passes.
    pub fn matches(&self, value: &str) -> bool {
        let n = || value.trim().parse::<f64>().ok();
        match self {
            Matcher::Gt(x) => n().is_some_and(|v| v > *x),
            Matcher::Ge(x) => n().is_some_and(|v| v >= *x),
            Matcher::Lt(x) => n().is_some_and(|v| v < *x),
            Matcher::Le(x) => n().is_some_and(|v| v <= *x),
            Matcher::Range(a, b) => n().is_some_and(|v| *a <= v && v <= *b),
            Matcher::In(list) => list.iter().any(|s| s == value),
            Matcher::Network(net, bits) => value
                .split('/')
                .next()
                .and_then(|v| v.parse::<IpAddr>().ok())
                .is_some_and(|ip| in_network(ip, *net, *bits)),
            Matcher::Regexp(re) => re.is_match(value),
            Matcher::Not(m) => !m.matches(value),
            Matcher::And(ms) => ms.iter().all(|m| m.matches(value)),
            Matcher::Or(ms) => ms.iter().any(|m| m.matches(value)),
        }
    }
}

fn in_network(ip: IpAddr, net: IpAddr, bits: u8) -> bool {
    match (ip, net) {
        (IpAddr::V4(a), IpAddr::V4(n)) => {
            let mask = if bits == 0 {
                0
            } else {
                u32::MAX << (32 - bits)
            };
            u32::from(a) & mask == u32::from(n) & mask
        }
        (IpAddr::V6(a), IpAddr::V6(n)) => {
            let mask = if bits == 0 {
                0
            } else {
                u128::MAX << (128 - bits)
            };
            u128::from(a) & mask == u128::from(n) & mask
        }
        _ => false,
    }
}

/// Splits on commas that are not inside parentheses.
fn split_args(s: &str) -> Result<Vec<String>, String> {
    let mut out = Vec::new();
    let (mut depth, mut cur) = (0i32, String::new());
    for c in s.chars() {
        match c {
            '(' => depth += 1,
            ')' => depth -= 1,
            ',' if depth == 0 => {
                out.push(std::mem::take(&mut cur));
                continue;
            }
            _ => {}
        }
        if depth < 0 {
            return Err("unbalanced parentheses".into());
        }
        cur.push(c);
    }
    if depth != 0 {
        return Err("unbalanced parentheses".into());
    }
    out.push(cur);
    Ok(out)
}

impl Element {
    /// Parses one element of a spec entry.
    pub fn parse(text: &str) -> Result<Element, String> {
        if let Some(rest) = text.strip_prefix('$') {
            let (identity, rest) = match rest.strip_prefix('$') {
                Some(r) => (true, r),
                None => (false, rest),
            };
            let (name, matcher) = match rest.split_once('=') {
                Some((n, m)) => (
                    n,
                    Some(
                        Matcher::parse(m)?
                            .ok_or_else(|| format!("`{text}`: `{m}` is not a matcher"))?,
                    ),
                ),
                None => (rest, None),
            };
            if name.is_empty() || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
                return Err(format!("`{text}`: bad variable name `{name}`"));
            }
            return Ok(Element::Var {
                name: name.to_string(),
                identity,
                matcher,
            });
        }
        Ok(match Matcher::parse(text)? {
            Some(m) => Element::Match(m),
            None => Element::Literal(text.to_string()),
        })
    }
}

/// Variable bindings made while matching.
pub type Bindings = BTreeMap<String, String>;

/// How a spec fared against a machine's tuples.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Every entry matched a different tuple; the variables captured.
    Matched(Bindings),
    /// Entry `index` matches no tuple at all.
    NoTuple {
        /// 0-based index of the entry.
        index: usize,
    },
    /// Each entry matches some tuple, but no choice satisfies them all at once (variables
    /// that must agree, tuples that would be used twice).
    NoConsistentChoice,
    /// The search gave up after this many steps.
    TooComplex(u64),
}

/// How many binding attempts a spec may take before it is declared too complex.
pub const STEP_LIMIT: u64 = 1_000_000;

/// Matches a spec: each entry against a different tuple, backtracking over alternatives
/// until a consistent choice is found.
pub fn match_spec(spec: &[[Element; 4]], tuples: &[[String; 4]]) -> Outcome {
    for (index, entry) in spec.iter().enumerate() {
        if !tuples
            .iter()
            .any(|t| bind(entry, t, &mut Bindings::new()).is_some())
        {
            return Outcome::NoTuple { index };
        }
    }
    let mut search = Search {
        spec,
        tuples,
        used: vec![false; tuples.len()],
        steps: 0,
    };
    let mut vars = Bindings::new();
    match search.run(0, &mut vars) {
        Some(true) => Outcome::Matched(vars),
        Some(false) => Outcome::NoConsistentChoice,
        None => Outcome::TooComplex(search.steps),
    }
}

struct Search<'a> {
    spec: &'a [[Element; 4]],
    tuples: &'a [[String; 4]],
    used: Vec<bool>,
    steps: u64,
}

impl Search<'_> {
    /// `Some(found)`, or `None` when the step limit is reached.
    fn run(&mut self, i: usize, vars: &mut Bindings) -> Option<bool> {
        if i == self.spec.len() {
            return Some(true);
        }
        for j in 0..self.tuples.len() {
            if self.used[j] {
                continue;
            }
            self.steps += 1;
            if self.steps > STEP_LIMIT {
                return None;
            }
            let Some(added) = bind(&self.spec[i], &self.tuples[j], vars) else {
                continue;
            };
            self.used[j] = true;
            match self.run(i + 1, vars) {
                Some(true) => return Some(true),
                None => return None,
                Some(false) => {}
            }
            self.used[j] = false;
            for name in added {
                vars.remove(&name);
            }
        }
        Some(false)
    }
}

/// Tries one entry against one tuple; on success returns the variables it newly bound
/// (already inserted into `vars`), on failure leaves `vars` as it was.
fn bind(entry: &[Element; 4], tuple: &[String; 4], vars: &mut Bindings) -> Option<Vec<String>> {
    let mut added = Vec::new();
    for (el, value) in entry.iter().zip(tuple) {
        let ok = match el {
            Element::Literal(s) => s == value,
            Element::Match(m) => m.matches(value),
            Element::Var { name, matcher, .. } => {
                matcher.as_ref().is_none_or(|m| m.matches(value))
                    && match vars.get(name) {
                        Some(bound) => bound == value,
                        None => {
                            vars.insert(name.clone(), value.clone());
                            added.push(name.clone());
                            true
                        }
                    }
            }
        };
        if !ok {
            for name in &added {
                vars.remove(name);
            }
            return None;
        }
    }
    Some(added)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn m(s: &str) -> Matcher {
        Matcher::parse(s).unwrap().unwrap()
    }

    fn spec(entries: &[[&str; 4]]) -> Vec<[Element; 4]> {
        entries
            .iter()
            .map(|e| e.map(|s| Element::parse(s).unwrap()))
            .collect()
    }

    fn tuples(ts: &[[&str; 4]]) -> Vec<[String; 4]> {
        ts.iter().map(|t| t.map(str::to_string)).collect()
    }

    #[test]
    fn every_matcher() {
        assert!(m("gt(4)").matches("5") && !m("gt(4)").matches("4") && !m("gt(4)").matches("x"));
        assert!(m("ge(4)").matches("4") && !m("ge(4)").matches("3.9"));
        assert!(m("lt(4)").matches("3") && !m("lt(4)").matches("4"));
        assert!(m("le(4)").matches("4") && !m("le(4)").matches("5"));
        assert!(
            m("range(2, 8)").matches("2")
                && m("range(2,8)").matches("8")
                && !m("range(2,8)").matches("9")
        );
        assert!(m("in(sda, sdb)").matches("sdb") && !m("in(sda,sdb)").matches("sdc"));
        assert!(m("network(192.168.122.0/24)").matches("192.168.122.10"));
        assert!(!m("network(192.168.122.0/24)").matches("192.168.123.10"));
        assert!(
            m("network(fd00::/8)").matches("fd00::2")
                && !m("network(fd00::/8)").matches("10.0.0.1")
        );
        assert!(m("regexp(HP|Dell.*)").matches("Dell Inc.") && !m("regexp(HP)").matches("HPE"));
        assert!(
            m("regexp(a{1,2}b)").matches("aab"),
            "commas inside a regexp stay in it"
        );
        assert!(m("not(in(1,2))").matches("3") && !m("not(in(1,2))").matches("1"));
        assert!(m("and(gt(1), lt(5))").matches("3") && !m("and(gt(1),lt(5))").matches("5"));
        assert!(m("or(lt(1), gt(5))").matches("6") && !m("or(lt(1),gt(5))").matches("3"));
        assert!(
            m("not(or(and(ge(1),le(2)), in(9)))").matches("5"),
            "nesting"
        );
    }

    #[test]
    fn bad_matchers_are_explained() {
        assert_eq!(Matcher::parse("sda").unwrap().map(|_| ()), None);
        assert!(
            Matcher::parse("bigger(4)")
                .unwrap_err()
                .contains("unknown matcher `bigger`")
        );
        assert!(
            Matcher::parse("gt(x)")
                .unwrap_err()
                .contains("`x` is not a number")
        );
        assert!(
            Matcher::parse("network(10.0.0.0/33)")
                .unwrap_err()
                .contains("too long")
        );
        assert!(Matcher::parse("and(gt(1), lt(2)").is_err());
        assert!(
            Matcher::parse("not(sda)")
                .unwrap_err()
                .contains("is not a matcher")
        );
    }

    #[test]
    fn each_entry_consumes_a_different_tuple() {
        let s = spec(&[
            ["disk", "$a", "size", "gt(4)"],
            ["disk", "$b", "size", "gt(4)"],
        ]);
        let one = tuples(&[["disk", "sda", "size", "100"]]);
        assert_eq!(match_spec(&s, &one), Outcome::NoConsistentChoice);
        let two = tuples(&[
            ["disk", "sda", "size", "100"],
            ["disk", "sdb", "size", "50"],
        ]);
        let Outcome::Matched(v) = match_spec(&s, &two) else {
            panic!()
        };
        assert_eq!((v["a"].as_str(), v["b"].as_str()), ("sda", "sdb"));
    }

    #[test]
    fn backtracking_finds_the_consistent_binding() {
        // The first NIC seen (eth0) is on the wrong network: $eth must be rebound to eth1
        // so that its MAC and its address come from the same interface.
        let s = spec(&[
            ["network", "$eth", "serial", "$mac"],
            ["network", "$eth", "ipv4", "network(10.0.0.0/8)"],
        ]);
        let t = tuples(&[
            ["network", "eth0", "serial", "aa:aa"],
            ["network", "eth0", "ipv4", "192.168.1.5"],
            ["network", "eth1", "serial", "bb:bb"],
            ["network", "eth1", "ipv4", "10.1.2.3"],
        ]);
        let Outcome::Matched(v) = match_spec(&s, &t) else {
            panic!()
        };
        assert_eq!((v["eth"].as_str(), v["mac"].as_str()), ("eth1", "bb:bb"));
    }

    #[test]
    fn a_variable_with_a_matcher_must_pass_it_and_agree_everywhere() {
        let s = spec(&[
            ["disk", "$d", "size", "$size=ge(100)"],
            ["disk", "$d", "rotational", "0"],
        ]);
        let t = tuples(&[
            ["disk", "sda", "size", "300"],
            ["disk", "sda", "rotational", "1"],
            ["disk", "nvme0n1", "size", "960"],
            ["disk", "nvme0n1", "rotational", "0"],
            ["disk", "sdc", "size", "50"],
            ["disk", "sdc", "rotational", "0"],
        ]);
        let Outcome::Matched(v) = match_spec(&s, &t) else {
            panic!()
        };
        assert_eq!((v["d"].as_str(), v["size"].as_str()), ("nvme0n1", "960"));
    }

    #[test]
    fn an_identity_variable_is_a_variable_too() {
        let s = spec(&[["system", "product", "serial", "$$serial"]]);
        let Element::Var { identity, .. } = &s[0][3] else {
            panic!()
        };
        assert!(identity);
        let t = tuples(&[["system", "product", "serial", "CZJ1"]]);
        assert_eq!(
            match_spec(&s, &t),
            Outcome::Matched(Bindings::from([("serial".into(), "CZJ1".into())]))
        );
    }

    #[test]
    fn an_entry_no_tuple_matches_is_named() {
        let s = spec(&[
            ["cpu", "physical", "number", "2"],
            ["memory", "total", "size", "gt(1000000000000)"],
        ]);
        let t = tuples(&[
            ["cpu", "physical", "number", "2"],
            ["memory", "total", "size", "8589934592"],
        ]);
        assert_eq!(match_spec(&s, &t), Outcome::NoTuple { index: 1 });
    }

    #[test]
    fn the_search_is_bounded() {
        // 12 interchangeable entries over 11 tuples: no solution, and factorially many tries.
        let s: Vec<[Element; 4]> = (0..12)
            .map(|i| ["x", &format!("$v{i}"), "y", "z"].map(|e| Element::parse(e).unwrap()))
            .collect();
        let t: Vec<[String; 4]> = (0..11)
            .map(|i| ["x".into(), format!("i{i}"), "y".into(), "z".into()])
            .collect();
        assert!(matches!(match_spec(&s, &t), Outcome::TooComplex(n) if n > STEP_LIMIT));
    }
}
