//! The seccomp filters every program the sandbox runs is under (docs/sandbox.md,
//! "Confinement"): what a program may not ask of the kernel, set apart from how `jail`
//! starts it. Mostly the list of system calls.

use std::collections::BTreeMap;

use seccompiler::{
    BpfProgram, SeccompAction, SeccompCmpArgLen, SeccompCmpOp, SeccompCondition, SeccompFilter,
    SeccompRule,
};

/// The seccomp filters every program runs under: system calls no configuration script
/// needs and that reach the kernel or the host beyond the namespaces fail with EPERM;
/// `clone3` fails with ENOSYS (its flags cannot be inspected, and the C library then
/// falls back to `clone`, whose flags can).
pub fn filters() -> crate::helper_error::Result<Vec<BpfProgram>> {
    let arch = std::env::consts::ARCH
        .try_into()
        .map_err(|e| format!("seccomp on {}: {e:?}", std::env::consts::ARCH))?;
    let mut deny: BTreeMap<i64, Vec<SeccompRule>> = [
        libc::SYS_kexec_load,
        libc::SYS_kexec_file_load,
        libc::SYS_init_module,
        libc::SYS_finit_module,
        libc::SYS_delete_module,
        libc::SYS_add_key,
        libc::SYS_request_key,
        libc::SYS_keyctl,
        libc::SYS_swapon,
        libc::SYS_swapoff,
        libc::SYS_acct,
        libc::SYS_bpf,
        libc::SYS_perf_event_open,
        libc::SYS_userfaultfd,
        libc::SYS_open_by_handle_at,
        libc::SYS_syslog,
        libc::SYS_quotactl,
        libc::SYS_vhangup,
        libc::SYS_settimeofday,
        libc::SYS_clock_settime,
        libc::SYS_clock_adjtime,
        libc::SYS_adjtimex,
        libc::SYS_mount,
        libc::SYS_umount2,
        libc::SYS_pivot_root,
        libc::SYS_fsopen,
        libc::SYS_fsconfig,
        libc::SYS_fsmount,
        libc::SYS_fspick,
        libc::SYS_move_mount,
        libc::SYS_open_tree,
        libc::SYS_mount_setattr,
        libc::SYS_setns,
        // A second way into the kernel that the filter does not see into.
        libc::SYS_io_uring_setup,
        libc::SYS_io_uring_enter,
        libc::SYS_io_uring_register,
        #[cfg(target_arch = "x86_64")]
        libc::SYS_iopl,
        #[cfg(target_arch = "x86_64")]
        libc::SYS_ioperm,
    ]
    .into_iter()
    .map(|n| (n, Vec::new()))
    .collect();
    // No new user namespaces (a fresh one would give back every capability over a fresh
    // mount namespace, a larger kernel surface than scripts need).
    let newuser = libc::CLONE_NEWUSER as u64;
    for (call, arg) in [(libc::SYS_unshare, 0), (libc::SYS_clone, 0)] {
        let cond = SeccompCondition::new(
            arg,
            SeccompCmpArgLen::Qword,
            SeccompCmpOp::MaskedEq(newuser),
            newuser,
        )
        .map_err(|e| e.to_string())?;
        deny.insert(
            call,
            vec![SeccompRule::new(vec![cond]).map_err(|e| e.to_string())?],
        );
    }
    // Typing into the caller's terminal (`strata shell`) and rewriting the console.
    for request in [libc::TIOCSTI, libc::TIOCLINUX] {
        let cond = SeccompCondition::new(1, SeccompCmpArgLen::Dword, SeccompCmpOp::Eq, request)
            .map_err(|e| e.to_string())?;
        deny.entry(libc::SYS_ioctl)
            .or_default()
            .push(SeccompRule::new(vec![cond]).map_err(|e| e.to_string())?);
    }
    // Sockets to the hypervisor, which no network namespace separates.
    let vsock = SeccompCondition::new(
        0,
        SeccompCmpArgLen::Dword,
        SeccompCmpOp::Eq,
        libc::AF_VSOCK as u64,
    )
    .map_err(|e| e.to_string())?;
    deny.insert(
        libc::SYS_socket,
        vec![SeccompRule::new(vec![vsock]).map_err(|e| e.to_string())?],
    );
    let eperm = SeccompFilter::new(
        deny,
        SeccompAction::Allow,
        SeccompAction::Errno(libc::EPERM as u32),
        arch,
    )
    .map_err(|e| e.to_string())?;
    let clone3 = SeccompFilter::new(
        [(libc::SYS_clone3, Vec::new())].into_iter().collect(),
        SeccompAction::Allow,
        SeccompAction::Errno(libc::ENOSYS as u32),
        arch,
    )
    .map_err(|e| e.to_string())?;
    Ok(vec![
        eperm
            .try_into()
            .map_err(|e: seccompiler::BackendError| e.to_string())?,
        clone3
            .try_into()
            .map_err(|e: seccompiler::BackendError| e.to_string())?,
    ])
}
