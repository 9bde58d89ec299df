//! Ansible's regular-expression filters and tests (`regex_replace`, `regex_search`,
//! `regex_findall`, `regex_escape`; `is match`, `is search`, `is regex`), with Python's
//! replacement syntax (`\1`, `\g<name>`). Patterns are Rust's `regex` syntax, which is
//! Python's less look-around and back-references: such a pattern is an error naming it.

use minijinja::value::{Kwargs, Rest};
use minijinja::{Error, State, Value};
use regex::{Captures, Regex, RegexBuilder};

use super::fail;

fn compile(pattern: &str, kwargs: &Kwargs) -> Result<Regex, Error> {
    let ignorecase = kwargs.get::<Option<bool>>("ignorecase")?.unwrap_or(false);
    let multiline = kwargs.get::<Option<bool>>("multiline")?.unwrap_or(false);
    RegexBuilder::new(pattern)
        .case_insensitive(ignorecase)
        .multi_line(multiline)
        .build()
        .map_err(|e| fail(format!("invalid regular expression `{pattern}`: {e}")))
}

/// One piece of a Python replacement template.
#[derive(Debug, PartialEq)]
enum Piece {
    Text(String),
    Group(usize),
    Named(String),
}

/// Parses Python's `re.sub` replacement syntax.
fn template(repl: &str) -> Result<Vec<Piece>, Error> {
    let mut out = Vec::new();
    let mut text = String::new();
    let mut chars = repl.chars().peekable();
    while let Some(c) = chars.next() {
        if c != '\\' {
            text.push(c);
            continue;
        }
        let group = match chars.next() {
            None => return Err(fail(format!("bad escape (end of pattern) in `{repl}`"))),
            Some(d @ '0'..='9') => {
                let mut n = d.to_digit(10).unwrap_or(0) as usize;
                if let Some(e) = chars.peek().and_then(|c| c.to_digit(10)) {
                    n = n * 10 + e as usize;
                    chars.next();
                }
                Piece::Group(n)
            }
            Some('g') => {
                if chars.next() != Some('<') {
                    return Err(fail(format!("missing `<` after `\\g` in `{repl}`")));
                }
                let name: String = chars.by_ref().take_while(|&c| c != '>').collect();
                match name.parse::<usize>() {
                    Ok(n) => Piece::Group(n),
                    Err(_) => Piece::Named(name),
                }
            }
            Some(e) => {
                let lit = match e {
                    'n' => "\n",
                    't' => "\t",
                    'r' => "\r",
                    'f' => "\x0c",
                    'v' => "\x0b",
                    'a' => "\x07",
                    'b' => "\x08",
                    '\\' => "\\",
                    c if c.is_ascii_alphabetic() => {
                        return Err(fail(format!("bad escape \\{c} in `{repl}`")));
                    }
                    c => {
                        text.push('\\');
                        text.push(c);
                        continue;
                    }
                };
                text.push_str(lit);
                continue;
            }
        };
        if !text.is_empty() {
            out.push(Piece::Text(std::mem::take(&mut text)));
        }
        out.push(group);
    }
    if !text.is_empty() {
        out.push(Piece::Text(text));
    }
    Ok(out)
}

fn group<'h>(caps: &Captures<'h>, piece: &Piece) -> Result<&'h str, Error> {
    let (m, known) = match piece {
        Piece::Group(n) => (caps.get(*n), *n < caps.len()),
        Piece::Named(name) => (caps.name(name), caps.name(name).is_some()),
        Piece::Text(_) => return Ok(""),
    };
    if !known && m.is_none() {
        if let Piece::Named(name) = piece {
            return Err(fail(format!("unknown group name `{name}`")));
        }
        return Err(fail(format!("invalid group reference {piece:?}")));
    }
    Ok(m.map_or("", |m| m.as_str()))
}

/// `s | regex_replace(pattern, replacement='', ignorecase=False, multiline=False,
/// count=0)`: Python's `re.sub`.
pub(super) fn regex_replace(
    state: &State,
    value: String,
    pattern: String,
    replacement: Option<String>,
    kwargs: Kwargs,
) -> Result<String, Error> {
    let re = compile(&pattern, &kwargs)?;
    let count = kwargs.get::<Option<usize>>("count")?.unwrap_or(0);
    let mandatory = kwargs.get::<Option<usize>>("mandatory_count")?.unwrap_or(0);
    kwargs.assert_all_used()?;
    let pieces = template(replacement.as_deref().unwrap_or(""))?;
    let mut out = String::with_capacity(value.len());
    let mut last = 0;
    let mut n = 0;
    let mut charged = 0;
    for caps in re.captures_iter(&value) {
        if count != 0 && n == count {
            break;
        }
        let whole = caps.get(0).expect("group 0 always matches");
        out.push_str(&value[last..whole.start()]);
        for piece in &pieces {
            match piece {
                Piece::Text(t) => out.push_str(t),
                p => out.push_str(group(&caps, p)?),
            }
        }
        last = whole.end();
        n += 1;
        // What the replacements add is paid for as it grows, not once it is all made.
        if out.len() > charged + 64 * 1024 {
            state.consume_fuel(((out.len() - charged) / 64) as u64)?;
            charged = out.len();
        }
    }
    if mandatory != 0 && n != mandatory {
        return Err(fail(format!(
            "`{pattern}` should match {mandatory} times, it matched {n} times"
        )));
    }
    out.push_str(&value[last..]);
    Ok(out)
}

/// `s | regex_search(pattern, '\\1', '\\g<name>'…)`: the first match, or the listed
/// groups of it; none when nothing matches.
pub(super) fn regex_search(
    value: String,
    pattern: String,
    groups: Rest<String>,
    kwargs: Kwargs,
) -> Result<Value, Error> {
    let re = compile(&pattern, &kwargs)?;
    kwargs.assert_all_used()?;
    let Some(caps) = re.captures(&value) else {
        return Ok(Value::from(()));
    };
    if groups.is_empty() {
        return Ok(Value::from(&caps[0]));
    }
    let mut out = Vec::new();
    for g in groups.iter() {
        let piece = match template(g)?.as_slice() {
            [p @ (Piece::Group(_) | Piece::Named(_))] => group(&caps, p)?.to_string(),
            _ => return Err(fail(format!("unknown argument `{g}` (\\N or \\g<name>)"))),
        };
        out.push(Value::from(piece));
    }
    Ok(Value::from(out))
}

/// `s | regex_findall(pattern)`: Python's `re.findall`: the matches, or the group's
/// text, or a list of the groups for each match.
pub(super) fn regex_findall(
    value: String,
    pattern: String,
    kwargs: Kwargs,
) -> Result<Value, Error> {
    let re = compile(&pattern, &kwargs)?;
    kwargs.assert_all_used()?;
    let groups = re.captures_len() - 1;
    let text = |m: Option<regex::Match<'_>>| Value::from(m.map_or("", |m| m.as_str()));
    Ok(re
        .captures_iter(&value)
        .map(|c| match groups {
            0 => text(c.get(0)),
            1 => text(c.get(1)),
            _ => Value::from((1..=groups).map(|i| text(c.get(i))).collect::<Vec<_>>()),
        })
        .collect())
}

/// `s | regex_escape`: Python's `re.escape`.
pub(super) fn regex_escape(value: String) -> String {
    let mut out = String::with_capacity(value.len());
    for c in value.chars() {
        if "()[]{}?*+-|^$\\.&~# \t\n\r\x0b\x0c".contains(c) {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

fn test(value: &str, pattern: &str, kwargs: &Kwargs, how: &str) -> Result<bool, Error> {
    let re = compile(pattern, kwargs)?;
    let how = kwargs
        .get::<Option<String>>("match_type")?
        .unwrap_or(how.into());
    kwargs.assert_all_used()?;
    Ok(match how.as_str() {
        "match" => {
            re.find(value).is_some_and(|m| m.start() == 0)
                || re.find_iter(value).any(|m| m.start() == 0)
        }
        "fullmatch" => re
            .find_iter(value)
            .any(|m| m.start() == 0 && m.end() == value.len()),
        _ => re.is_match(value),
    })
}

/// `s is match(pattern)`: whether the pattern matches at the start.
pub(super) fn is_match(value: String, pattern: String, kwargs: Kwargs) -> Result<bool, Error> {
    let anchored = format!("^(?:{pattern})");
    test(&value, &anchored, &kwargs, "search")
}

/// `s is search(pattern)`: whether the pattern matches anywhere.
pub(super) fn is_search(value: String, pattern: String, kwargs: Kwargs) -> Result<bool, Error> {
    test(&value, &pattern, &kwargs, "search")
}

/// `s is regex(pattern, match_type='search')`.
pub(super) fn is_regex(value: String, pattern: String, kwargs: Kwargs) -> Result<bool, Error> {
    test(&value, &pattern, &kwargs, "search")
}

#[cfg(test)]
mod tests {
    use crate::ansible::testing::{r, try_render};

    #[test]
    fn replace_with_groups_as_python_writes_them() {
        assert_eq!(
            r(
                r#"{{ 'localhost:80' | regex_replace('^(?P<host>.+):(?P<port>\\d+)$', '\\g<host>, \\g<port>') }}"#
            ),
            "localhost, 80"
        );
        assert_eq!(
            r(r#"{{ 'ansible' | regex_replace('^a.*i(.*)$', 'a\\1') }}"#),
            "able"
        );
        assert_eq!(
            r(r#"{{ 'foobar' | ansible.builtin.regex_replace('^f.*o(.*)$', '\\g<1>') }}"#),
            "bar"
        );
        // `$` is text in Python's replacement, not a group.
        assert_eq!(r("{{ 'a-b' | regex_replace('-', '$1') }}"), "a$1b");
        // A group that did not take part is empty.
        assert_eq!(r(r#"{{ 'ab' | regex_replace('a(x)?', '[\\1]') }}"#), "[]b");
    }

    #[test]
    fn replace_options() {
        assert_eq!(
            r("{{ 'CAT cat' | regex_replace('cat', 'dog', ignorecase=true) }}"),
            "dog dog"
        );
        assert_eq!(
            r("{{ 'a\\nb' | regex_replace('^', '# ', multiline=true) }}"),
            "# a\n# b"
        );
        assert_eq!(r("{{ 'aaa' | regex_replace('a', 'b', count=2) }}"), "bba");
        assert_eq!(r("{{ 'x.y' | regex_replace('\\\\.', '') }}"), "xy");
        assert_eq!(r("{{ 'abc' | regex_replace('b') }}"), "ac");
    }

    #[test]
    fn search_returns_the_match_groups_or_none() {
        assert_eq!(
            r("{{ 'server1/database42' | regex_search('database[0-9]+') }}"),
            "database42"
        );
        assert_eq!(r("{{ 'foo' | regex_search('bar') is none }}"), "True");
        assert_eq!(
            r(
                r#"{{ 'server1/database42' | regex_search('server([0-9]+)/database([0-9]+)', '\\1', '\\2') }}"#
            ),
            "['1', '42']"
        );
        assert_eq!(
            r(r#"{{ 'a=1' | regex_search('(?P<k>\\w)=(?P<v>\\d)', '\\g<v>') | first }}"#),
            "1"
        );
        assert_eq!(
            r("{{ 'FOO' | regex_search('foo', ignorecase=true) }}"),
            "FOO"
        );
    }

    #[test]
    fn findall_escape_and_tests() {
        assert_eq!(r("{{ 'a1b22' | regex_findall('[0-9]+') }}"), "['1', '22']");
        assert_eq!(
            r("{{ 'k=v x=y' | regex_findall('(\\\\w)=(\\\\w)') }}"),
            "[['k', 'v'], ['x', 'y']]"
        );
        assert_eq!(
            r("{{ '^f.*o(.*)$' | regex_escape }}"),
            r"\^f\.\*o\(\.\*\)\$"
        );
        assert_eq!(r("{{ 'http://x' is match('http') }}"), "True");
        assert_eq!(r("{{ 'xhttp' is match('http') }}"), "False");
        assert_eq!(r("{{ 'xhttp' is search('http') }}"), "True");
        assert_eq!(r("{{ 'xhttp' is ansible.builtin.regex('^x') }}"), "True");
    }

    #[test]
    fn replacements_that_blow_up_run_out_of_fuel() {
        let r = crate::render::Renderer::new();
        let src = "{{ ('a' * 1000000) | regex_replace('', 'x' * 100000) | length }}";
        let err = r
            .render("t.j2", src, &minijinja::Value::from(()))
            .unwrap_err();
        assert!(
            err.message.starts_with("the template does more work"),
            "{}",
            err.message
        );
    }

    #[test]
    fn a_pattern_rust_cannot_run_is_an_error_naming_it() {
        let err = try_render(
            "{{ 'a' | regex_replace('(?=a)', 'b') }}",
            serde_json::json!({}),
        )
        .unwrap_err();
        assert!(err.contains("invalid regular expression `(?=a)`"), "{err}");
        let err = try_render(
            "{{ 'a' | regex_replace('a', '\\\\q') }}",
            serde_json::json!({}),
        )
        .unwrap_err();
        assert!(err.contains("bad escape"), "{err}");
    }
}
