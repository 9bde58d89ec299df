//! `strata nodes keys [--write]`: the age keys enrolled nodes sent the server, compared
//! with (and, asked, copied into) their node files' `[keys] age`, where `secret set` and
//! `rekey` look for them.

use clap::Args;

use crate::cli::absolute;
use crate::command_error::CommandResult;
use crate::commands::nodes::DbArgs;
use crate::printer::{Printer, clean};

/// `nodes keys`.
#[derive(Debug, Args)]
pub struct KeysArgs {
    #[command(flatten)]
    pub db: DbArgs,
    /// Write each enrolled node's age key into its node file (`nodes/NAME.toml`,
    /// `[keys] age`) where it is missing or differs; without it, only say which.
    #[arg(long)]
    pub write: bool,
}

/// How a node file stands against the inventory's key.
#[derive(Debug, PartialEq, Eq)]
enum Standing {
    Same,
    Missing,
    Differs,
}

pub fn run(args: &KeysArgs, printer: &Printer) -> CommandResult {
    let site = absolute(&args.db.site.site)?;
    let nodes = args.db.open()?.nodes(strata_snapshot::now())?;
    let mut out = String::new();
    let mut written = 0;
    for n in nodes {
        let Some(age) = n.age.as_deref() else {
            continue;
        };
        let name = clean(&n.name);
        // A name or key the inventory holds is checked before it reaches a site file.
        if strata_types::NodeName::parse(&n.name).is_err() {
            out.push_str(&format!("{name}  skipped: not a node name\n"));
            continue;
        }
        if strata_secrets::parse_recipient(&n.name, age).is_err() {
            out.push_str(&format!(
                "{name}  skipped: the inventory's age key is malformed\n"
            ));
            continue;
        }
        let rel = format!("nodes/{}.toml", n.name);
        let path = site.join(&rel);
        if !strata_fs::exists(&path) {
            out.push_str(&format!("{name}  no node file ({rel})\n"));
            continue;
        }
        let text = String::from_utf8(strata_fs::read(&path)?)
            .map_err(|_| anyhow::anyhow!("{rel}: not UTF-8"))?;
        let standing = standing(&text, age).map_err(|e| anyhow::anyhow!("{rel}: {e}"))?;
        let word = match (&standing, args.write) {
            (Standing::Same, _) => "up to date",
            (Standing::Missing, false) => "missing from the node file (--write adds it)",
            (Standing::Differs, false) => "differs from the node file (--write replaces it)",
            (_, true) => {
                let new = with_key(&text, age).map_err(|e| anyhow::anyhow!("{rel}: {e}"))?;
                strata_fs::write_atomic(&path, new.as_bytes())?;
                written += 1;
                if standing == Standing::Missing {
                    "written"
                } else {
                    "replaced"
                }
            }
        };
        out.push_str(&format!("{name}  {age}  {word}\n"));
    }
    printer.out(&out)?;
    if written > 0 {
        printer.note(&format!(
            "{written} node file{} changed: run `strata secret rekey` for the secrets they \
             are recipients of",
            if written == 1 { "" } else { "s" }
        ));
    }
    Ok(())
}

/// After a push: each node's age key written into its node file where it has none
/// (FLEET.md: "push writes it"); one that differs is only said (the node's key changed,
/// or the file is wrong: `nodes keys`/rekey is the operator's call). Never fails the push.
pub fn record_pushed(
    site: &std::path::Path,
    reports: &[strata_transport::NodeReport],
    printer: &Printer,
) {
    for r in reports {
        let Some(age) = r.age.as_deref() else {
            continue;
        };
        let name = clean(&r.node);
        let rel = format!("nodes/{}.toml", r.node);
        let path = site.join(&rel);
        let valid = strata_types::NodeName::parse(&r.node).is_ok()
            && strata_secrets::parse_recipient(&r.node, age).is_ok();
        let text = (strata_fs::read(&path).ok()).and_then(|b| String::from_utf8(b).ok());
        let (true, Some(text)) = (valid, text) else {
            continue;
        };
        match standing(&text, age) {
            Ok(Standing::Missing) => match with_key(&text, age) {
                Ok(new) if strata_fs::write_atomic(&path, new.as_bytes()).is_ok() => {
                    printer.note(&format!(
                        "{name}: its age key {age} recorded in {rel} ([keys] age)"
                    ));
                }
                _ => printer.note(&format!(
                    "{name}: its age key {age} could not be recorded in {rel}; add it by hand"
                )),
            },
            Ok(Standing::Differs) => printer.note(&format!(
                "{name}: its age key {age} differs from {rel}'s [keys] age; left as it is"
            )),
            Ok(Standing::Same) | Err(_) => {}
        }
    }
}

/// The node file's `[keys] age` against `age`.
fn standing(text: &str, age: &str) -> Result<Standing, String> {
    let doc: toml::Table = text
        .parse()
        .map_err(|e: toml::de::Error| e.message().to_string())?;
    match doc.get("keys").map(|k| k.get("age")) {
        None | Some(None) => Ok(Standing::Missing),
        Some(Some(toml::Value::String(s))) if s.trim() == age => Ok(Standing::Same),
        Some(Some(_)) => Ok(Standing::Differs),
    }
}

/// `text` with `[keys] age = "AGE"`: the line replaced where there is one, added under
/// `[keys]` where the table has none, the table appended where the file has none. The
/// result is parsed back and must say `age`, or nothing is written.
fn with_key(text: &str, age: &str) -> Result<String, String> {
    let line = format!("age = \"{age}\"");
    let mut lines: Vec<String> = text.lines().map(str::to_string).collect();
    let header = lines.iter().position(|l| l.trim() == "[keys]");
    match header {
        None => {
            while lines.last().is_some_and(|l| l.trim().is_empty()) {
                lines.pop();
            }
            lines.extend([String::new(), "[keys]".into(), line]);
        }
        Some(h) => {
            let end = (lines.iter().skip(h + 1))
                .position(|l| l.trim_start().starts_with('['))
                .map_or(lines.len(), |i| h + 1 + i);
            let existing = (h + 1..end).find(|&i| {
                let l = lines[i].trim_start();
                l.strip_prefix("age")
                    .is_some_and(|rest| rest.trim_start().starts_with('='))
            });
            match existing {
                Some(i) => lines[i] = line,
                None => lines.insert(h + 1, line),
            }
        }
    }
    let mut out = lines.join("\n");
    out.push('\n');
    match standing(&out, age)? {
        Standing::Same => Ok(out),
        _ => Err("its [keys] table could not be edited safely; set `age` by hand".into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY: &str = "age1qyqszqgpqyqszqgpqyqszqgpqyqszqgpqyqszqgpqyqszqgpqyqs3290gq";

    #[test]
    fn a_key_is_added_replaced_or_refused_never_breaking_the_file() {
        let plain = "modules = [\"a\"]\n";
        let out = with_key(plain, KEY).unwrap();
        assert_eq!(
            out,
            format!("modules = [\"a\"]\n\n[keys]\nage = \"{KEY}\"\n")
        );
        let keys = "# c\n[keys]\nssh = \"x\"\n\n[vars]\nage = 3\n";
        let out = with_key(keys, KEY).unwrap();
        assert!(
            out.contains(&format!("[keys]\nage = \"{KEY}\"\nssh")),
            "{out}"
        );
        assert!(out.contains("[vars]\nage = 3"), "{out}");
        let old = "[keys]\nage = \"age1old\"\n";
        assert_eq!(standing(old, KEY).unwrap(), Standing::Differs);
        assert_eq!(
            with_key(old, KEY).unwrap(),
            format!("[keys]\nage = \"{KEY}\"\n")
        );
        // An inline table the line editor cannot see into: refused, not mangled.
        let inline = "keys = { age = \"age1old\" }\n";
        assert!(with_key(inline, KEY).is_err());
        assert!(standing("not = [toml", KEY).is_err());
    }
}
