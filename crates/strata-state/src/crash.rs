//! Named points where tests can stop a commit as `kill -9` would (`FAILPOINTS=name=return`
//! with the `failpoints` feature); without the feature they compile to nothing.

/// Aborts the process at this point when the failpoint `$name` is configured.
#[macro_export]
#[doc(hidden)]
macro_rules! crashpoint {
    ($name:expr) => {
        #[cfg(feature = "failpoints")]
        fail::fail_point!($name, |_| { std::process::abort() });
    };
}
