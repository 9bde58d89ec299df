//! When a new key may take over an accepted node's name (docs/provision.md, "Stopped
//! halfway"): a netboot machine whose provisioning was killed before its disk was done
//! netboots again with a new key (the initrd keeps nothing), and is let back in as the
//! same node only when nothing could have trusted its first key yet and it is the same
//! machine as far as the server can tell.

use super::{EnrollRequest, Enrolled, NodeRecord, NodeState, TokenRecord};

/// Why `req` may not take over `n` (accepted, bound to another key), if it may not:
/// the node never reported (`reported` false: no report since it was enrolled under
/// this name, so no disk of its was ever finished and nothing ran with its key), the request carries a valid
/// provisioning token, the name is a netboot name (`m-` and 12 hex digits of a MAC) and
/// the facts sent name the same machine as the recorded ones ([`same_machine`]).
pub(crate) fn allowed(
    n: &NodeRecord,
    req: &EnrollRequest,
    token: Option<&Result<&TokenRecord, String>>,
    reported: bool,
    now: u64,
) -> Result<(), String> {
    if n.state != NodeState::Accepted {
        return Err(format!("the node is {}", n.state.as_str()));
    }
    let t = match token {
        None => return Err("no token was presented".into()),
        Some(Err(why)) => return Err(why.clone()),
        Some(Ok(t)) => t,
    };
    if t.expires <= now {
        return Err("the token expired".into());
    }
    if t.node.as_ref().is_some_and(|name| *name != req.name) {
        return Err(format!(
            "the token is for node {:?}",
            t.node.as_deref().unwrap_or_default()
        ));
    }
    if !t.provisioning {
        return Err(
            "the token is not a provisioning token (`strata nodes token --uses N`, N above 1), \
             the only kind that lets a new key take over a node that never reported"
                .into(),
        );
    }
    if reported {
        return Err(
            "the node has reported (its disk was provisioned, or its agent ran): a new key \
             never takes it over"
                .into(),
        );
    }
    let Some(mac) = netboot_mac(&n.name) else {
        return Err("only a netboot node (m-MAC) can be taken over by a new key".into());
    };
    same_machine(&mac, &n.facts, &req.facts)
}

/// The MAC a netboot name (`m-` and 12 hex digits) carries, lowercase with colons.
fn netboot_mac(name: &str) -> Option<String> {
    let hex = name.strip_prefix("m-")?;
    if hex.len() != 12 || !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    let hex = hex.to_ascii_lowercase();
    Some(
        (0..6)
            .map(|i| &hex[2 * i..2 * i + 2])
            .collect::<Vec<_>>()
            .join(":"),
    )
}

/// A fact's values: `(category, attribute)` as in `strata facts --tuples`.
fn values(tuples: &[[String; 4]], category: &str, attribute: &str) -> Vec<String> {
    tuples
        .iter()
        .filter(|t| t[0] == category && t[2] == attribute && !t[3].is_empty())
        .map(|t| t[3].to_ascii_lowercase())
        .collect()
}

/// Whether the facts sent (`new`) are of the machine whose facts were recorded at its
/// first enrollment: the name's MAC among its NICs', and the DMI product UUID and serial
/// the same when the recorded facts had them. (Facts are what the machine says: this
/// keeps another machine from taking a name by mistake or by a MAC alone, not a holder
/// of the token who copies a machine's DMI; see docs/provision.md for what that holder
/// could do anyway.)
pub(crate) fn same_machine(mac: &str, recorded: &str, new: &str) -> Result<(), String> {
    let parse = |text: &str| serde_json::from_str::<Vec<[String; 4]>>(text).ok();
    let (Some(recorded), Some(new)) = (parse(recorded), parse(new)) else {
        return Err("the facts cannot be compared (not `strata facts --tuples`)".into());
    };
    if !values(&new, "network", "serial").iter().any(|m| m == mac) {
        return Err(format!(
            "the enrolling machine has no network interface with MAC {mac}"
        ));
    }
    for (attribute, what) in [("uuid", "DMI product UUID"), ("serial", "DMI serial")] {
        let was = values(&recorded, "system", attribute);
        let Some(was) = was.first() else { continue };
        let now = values(&new, "system", attribute);
        if now.first() != Some(was) {
            return Err(format!(
                "another machine: its {what} is {}, the node's was {was}",
                now.first().map_or("missing", String::as_str)
            ));
        }
    }
    Ok(())
}

/// The takeover [`allowed`] allowed, in SQLite's transaction: the token's use taken, the
/// name given to the new key (its key, age key and facts; environment, classification
/// and so pool entries kept), `rekeyed` and `old_key` recorded, committed.
pub(crate) fn sqlite(
    tx: rusqlite::Transaction<'_>,
    req: &EnrollRequest,
    old_key: &str,
    now: u64,
) -> rusqlite::Result<Enrolled> {
    let used = tx.execute(
        "UPDATE strata_tokens SET uses = uses - 1, \
         used = CASE WHEN uses <= 1 THEN ?1 ELSE NULL END \
         WHERE hash = ?2 AND used IS NULL AND uses > 0",
        rusqlite::params![now, req.token.as_deref().unwrap_or_default()],
    )?;
    if used != 1 {
        return Ok(Enrolled::Refused("the token was already used".into()));
    }
    let n = tx.execute(
        "UPDATE strata_nodes SET key_id = ?1, public = ?2, age = ?3, facts = ?4, changed = ?5, \
         rekeyed = ?5, old_key = ?6 WHERE name = ?7 AND key_id = ?6 AND state = 'accepted'",
        rusqlite::params![
            req.key_id, req.public, req.age, req.facts, now, old_key, req.name
        ],
    )?;
    if n != 1 {
        return Ok(Enrolled::Refused(format!(
            "node {:?} changed meanwhile",
            req.name
        )));
    }
    let node = super::sqlite::node_where(&tx, "name", &req.name)?.expect("just written");
    tx.commit()?;
    Ok(Enrolled::TakenOver(node))
}

/// The same as [`sqlite`], in PostgreSQL's transaction (its rows locked by the caller).
pub(crate) fn pg(
    mut tx: postgres::Transaction<'_>,
    req: &EnrollRequest,
    old_key: &str,
    now: u64,
) -> Result<Enrolled, postgres::Error> {
    let now = i64::try_from(now).unwrap_or(i64::MAX);
    let hash = req.token.clone().unwrap_or_default();
    let used = tx.execute(
        "UPDATE strata_tokens SET uses = uses - 1,
         used = CASE WHEN uses <= 1 THEN $1::BIGINT ELSE NULL END
         WHERE hash = $2 AND used IS NULL AND uses > 0",
        &[&now, &hash],
    )?;
    if used != 1 {
        return Ok(Enrolled::Refused("the token was already used".into()));
    }
    let n = tx.execute(
        "UPDATE strata_nodes SET key_id = $1, public = $2, age = $3, facts = $4, changed = $5,
         rekeyed = $5, old_key = $6 WHERE name = $7 AND key_id = $6 AND state = 'accepted'",
        &[
            &req.key_id,
            &req.public,
            &req.age,
            &req.facts,
            &now,
            &old_key,
            &req.name,
        ],
    )?;
    if n != 1 {
        return Ok(Enrolled::Refused(format!(
            "node {:?} changed meanwhile",
            req.name
        )));
    }
    let node = super::pg::node_where(&mut tx, "name", &req.name, false)?.expect("just written");
    tx.commit()?;
    Ok(Enrolled::TakenOver(node))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn facts(mac: &str, uuid: &str, serial: &str) -> String {
        let mut t = vec![["network", "eth0", "serial", mac]];
        if !uuid.is_empty() {
            t.push(["system", "product", "uuid", uuid]);
        }
        if !serial.is_empty() {
            t.push(["system", "product", "serial", serial]);
        }
        serde_json::to_string(&t).unwrap()
    }

    #[test]
    fn only_the_same_machine_by_its_mac_and_dmi_passes() {
        let mac = netboot_mac("m-525400AABBCC").unwrap();
        assert_eq!(mac, "52:54:00:aa:bb:cc");
        assert!(netboot_mac("m-5254").is_none() && netboot_mac("web1").is_none());
        let first = facts("52:54:00:aa:bb:cc", "U-1", "S-1");
        assert_eq!(
            same_machine(&mac, &first, &facts("52:54:00:AA:BB:CC", "u-1", "S-1")),
            Ok(())
        );
        let why =
            same_machine(&mac, &first, &facts("52:54:00:aa:bb:cc", "U-2", "S-1")).unwrap_err();
        assert!(
            why.contains("DMI product UUID is u-2") && why.contains("u-1"),
            "{why}"
        );
        let why = same_machine(&mac, &first, &facts("52:54:00:aa:bb:cc", "U-1", "")).unwrap_err();
        assert!(why.contains("DMI serial is missing"), "{why}");
        let why =
            same_machine(&mac, &first, &facts("52:54:00:aa:bb:cd", "U-1", "S-1")).unwrap_err();
        assert!(why.contains("no network interface with MAC"), "{why}");
        // Recorded without DMI: the MAC alone.
        let bare = facts("52:54:00:aa:bb:cc", "", "");
        assert_eq!(same_machine(&mac, &bare, &first), Ok(()));
        assert!(same_machine(&mac, "not json", &first).is_err());
    }
}
