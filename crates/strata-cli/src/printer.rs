//! All output goes through here: data on stdout, messages on stderr, colour only on a
//! terminal and never with `NO_COLOR`.

use std::borrow::Cow;
use std::io::{self, Write};

/// Whether `text` holds a control character other than tab (and newline, with `newline`): C0 (newline included), DEL,
/// or C1 (U+0080–U+009F, two bytes in UTF-8). A byte scan, cheap enough for every diff.
fn has_control(text: &str, newline: bool) -> bool {
    let b = text.as_bytes();
    b.iter().enumerate().any(|(i, &c)| {
        (c < 0x20 && c != b'\t' && !(newline && c == b'\n'))
            || c == 0x7f
            || (c == 0xc2 && b.get(i + 1).is_some_and(|n| (0x80..=0x9f).contains(n)))
    })
}

/// `text` with its control characters escaped (`\u{1b}`, `\n`), as `ls` does with file
/// names: nothing that comes from a site, a target or a script may retitle, recolour or
/// erase the terminal, or hide a line. Tab stays.
pub fn clean(text: &str) -> Cow<'_, str> {
    if !has_control(text, false) {
        return Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len() + 8);
    for c in text.chars() {
        if c != '\t' && (c.is_control()) {
            out.extend(c.escape_default());
        } else {
            out.push(c);
        }
    }
    Cow::Owned(out)
}

/// Each line of `text` cleaned, the line breaks kept.
pub fn clean_lines(text: &str) -> Cow<'_, str> {
    if !has_control(text, true) {
        return Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len() + 8);
    for (i, line) in text.split('\n').enumerate() {
        if i > 0 {
            out.push('\n');
        }
        out.push_str(&clean(line));
    }
    Cow::Owned(out)
}

/// Where and how to print.
#[derive(Debug, Clone, Copy)]
pub struct Printer {
    /// Colour on stdout.
    pub color: bool,
    /// Colour on stderr.
    pub color_err: bool,
    /// Show unchanged paths too.
    pub verbose: bool,
}

/// ANSI styles.
#[derive(Debug, Clone, Copy)]
pub enum Style {
    Green,
    Yellow,
    Red,
    Cyan,
    Magenta,
    Bold,
    Dim,
}

impl Style {
    fn code(self) -> &'static str {
        match self {
            Style::Green => "32",
            Style::Yellow => "33",
            Style::Red => "31",
            Style::Cyan => "36",
            Style::Magenta => "35",
            Style::Bold => "1",
            Style::Dim => "2",
        }
    }
}

impl Printer {
    /// Wraps text in a style when colour is on for stdout.
    pub fn paint(&self, style: Style, text: &str) -> String {
        let mut out = String::new();
        self.paint_into(&mut out, style, text);
        out
    }

    /// Like [`Printer::paint`], appending to `out`.
    pub fn paint_into(&self, out: &mut String, style: Style, text: &str) {
        if self.color {
            out.push_str("\x1b[");
            out.push_str(style.code());
            out.push('m');
            out.push_str(text);
            out.push_str("\x1b[0m");
        } else {
            out.push_str(text);
        }
    }

    /// Writes data to stdout.
    pub fn out(&self, text: &str) -> io::Result<()> {
        let mut out = io::stdout().lock();
        out.write_all(text.as_bytes())?;
        out.flush()
    }

    /// Writes a JSON document to stdout.
    pub fn json<T: serde::Serialize>(&self, value: &T) -> io::Result<()> {
        let mut text = serde_json::to_string_pretty(value).map_err(io::Error::other)?;
        text.push('\n');
        self.out(&text)
    }

    /// A message on stderr.
    pub fn note(&self, text: &str) {
        let _ = writeln!(io::stderr().lock(), "{}", clean_lines(text));
    }

    /// An error with its hints on stderr.
    pub fn error(&self, text: &str, hints: &[String]) {
        let (e, h) = if self.color_err {
            ("\x1b[1;31merror:\x1b[0m", "\x1b[1;36mhint:\x1b[0m")
        } else {
            ("error:", "hint:")
        };
        let mut err = io::stderr().lock();
        let _ = writeln!(err, "{e} {}", clean_lines(text));
        for hint in hints {
            let _ = writeln!(err, "{h} {}", clean_lines(hint));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn control_characters_are_escaped_and_the_rest_kept() {
        assert_eq!(clean("plain/path\twith tab"), "plain/path\twith tab");
        assert_eq!(clean("a\x1b]0;x\x07b"), "a\\u{1b}]0;x\\u{7}b");
        assert_eq!(clean("é\u{9b}2J\x7f\r\n"), "é\\u{9b}2J\\u{7f}\\r\\n");
        assert_eq!(clean_lines("one\n\x1b[2Jtwo\n"), "one\n\\u{1b}[2Jtwo\n");
    }
}
