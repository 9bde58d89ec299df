//! Running the programs provisioning relies on (debootstrap, tar, mke2fs, grub-mkimage),
//! each failure with the end of its output.

use std::process::Command;

use crate::error::ProvisionError;

/// Runs `cmd`; a failure (or a missing program) names it, with the last lines it wrote.
pub fn run(cmd: &mut Command) -> Result<Vec<u8>, ProvisionError> {
    let program = cmd.get_program().to_string_lossy().into_owned();
    let out = cmd.output().map_err(|e| ProvisionError::Program {
        program: program.clone(),
        status: if e.kind() == std::io::ErrorKind::NotFound {
            "not installed".into()
        } else {
            e.to_string()
        },
        output: String::new(),
    })?;
    if out.status.success() {
        return Ok(out.stdout);
    }
    let mut text = String::from_utf8_lossy(&out.stdout).into_owned();
    text.push_str(&String::from_utf8_lossy(&out.stderr));
    let lines: Vec<&str> = text.lines().collect();
    let tail = lines[lines.len().saturating_sub(20)..].join("\n");
    Err(ProvisionError::Program {
        program,
        status: out.status.to_string(),
        output: tail,
    })
}
