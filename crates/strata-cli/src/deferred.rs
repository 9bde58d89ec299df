//! Commands run on the target after a commit: how they are shown, and why a commit whose
//! commands failed exits 3, for the apply that committed and for any command that
//! finished an interrupted commit on its way.

use std::path::Path;

use strata_engine::Recovered;
use strata_types::Activation;

use crate::command_error::{CommandError, CommandErrorKind, CommandResult};
use crate::printer::{Printer, Style, clean};

/// A command line as shown: arguments joined by spaces, control characters escaped (a
/// script chose them; they must not drive the terminal).
pub fn argv_text(argv: &[String]) -> String {
    argv.iter().map(|a| clean(a)).collect::<Vec<_>>().join(" ")
}

/// `ran systemctl restart nginx  (exit status 0; app scripts/10-x.sh)`, then its output
/// indented.
pub fn ran_text(p: &Printer, a: &Activation, out: &mut String) {
    let style = if a.succeeded() {
        Style::Magenta
    } else {
        Style::Red
    };
    out.push_str(&format!(
        "{} {}  {}\n",
        p.paint(style, "ran"),
        argv_text(&a.command.argv),
        p.paint(
            Style::Dim,
            &clean(&format!(
                "({}; {} {})",
                a.describe(),
                a.command.module,
                a.command.program
            ))
        )
    ));
    for line in a.output.lines() {
        out.push_str(&format!("          {}\n", clean(line)));
    }
}

/// The error for a commit whose commands did not all succeed, naming each that failed
/// with how it ended; none when they all succeeded.
pub fn failures(generation: Option<u64>, activations: &[Activation], how: &str) -> Option<String> {
    let failed: Vec<&Activation> = activations.iter().filter(|a| !a.succeeded()).collect();
    if failed.is_empty() {
        return None;
    }
    let generation = generation.map_or("the generation".into(), |n| format!("generation {n}"));
    let mut text = format!(
        "{generation} committed{how}; {} of {} command{} run after the commit failed:",
        failed.len(),
        activations.len(),
        if activations.len() == 1 { "" } else { "s" },
    );
    for a in failed {
        text.push_str(&format!(
            "\n  {}: {} ({} {})",
            argv_text(&a.command.argv),
            a.describe(),
            a.command.module,
            a.command.program
        ));
    }
    Some(text)
}

/// What finishing an interrupted commit did before a command's own work.
#[derive(Debug, Default)]
pub struct Recovery(Option<Recovered>);

impl Recovery {
    /// Finishes the commit an earlier strata run left interrupted on `root`, if any, and
    /// shows (on stderr) the commands that finishing it ran.
    pub fn open(printer: &Printer, root: &Path) -> Result<Recovery, CommandError> {
        let recovered = strata_engine::recover(root)?.filter(|r| !r.activations.is_empty());
        if let Some(r) = &recovered {
            let mut text = format!(
                "note: finished the commit of generation {}, which an earlier strata run left \
                 interrupted; its commands after the commit:\n",
                r.generation
            );
            let quiet = Printer {
                color: false,
                ..*printer
            };
            for a in &r.activations {
                text.push_str("  ");
                ran_text(&quiet, a, &mut text);
            }
            printer.note(text.trim_end());
        }
        Ok(Recovery(recovered))
    }

    /// For `--json` output: `{ "generation", "activations" }` of the finished commit.
    pub fn json(&self) -> Option<serde_json::Value> {
        self.0.as_ref().map(|r| {
            serde_json::json!({
                "generation": r.generation,
                "activations": r.activations,
            })
        })
    }

    /// A command's result once the recovery is taken into account: an error stays an
    /// error (exit 1); otherwise failed commands of the finished commit make it exit 3,
    /// whatever the command's own result (0, or a plan's 2).
    pub fn end(self, result: CommandResult) -> CommandResult {
        let Some(r) = self.0 else { return result };
        let Some(text) = failures(
            Some(r.generation),
            &r.activations,
            " (its interrupted commit was finished by this command)",
        ) else {
            return result;
        };
        match result {
            Err(e) if e.kind == CommandErrorKind::CommandsFailed => Err(
                CommandError::commands_failed(format!("{text}\n{}", e.error)),
            ),
            // An error stays an error; a closed pipe stays quiet.
            Err(e)
                if !matches!(
                    e.kind,
                    CommandErrorKind::ChangesPending | CommandErrorKind::Stale
                ) =>
            {
                Err(e)
            }
            Ok(()) | Err(_) => Err(CommandError::commands_failed(text)),
        }
    }
}
