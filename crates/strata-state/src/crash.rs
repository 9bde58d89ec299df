//! Named points where tests can stop a commit as `kill -9` would, or make it fail as a
//! failing disk would (`FAILPOINTS=name=return` with the `failpoints` feature); without
//! the feature they compile to nothing.

/// Aborts the process at this point when the failpoint `$name` is configured.
#[macro_export]
#[doc(hidden)]
macro_rules! crashpoint {
    ($name:expr) => {
        #[cfg(feature = "failpoints")]
        fail::fail_point!($name, |_| { std::process::abort() });
    };
}

/// Makes the enclosing function fail at this point, with an I/O error on `$path`, when
/// the failpoint `$name` is configured.
#[macro_export]
#[doc(hidden)]
macro_rules! failpoint {
    ($name:expr, $path:expr) => {
        #[cfg(feature = "failpoints")]
        fail::fail_point!($name, |_| {
            Err($crate::StateError::Fs(strata_fs::FsError::new(
                "write",
                $path,
                std::io::Error::other("failpoint"),
            )))
        });
    };
}
