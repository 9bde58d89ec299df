//! Interception shims: small shell scripts standing in for commands with effects outside
//! the file system. Each writes its call to the call channel `/run/strata/calls`, a FIFO
//! whose only reader is the sandbox's init (fields each ending with NUL: the argument
//! count, the command, then each argument) and succeeds; read-only verbs go through to
//! the real command, kept at `/run/strata/real/<name>`.

/// The call channel, inside the sandbox (read-only mount; writing to a FIFO is allowed).
pub const CALLS: &str = "/run/strata/calls";

/// `systemctl` verbs that only read, or only change files under `/etc` (observed like
/// any other file change): they run for real.
const SYSTEMCTL_THROUGH: &[&str] = &[
    "status",
    "show",
    "cat",
    "help",
    "is-active",
    "is-enabled",
    "is-failed",
    "is-system-running",
    "list-units",
    "list-unit-files",
    "list-sockets",
    "list-timers",
    "list-jobs",
    "list-dependencies",
    "list-machines",
    "get-default",
    "show-environment",
    "enable",
    "disable",
    "mask",
    "unmask",
    "preset",
    "preset-all",
    "reenable",
    "set-default",
    "add-wants",
    "add-requires",
    "link",
    "revert",
];

/// The shim for `name` (a command name or an absolute path). `real` tells whether the
/// real command is available at `/run/strata/real/<file name>`.
pub fn script(name: &str, real: bool) -> String {
    let base = name.rsplit('/').next().unwrap_or(name);
    let real_path = format!("/run/strata/real/{base}");
    let through = if !real {
        String::new()
    } else if base == "systemctl" {
        // The verb is the first argument that is not an option; `--now` makes an
        // enable or disable also start or stop: that part is recorded.
        format!(
            r#"verb=""; now=""
for a in "$@"; do
  case "$a" in
    --now) now=1 ;;
    -*) ;;
    *) [ -z "$verb" ] && verb="$a" ;;
  esac
done
case "$verb" in
  {verbs})
    "{real_path}" "$@" || exit $?
    [ -z "$now" ] && exit 0 ;;
esac
"#,
            verbs = SYSTEMCTL_THROUGH.join("|"),
        )
    } else if base == "service" {
        format!(
            r#"case "$1 $2" in
  "--status-all "*|"--help "*|"--version "*|*" status") exec "{real_path}" "$@" ;;
esac
"#
        )
    } else {
        String::new()
    };
    format!(
        r#"#!/bin/sh
# strata: `{name}` is intercepted in this sandbox. The call is recorded; in a plan it is
# reported as "would run", in an apply it runs on the target after the commit.
{through}printf '%s\0' "$#" '{name}' "$@" >> {CALLS}
exit 0
"#
    )
}

/// Bytes on the call channel that are not whole records.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("a malformed record after {calls} calls")]
pub struct Malformed {
    /// The whole records before it.
    pub calls: usize,
}

/// Parses the records written to the call channel. Anything that is not a whole record is
/// an error: only the shims (or a script imitating one) write there.
pub fn parse(bytes: &[u8]) -> Result<Vec<Vec<String>>, Malformed> {
    let mut out = Vec::new();
    let mut rest = bytes;
    let field = |rest: &mut &[u8]| -> Option<String> {
        let end = rest.iter().position(|b| *b == 0)?;
        let f = String::from_utf8_lossy(&rest[..end]).into_owned();
        *rest = &rest[end + 1..];
        Some(f)
    };
    while !rest.is_empty() {
        let bad = || Malformed { calls: out.len() };
        let n: usize = field(&mut rest)
            .and_then(|c| c.parse().ok())
            .filter(|n| *n < 100_000)
            .ok_or_else(bad)?;
        let argv = (0..=n)
            .map(|_| field(&mut rest))
            .collect::<Option<Vec<_>>>()
            .ok_or_else(bad)?;
        out.push(argv);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_parse_back_with_spaces_and_empty_arguments() {
        let bytes = b"2\0systemctl\0restart\0nginx\x003\0/usr/local/bin/x\0a b\0\0c\0";
        assert_eq!(
            parse(bytes).expect("whole records"),
            vec![
                vec!["systemctl", "restart", "nginx"],
                vec!["/usr/local/bin/x", "a b", "", "c"],
            ]
        );
    }

    #[test]
    fn a_truncated_or_malformed_record_is_an_error() {
        assert!(parse(b"2\0reboot\0now\0").is_err());
        assert!(parse(b"x\0reboot\0").is_err());
        assert!(parse(b"0\0reboot").is_err());
        assert_eq!(parse(b"").expect("empty"), Vec::<Vec<String>>::new());
    }
}
