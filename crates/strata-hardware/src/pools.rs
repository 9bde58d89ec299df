//! Pools: lists of values handed out to machines, written as entries or generated from
//! ranges.

use std::collections::BTreeMap;

/// One pool entry: key → value.
pub type PoolEntry = BTreeMap<String, String>;

/// Expands one `generate` table: every value is expanded (ranges) or copied (constants);
/// the shortest expanded list sets the number of entries.
pub fn generate(table: &BTreeMap<String, String>) -> Result<Vec<PoolEntry>, String> {
    let mut lists: Vec<(&String, Vec<String>)> = Vec::new();
    let mut constants: Vec<(&String, &String)> = Vec::new();
    for (key, value) in table {
        match expand(value).map_err(|e| format!("{key} = {value:?}: {e}"))? {
            Some(list) => lists.push((key, list)),
            None => constants.push((key, value)),
        }
    }
    let n = lists.iter().map(|(_, l)| l.len()).min().unwrap_or(1);
    Ok((0..n)
        .map(|i| {
            let mut e: PoolEntry = constants
                .iter()
                .map(|(k, v)| ((*k).clone(), (*v).clone()))
                .collect();
            for (k, l) in &lists {
                e.insert((*k).clone(), l[i].clone());
            }
            e
        })
        .collect())
}

/// The values a string stands for, or `None` when it is a constant. Forms: `"1-12"`
/// (zero padding kept: `"001-120"`), `"10-1"` (descending), `"1-3:7-9"` (joined), and per
/// IPv4 octet `"10.0.1-2.10-20"`.
pub fn expand(value: &str) -> Result<Option<Vec<String>>, String> {
    let parts: Vec<&str> = value.split(':').collect();
    if parts.iter().all(|p| is_range(p) || is_number(p)) && parts.iter().any(|p| is_range(p)) {
        let mut out = Vec::new();
        for p in parts {
            out.extend(numbers(p)?);
        }
        return Ok(Some(out));
    }
    let octets: Vec<&str> = value.split('.').collect();
    if octets.len() == 4
        && octets.iter().all(|o| is_range(o) || is_number(o))
        && octets.iter().any(|o| is_range(o))
    {
        let lists: Vec<Vec<String>> = octets
            .iter()
            .map(|o| numbers(o))
            .collect::<Result<_, _>>()?;
        for l in &lists {
            if l.iter().any(|x| x.parse::<u32>().map_or(true, |v| v > 255)) {
                return Err("an octet is out of 0-255".into());
            }
        }
        let mut out = vec![String::new()];
        for (i, l) in lists.iter().enumerate() {
            out = out
                .iter()
                .flat_map(|prefix| {
                    l.iter().map(move |x| {
                        if i == 0 {
                            x.clone()
                        } else {
                            format!("{prefix}.{x}")
                        }
                    })
                })
                .collect();
        }
        return Ok(Some(out));
    }
    Ok(None)
}

fn is_number(s: &str) -> bool {
    !s.is_empty() && s.chars().all(|c| c.is_ascii_digit())
}

fn is_range(s: &str) -> bool {
    s.split_once('-')
        .is_some_and(|(a, b)| is_number(a) && is_number(b))
}

/// `"a-b"` (either direction, padding kept) or a single number.
fn numbers(s: &str) -> Result<Vec<String>, String> {
    let Some((a, b)) = s.split_once('-') else {
        return Ok(vec![s.to_string()]);
    };
    let width = if a.len() > 1 && a.starts_with('0') {
        a.len()
    } else {
        0
    };
    let (x, y): (u64, u64) = (
        a.parse().map_err(|_| format!("bad number {a}"))?,
        b.parse().map_err(|_| format!("bad number {b}"))?,
    );
    if x.abs_diff(y) > 1_000_000 {
        return Err(format!("range {s} is too large"));
    }
    let fmt = |v: u64| format!("{v:0width$}");
    Ok(if x <= y {
        (x..=y).map(fmt).collect()
    } else {
        (y..=x).rev().map(fmt).collect()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ex(s: &str) -> Vec<String> {
        expand(s).unwrap().unwrap()
    }

    #[test]
    fn every_range_form() {
        assert_eq!(ex("1-3"), ["1", "2", "3"]);
        assert_eq!(ex("001-003"), ["001", "002", "003"]);
        assert_eq!(ex("10-8"), ["10", "9", "8"]);
        assert_eq!(ex("1-3:7-9"), ["1", "2", "3", "7", "8", "9"]);
        assert_eq!(ex("1-2:5"), ["1", "2", "5"]);
        assert_eq!(
            ex("10.0.1-2.10-11"),
            ["10.0.1.10", "10.0.1.11", "10.0.2.10", "10.0.2.11"]
        );
        assert_eq!(expand("192.168.122.1").unwrap(), None);
        assert_eq!(expand("web").unwrap(), None);
        assert_eq!(
            expand("52:54:00:88:17:3c").unwrap(),
            None,
            "a MAC is a constant"
        );
        assert!(expand("10.0.1-300.1").is_err());
    }

    #[test]
    fn the_shortest_list_sets_the_count_and_constants_are_copied() {
        let t = BTreeMap::from([
            ("ip".to_string(), "192.168.122.3-7".to_string()),
            ("name".to_string(), "web01-03".to_string()),
            ("gateway".to_string(), "192.168.122.1".to_string()),
        ]);
        let entries = generate(&t).unwrap();
        assert_eq!(
            entries.len(),
            5,
            "web01-03 is a constant: `web01` is no number"
        );
        let t = BTreeMap::from([
            ("ip".to_string(), "10.0.0.1-9".to_string()),
            ("host".to_string(), "1-3".to_string()),
        ]);
        let entries = generate(&t).unwrap();
        assert_eq!(entries.len(), 3);
        assert_eq!(entries[2]["ip"], "10.0.0.3");
        assert_eq!(entries[2]["host"], "3");
    }
}
