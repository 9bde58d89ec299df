//! `basename` and `dirname`, as Python's `os.path` splits a POSIX path.

/// `path | basename`: what follows the last `/`.
pub(super) fn basename(path: String) -> String {
    path.rsplit('/').next().unwrap_or("").to_string()
}

/// `path | dirname`: what precedes the last `/`, without trailing slashes unless it is
/// only slashes.
pub(super) fn dirname(path: String) -> String {
    let head = match path.rfind('/') {
        Some(i) => &path[..=i],
        None => return String::new(),
    };
    if head.chars().all(|c| c == '/') {
        head.to_string()
    } else {
        head.trim_end_matches('/').to_string()
    }
}

#[cfg(test)]
mod tests {
    use crate::ansible::testing::r;

    #[test]
    fn split_as_os_path() {
        assert_eq!(r("{{ '/etc/asdf/foo.txt' | basename }}"), "foo.txt");
        assert_eq!(r("{{ '/etc/asdf/' | basename }}"), "");
        assert_eq!(r("{{ 'foo' | ansible.builtin.basename }}"), "foo");
        assert_eq!(r("{{ '/etc/asdf/foo.txt' | dirname }}"), "/etc/asdf");
        assert_eq!(r("{{ '/etc//x' | dirname }}"), "/etc");
        assert_eq!(r("{{ '/x' | dirname }}"), "/");
        assert_eq!(r("{{ '//x' | dirname }}"), "//");
        assert_eq!(r("{{ 'x' | dirname }}"), "");
    }
}
