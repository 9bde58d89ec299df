//! Paths as the node sees them: absolute, normalised, never `..`.
//!
//! A name on Linux is any bytes but `/` and NUL; a path here is a string. A name that is
//! not UTF-8 (a purged directory may hold one) is kept with each byte that is not part of
//! valid UTF-8 written as NUL and two lowercase hex digits: no real name holds a NUL, so
//! the form cannot be confused with one, and it is undone at every system call
//! ([`TargetPath::name_bytes`]). Such a path is displayed with `\xNN` for those bytes.

use std::borrow::Cow;
use std::fmt;

use serde::{Deserialize, Serialize};

/// Why a path was refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("invalid target path {path:?}: {why}")]
pub struct PathError {
    /// The refused path.
    pub path: String,
    /// What is wrong with it.
    pub why: &'static str,
}

/// An absolute path on the node (`/etc/app.conf`), whatever `--root` is. It has no `..`,
/// no `.`, no empty component and no trailing slash, so two equal paths are equal strings.
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct TargetPath(String);

impl TargetPath {
    /// Parses an absolute path. A relative path is taken as relative to `/`.
    pub fn parse(path: &str) -> Result<TargetPath, PathError> {
        let bad = |why| PathError {
            path: path.to_string(),
            why,
        };
        let mut out = String::with_capacity(path.len() + 1);
        for part in path.split('/').filter(|p| !p.is_empty()) {
            if let Some(why) = refused(part) {
                return Err(bad(why));
            }
            out.push('/');
            out.push_str(part);
        }
        if out.is_empty() {
            out.push('/');
        }
        Ok(TargetPath(out))
    }

    /// Checks that `name` is one component of a path, as [`TargetPath::join`] would take
    /// it: not empty, no `/`, and none of what [`TargetPath::parse`] refuses.
    pub fn check_name(name: &str) -> Result<(), PathError> {
        let why = match name {
            "" => Some("a name cannot be empty"),
            n if n.contains('/') => Some("a name is one path component"),
            n => refused(n),
        };
        match why {
            Some(why) => Err(PathError {
                path: name.to_string(),
                why,
            }),
            None => Ok(()),
        }
    }

    /// A directory entry's name as a path component: UTF-8 as it is, each byte that is
    /// not part of valid UTF-8 as NUL and two hex digits (see the module's documentation).
    pub fn name_from_bytes(bytes: &[u8]) -> Cow<'_, str> {
        if let Ok(s) = std::str::from_utf8(bytes) {
            return Cow::Borrowed(s);
        }
        let mut out = String::with_capacity(bytes.len() + 8);
        for chunk in bytes.utf8_chunks() {
            out.push_str(chunk.valid());
            for b in chunk.invalid() {
                out.push(ESCAPE);
                out.push_str(&format!("{b:02x}"));
            }
        }
        Cow::Owned(out)
    }

    /// The bytes a name (or path) stands for, as system calls take them: what
    /// [`TargetPath::name_from_bytes`] made, undone.
    pub fn name_bytes(name: &str) -> Cow<'_, [u8]> {
        if !name.contains(ESCAPE) {
            return Cow::Borrowed(name.as_bytes());
        }
        Cow::Owned(unescape(name).unwrap_or_else(|| name.as_bytes().to_vec()))
    }

    /// The path as a person reads it: a byte that is not UTF-8 shows as `\xNN`.
    pub fn shown(&self) -> Cow<'_, str> {
        if !self.0.contains(ESCAPE) {
            return Cow::Borrowed(&self.0);
        }
        let mut out = String::with_capacity(self.0.len() + 8);
        let mut chars = self.0.chars();
        while let Some(c) = chars.next() {
            if c == ESCAPE {
                out.push_str("\\x");
                out.extend(chars.by_ref().take(2));
            } else {
                out.push(c);
            }
        }
        Cow::Owned(out)
    }

    /// The root, `/`.
    pub fn root() -> TargetPath {
        TargetPath("/".to_string())
    }

    /// The path as a string, starting with `/`.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The path without its leading `/` (`.` for the root), for `*at` calls.
    pub fn relative(&self) -> &str {
        if self.0 == "/" { "." } else { &self.0[1..] }
    }

    /// The parent directory; `None` for `/`.
    pub fn parent(&self) -> Option<TargetPath> {
        if self.0 == "/" {
            return None;
        }
        let cut = self.0.rfind('/').unwrap_or(0);
        Some(TargetPath(if cut == 0 {
            "/".to_string()
        } else {
            self.0[..cut].to_string()
        }))
    }

    /// The last component; empty for `/`.
    pub fn file_name(&self) -> &str {
        &self.0[self.0.rfind('/').map_or(0, |i| i + 1)..]
    }

    /// This path joined with a relative path (which is parsed like any other).
    pub fn join(&self, rel: &str) -> Result<TargetPath, PathError> {
        TargetPath::parse(&format!("{}/{rel}", self.0))
    }

    /// Every ancestor from the nearest to `/` excluded, as strings (nothing is allocated).
    pub fn ancestor_strs(&self) -> impl Iterator<Item = &str> {
        let s = self.0.as_str();
        s.rmatch_indices('/')
            .filter(|(i, _)| *i > 0)
            .map(move |(i, _)| &s[..i])
    }

    /// Every ancestor from the nearest to `/` excluded.
    pub fn ancestors(&self) -> impl Iterator<Item = TargetPath> {
        // A prefix of a valid path up to a `/` is a valid path.
        self.ancestor_strs().map(|a| TargetPath(a.to_string()))
    }

    /// The parent directory as a string (`/` for a path just below the root); `None` for
    /// `/`. Nothing is allocated.
    pub fn parent_str(&self) -> Option<&str> {
        (self.0 != "/").then(|| self.ancestor_strs().next().unwrap_or("/"))
    }

    /// Whether `self` is `other` or lies below it.
    pub fn starts_with(&self, other: &TargetPath) -> bool {
        other.0 == "/"
            || self.0 == other.0
            || (self.0.starts_with(&other.0) && self.0.as_bytes()[other.0.len()] == b'/')
    }

    /// How many components deep the path is (`/` is 0).
    pub fn depth(&self) -> usize {
        if self.0 == "/" {
            0
        } else {
            self.0.matches('/').count()
        }
    }
}

/// Stands for a byte that is not UTF-8 (see the module's documentation).
const ESCAPE: char = '\0';

/// The bytes `name` stands for; `None` when an escape is not NUL and two lowercase hex
/// digits.
fn unescape(name: &str) -> Option<Vec<u8>> {
    let mut out = Vec::with_capacity(name.len());
    let mut rest = name.as_bytes();
    while let Some((&b, tail)) = rest.split_first() {
        if b == 0 {
            let hex = tail.get(..2)?;
            if !hex.iter().all(|h| matches!(h, b'0'..=b'9' | b'a'..=b'f')) {
                return None;
            }
            out.push(u8::from_str_radix(std::str::from_utf8(hex).ok()?, 16).ok()?);
            rest = &tail[2..];
        } else {
            out.push(b);
            rest = tail;
        }
    }
    Some(out)
}

/// Why a path component (not empty, no `/`) is refused, if it is.
fn refused(part: &str) -> Option<&'static str> {
    match part {
        "." => Some("'.' components are not allowed"),
        ".." => Some("'..' components are not allowed"),
        // Only as the form a name that is not UTF-8 takes, exactly as it is made.
        p if p.contains(ESCAPE)
            && unescape(p).is_none_or(|b| TargetPath::name_from_bytes(&b) != p) =>
        {
            Some("NUL bytes are not allowed")
        }
        _ => None,
    }
}

/// Sets and maps of paths can be searched by a `&str` (what [`TargetPath::as_str`] gives).
impl std::borrow::Borrow<str> for TargetPath {
    fn borrow(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for TargetPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.shown())
    }
}

impl fmt::Debug for TargetPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?}", self.0)
    }
}

impl From<TargetPath> for String {
    fn from(p: TargetPath) -> String {
        p.0
    }
}

impl TryFrom<String> for TargetPath {
    type Error = PathError;
    fn try_from(s: String) -> Result<TargetPath, PathError> {
        TargetPath::parse(&s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normalises_and_refuses_dot_dot() {
        assert_eq!(TargetPath::parse("etc//x/").unwrap().as_str(), "/etc/x");
        assert_eq!(TargetPath::parse("/").unwrap().relative(), ".");
        assert!(TargetPath::parse("/etc/../x").is_err());
        assert!(TargetPath::parse("/etc/./x").is_err());
    }

    #[test]
    fn walks_parents() {
        let p = TargetPath::parse("/a/b/c").unwrap();
        let up: Vec<_> = p.ancestors().map(String::from).collect();
        assert_eq!(up, ["/a/b", "/a"]);
        assert!(p.ancestor_strs().eq(["/a/b", "/a"]));
        assert_eq!(TargetPath::root().ancestor_strs().count(), 0);
        assert_eq!(p.parent_str(), Some("/a/b"));
        assert_eq!(TargetPath::parse("/a").unwrap().parent_str(), Some("/"));
        assert_eq!(TargetPath::root().parent_str(), None);
        for bad in ["", ".", "..", "a/b", "a\0b"] {
            assert!(TargetPath::check_name(bad).is_err(), "{bad:?}");
        }
        assert!(TargetPath::check_name("a.b").is_ok());
        assert_eq!(p.file_name(), "c");
        assert_eq!(p.depth(), 3);
        assert!(p.starts_with(&TargetPath::parse("/a").unwrap()));
        assert!(
            !TargetPath::parse("/ab")
                .unwrap()
                .starts_with(&TargetPath::parse("/a").unwrap())
        );
    }

    /// A name that is not UTF-8 has one form as a path, which gives its bytes back and
    /// shows escaped; a NUL in any other form is refused, as before.
    #[test]
    fn a_name_that_is_not_utf8_round_trips_and_shows_escaped() {
        let raw = b"bad\xff\xfename\xc3";
        let name = TargetPath::name_from_bytes(raw);
        assert_eq!(name, "bad\0ff\0fename\0c3");
        assert_eq!(&*TargetPath::name_bytes(&name), raw);
        let p = TargetPath::parse("/etc").unwrap().join(&name).unwrap();
        assert_eq!(p.file_name(), name);
        assert_eq!(p.to_string(), "/etc/bad\\xff\\xfename\\xc3");
        let back: TargetPath = serde_json::from_str(&serde_json::to_string(&p).unwrap()).unwrap();
        assert_eq!(back, p);
        assert_eq!(TargetPath::name_from_bytes("é".as_bytes()), "é");
        assert_eq!(TargetPath::name_bytes("plain"), &b"plain"[..]);
        // Not the form strata makes: a NUL, a bad digit, upper case, an escaped ASCII
        // byte (`/`, NUL), bytes that are valid UTF-8 (`é`).
        for bad in [
            "a\x00b",
            "a\x00",
            "a\x00zz",
            "a\x00FF",
            "a\x002f",
            "a\x0000",
            "\x00c3\x00a9",
        ] {
            assert!(TargetPath::check_name(bad).is_err(), "{bad:?}");
        }
    }
}
