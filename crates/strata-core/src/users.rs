//! The target's own users and groups (its `/etc/passwd` and `/etc/group`), so that owners
//! are resolved as the node sees them, never as the machine running strata does.

use std::collections::HashMap;

use strata_fs::{FsError, Root};
use strata_types::TargetPath;

/// Names and ids of the target's users and groups.
#[derive(Debug, Default, Clone)]
pub struct UserDb {
    users: HashMap<String, u32>,
    groups: HashMap<String, u32>,
    user_names: HashMap<u32, String>,
    group_names: HashMap<u32, String>,
}

impl UserDb {
    /// Reads `/etc/passwd` and `/etc/group` of the target; a missing file knows only root.
    pub fn load(root: &Root) -> Result<UserDb, FsError> {
        let mut db = UserDb::default();
        db.users.insert("root".into(), 0);
        db.groups.insert("root".into(), 0);
        for (file, names, ids) in [
            ("/etc/passwd", &mut db.users, &mut db.user_names),
            ("/etc/group", &mut db.groups, &mut db.group_names),
        ] {
            let path = TargetPath::parse(file).expect("a fixed path");
            let Some(bytes) = root.read(&path)? else {
                continue;
            };
            for line in String::from_utf8_lossy(&bytes).lines() {
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
        Ok(db)
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

    /// A gid's name, or the number.
    pub fn group_name(&self, gid: u32) -> String {
        self.group_names
            .get(&gid)
            .cloned()
            .unwrap_or_else(|| gid.to_string())
    }
}
