//! Interception shims: small shell scripts standing in for commands with effects outside
//! the file system. Each appends its call to `/run/strata/calls` (fields separated by NUL:
//! the argument count, the command, then each argument) and succeeds; read-only verbs go
//! through to the real command, kept at `/run/strata/real/<name>`.

/// Where the shims record calls, inside the sandbox.
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

/// Parses the records the shims appended to the calls file.
pub fn parse(bytes: &[u8]) -> Vec<Vec<String>> {
    // Every field ends with a NUL; the last one's is not a separator.
    let bytes = bytes.strip_suffix(b"\0").unwrap_or(bytes);
    let mut fields = bytes
        .split(|b| *b == 0)
        .map(|f| String::from_utf8_lossy(f).into_owned());
    let mut out = Vec::new();
    while let Some(count) = fields.next() {
        let Ok(n) = count.parse::<usize>() else { break };
        let argv: Vec<String> = fields.by_ref().take(n + 1).collect();
        if argv.len() != n + 1 {
            break;
        }
        out.push(argv);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_parse_back_with_spaces_and_empty_arguments() {
        let bytes = b"2\0systemctl\0restart\0nginx\x003\0/usr/local/bin/x\0a b\0\0c\0";
        assert_eq!(
            parse(bytes),
            vec![
                vec!["systemctl", "restart", "nginx"],
                vec!["/usr/local/bin/x", "a b", "", "c"],
            ]
        );
    }

    #[test]
    fn a_truncated_record_is_dropped() {
        assert_eq!(parse(b"2\0reboot\0now\0"), Vec::<Vec<String>>::new());
    }
}
