//! All output goes through here: data on stdout, messages on stderr, colour only on a
//! terminal and never with `NO_COLOR`.

use std::io::{self, Write};

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
        let _ = writeln!(io::stderr().lock(), "{text}");
    }

    /// An error with its hints on stderr.
    pub fn error(&self, text: &str, hints: &[String]) {
        let (e, h) = if self.color_err {
            ("\x1b[1;31merror:\x1b[0m", "\x1b[1;36mhint:\x1b[0m")
        } else {
            ("error:", "hint:")
        };
        let mut err = io::stderr().lock();
        let _ = writeln!(err, "{e} {text}");
        for hint in hints {
            let _ = writeln!(err, "{h} {hint}");
        }
    }
}
