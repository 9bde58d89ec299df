//! The target's own users and groups (its `/etc/passwd` and `/etc/group`) as a table of
//! names and ids, so that owners are resolved as the node sees them, never as the
//! machine running strata does. The files are read through [`ReadTarget`] (strata-fs's
//! `Root`); the table itself is plain data.

use std::collections::HashMap;

use crate::TargetPath;

/// Reads a file of the target as the node sees it (strata-fs's `Root` does).
pub trait ReadTarget {
    /// Why a file could not be read.
    type Error;

    /// The content of the file at `path`; `None` when nothing is there.
    fn read_target(&self, path: &TargetPath) -> Result<Option<Vec<u8>>, Self::Error>;
}

/// Names and ids of the target's users and groups.
#[derive(Debug, Default, Clone)]
pub struct UserDb {
    users: HashMap<String, u32>,
    groups: HashMap<String, u32>,
    user_names: HashMap<u32, String>,
    group_names: HashMap<u32, String>,
}

/// Ids from here up stand for users and groups a site declares that the target does not
/// have yet; the sandbox resolves their names once it made them.
pub const PENDING: u32 = 0xFFFF_0000;

impl UserDb {
    /// This database plus placeholder ids ([`PENDING`] and up) for the names it lacks.
    pub fn with_pending<'a>(
        &self,
        users: impl IntoIterator<Item = &'a str>,
        groups: impl IntoIterator<Item = &'a str>,
    ) -> UserDb {
        let mut db = self.clone();
        let mut next = PENDING;
        for name in users {
            if db.uid(name).is_none() {
                db.users.insert(name.to_string(), next);
                db.user_names.insert(next, name.to_string());
                next += 1;
            }
        }
        for name in groups {
            if db.gid(name).is_none() {
                db.groups.insert(name.to_string(), next);
                db.group_names.insert(next, name.to_string());
                next += 1;
            }
        }
        db
    }

    /// Reads `/etc/passwd` and `/etc/group` of the target; a missing file knows only root.
    pub fn load<R: ReadTarget + ?Sized>(root: &R) -> Result<UserDb, R::Error> {
        let read = |file: &str| root.read_target(&TargetPath::parse(file).expect("a fixed path"));
        Ok(UserDb::parse(
            read("/etc/passwd")?.as_deref(),
            read("/etc/group")?.as_deref(),
        ))
    }

    /// From the contents of `/etc/passwd` and `/etc/group`; a missing one knows only root.
    pub fn parse(passwd: Option<&[u8]>, group: Option<&[u8]>) -> UserDb {
        let mut db = UserDb::default();
        db.users.insert("root".into(), 0);
        db.groups.insert("root".into(), 0);
        for (bytes, names, ids) in [
            (passwd, &mut db.users, &mut db.user_names),
            (group, &mut db.groups, &mut db.group_names),
        ] {
            let Some(bytes) = bytes else {
                continue;
            };
            for line in String::from_utf8_lossy(bytes).lines() {
                let mut fields = line.split(':');
                let (Some(name), Some(_), Some(id)) = (fields.next(), fields.next(), fields.next())
                else {
                    continue;
                };
                if let Ok(id) = id.parse::<u32>() {
                    names.entry(name.to_string()).or_insert(id);
                    ids.entry(id).or_insert_with(|| name.to_string());
                }
            }
        }
        db.user_names.entry(0).or_insert_with(|| "root".into());
        db.group_names.entry(0).or_insert_with(|| "root".into());
        db
    }

    /// The uid of a user name or numeric id.
    pub fn uid(&self, name: &str) -> Option<u32> {
        name.parse().ok().or_else(|| self.users.get(name).copied())
    }

    /// The gid of a group name or numeric id.
    pub fn gid(&self, name: &str) -> Option<u32> {
        name.parse().ok().or_else(|| self.groups.get(name).copied())
    }

    /// A uid's name, or the number.
    pub fn user_name(&self, uid: u32) -> String {
        self.user_names
            .get(&uid)
            .cloned()
            .unwrap_or_else(|| uid.to_string())
    }

    /// A uid for messages: `alice, uid 1000`, or `uid 1000` when it has no name.
    pub fn describe_user(&self, uid: u32) -> String {
        match self.user_names.get(&uid) {
            Some(name) => format!("{name}, uid {uid}"),
            None => format!("uid {uid}"),
        }
    }

    /// A gid's name, or the number.
    pub fn group_name(&self, gid: u32) -> String {
        self.group_names
            .get(&gid)
            .cloned()
            .unwrap_or_else(|| gid.to_string())
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;

    /// A target of a few files.
    struct Files(HashMap<&'static str, &'static str>);

    impl ReadTarget for Files {
        type Error = ();

        fn read_target(&self, path: &TargetPath) -> Result<Option<Vec<u8>>, ()> {
            Ok(self.0.get(path.as_str()).map(|t| t.as_bytes().to_vec()))
        }
    }

    #[test]
    fn names_and_ids_are_the_targets_and_missing_names_get_placeholder_ids() {
        let target = Files(HashMap::from([(
            "/etc/passwd",
            "root:x:0:0::/root:/bin/sh\nalice:x:1000:1000::/home/alice:/bin/sh\nbroken\n",
        )]));
        let db = UserDb::load(&target).unwrap();
        assert_eq!(db.uid("alice"), Some(1000));
        assert_eq!(db.uid("1234"), Some(1234), "a number is an id");
        assert_eq!(db.gid("alice"), None, "no /etc/group: only root");
        assert_eq!(db.gid("root"), Some(0));
        assert_eq!(db.describe_user(1000), "alice, uid 1000");
        assert_eq!(db.user_name(7), "7");
        let pending = db.with_pending(["alice", "bob"], ["staff"]);
        assert_eq!(pending.uid("alice"), Some(1000));
        assert_eq!(pending.uid("bob"), Some(PENDING));
        assert_eq!(pending.gid("staff"), Some(PENDING + 1));
        assert_eq!(pending.group_name(PENDING + 1), "staff");
    }
}
