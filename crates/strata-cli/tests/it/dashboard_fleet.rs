//! The fleet's roles, groups and behind/current columns from real agents' reports, their
//! filters, keyset paging through the links and `next`/`prev`, and requests that try
//! to get past the filters (quotes, `%`, `_`, long values, bad cursors) refused or
//! matched literally.

use strata_test::TestEnv;

use crate::dashboard::{get, seeded_site};

/// n1 has role `web` through group `east`; n2 its own role `db`. After the seeding, n1
/// applied the second release and n2 did not (behind).
fn roles_and_groups(env: &TestEnv) {
    env.write("roles/web.toml", "modules = [\"m\"]\n");
    env.write("roles/db.toml", "modules = [\"m\"]\n");
    env.write("groups/east.toml", "nodes = [\"n1\"]\nroles = [\"web\"]\n");
    env.write(
        "nodes/n2.toml",
        "environment = \"test\"\nroles = [\"db\"]\n",
    );
}

fn names(v: &serde_json::Value) -> Vec<&str> {
    v["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| n["name"].as_str().unwrap())
        .collect()
}

#[test]
fn the_fleet_shows_roles_groups_and_behind_and_filters_by_them() {
    let (s, token) = seeded_site(roles_and_groups, &[]);
    let json = |path: &str| -> serde_json::Value {
        let (code, _, body) = get(&s, path, Some(&token));
        assert_eq!(code, 200, "{path}: {body}");
        serde_json::from_str(&body).unwrap()
    };
    let all = json("/api/nodes");
    assert_eq!(names(&all), ["n1", "n2"]);
    let (n1, n2) = (&all["nodes"][0], &all["nodes"][1]);
    assert_eq!(n1["roles"], serde_json::json!(["web"]), "{all}");
    assert_eq!(n1["groups"], serde_json::json!(["east"]));
    assert_eq!(n2["roles"], serde_json::json!(["db"]));
    assert_eq!(n2["groups"], serde_json::json!([]));
    assert_eq!(
        (&n1["behind"], &n2["behind"]),
        (&false.into(), &true.into())
    );
    assert_ne!(n1["last"]["revision"], n2["last"]["revision"]);
    assert_eq!(
        all["revisions"],
        serde_json::json!({"behind": 1, "current": 1})
    );
    for (query, expected) in [
        ("role=web", vec!["n1"]),
        ("role=db", vec!["n2"]),
        ("role=east", vec![]),
        ("group=east", vec!["n1"]),
        ("group=web", vec![]),
        ("revision=behind", vec!["n2"]),
        ("revision=current", vec!["n1"]),
        ("status=changed&role=db", vec!["n2"]),
        ("environment=test&group=east&revision=current", vec!["n1"]),
        ("environment=prod&role=web", vec![]),
    ] {
        let v = json(&format!("/api/nodes?{query}"));
        assert_eq!(names(&v), expected, "{query}");
        assert_eq!(v["total"], expected.len(), "{query}");
        // The counts cover the whole fleet, the filters aside.
        assert_eq!(v["counts"]["changed"], 2, "{query}");
    }

    // The page: roles and groups as links to their filter, behind and current said, the
    // counts of each link to their filter, the form keeps what was asked.
    let (code, _, page) = get(&s, "/", Some(&token));
    assert_eq!(code, 200);
    for shown in [
        "<a href=\"/?role=web\">web</a>",
        "<a href=\"/?role=db\">db</a>",
        "<a href=\"/?group=east\">east</a>",
        "<span class=\"behind\">behind</span>",
        "<span class=\"current\">current</span>",
        "<a href=\"/?revision=behind\">behind</a>: <strong>1</strong>",
    ] {
        assert!(page.contains(shown), "{shown}: {page}");
    }
    let (_, _, page) = get(&s, "/?role=db", Some(&token));
    assert!(page.contains("data-node=\"n2\""), "{page}");
    assert!(!page.contains("data-node=\"n1\""), "{page}");
    assert!(
        page.contains("name=\"role\" size=\"10\" value=\"db\""),
        "{page}"
    );
    let (_, _, page) = get(&s, "/?revision=behind", Some(&token));
    assert!(page.contains("data-node=\"n2\"") && !page.contains("data-node=\"n1\""));

    // A release that changes nothing on n1: its agent applies it, changes nothing and
    // still reports, so n1 stays current; a second run of it reports nothing.
    s.env
        .write("modules/unused/module.toml", "# no node uses it\n");
    s.publish();
    let reports = |node: &str| {
        json(&format!("/api/nodes/{node}"))["runs"]
            .as_array()
            .map_or(0, Vec::len)
    };
    let before = reports("n1");
    for _ in 0..2 {
        let (code, out, err) = s.agent(&s.node_root("n1"));
        assert_eq!(code, 0, "{out}{err}");
        assert!(out.contains("Nothing to do for n1"), "{out}");
    }
    assert_eq!(reports("n1"), before + 1);
    let all = json("/api/nodes");
    assert_eq!(all["nodes"][0]["behind"], false, "{all}");
    assert_eq!(all["nodes"][0]["last"]["result"], "unchanged", "{all}");
}

#[test]
fn pages_follow_cursors_and_links_carry_them() {
    let (s, token) = seeded_site(roles_and_groups, &[]);
    let json = |path: &str| -> serde_json::Value {
        let (code, _, body) = get(&s, path, Some(&token));
        assert_eq!(code, 200, "{path}: {body}");
        serde_json::from_str(&body).unwrap()
    };
    for (sort, order) in [("name", "asc"), ("last", "desc"), ("revision", "asc")] {
        let q = format!("sort={sort}&order={order}&limit=1");
        let whole = names(&json(&format!("/api/nodes?sort={sort}&order={order}"))).join(",");
        let first = json(&format!("/api/nodes?{q}"));
        assert!(first["prev"].is_null());
        let next = first["next"].as_str().unwrap();
        let second = json(&format!("/api/nodes?{q}&page=2&after={next}"));
        assert_eq!(second["page"], 2);
        assert!(second["next"].is_null(), "{second}");
        assert_eq!(
            [names(&first), names(&second)].concat().join(","),
            whole,
            "{sort} {order}"
        );
        let prev = second["prev"].as_str().unwrap();
        let back = json(&format!("/api/nodes?{q}&before={prev}"));
        assert_eq!(names(&back), names(&first), "{sort} {order}");
        assert!(back["prev"].is_null() && back["next"].is_string());
    }
    // The page's next link carries the cursor, and the page it opens links back.
    let (_, _, page) = get(&s, "/?limit=1", Some(&token));
    let next = page.split("rel=\"next\" href=\"").nth(1).unwrap();
    let next = next[..next.find('"').unwrap()].replace("&amp;", "&");
    assert!(
        next.starts_with("/?page=2&limit=1&sort=name&order=asc&after="),
        "{next}"
    );
    let (code, _, page2) = get(&s, &next, Some(&token));
    assert_eq!(code, 200, "{page2}");
    assert!(page2.contains("data-node=\"n2\"") && !page2.contains("data-node=\"n1\""));
    assert!(
        page2.contains("rel=\"prev\" href=\"/?page=1&amp;limit=1"),
        "{page2}"
    );
    assert!(!page2.contains("rel=\"next\""), "{page2}");
}

#[test]
fn filters_past_their_bounds_are_refused_and_the_rest_match_literally() {
    let (s, token) = seeded_site(roles_and_groups, &[]);
    let long = "a".repeat(200);
    let cursor_of_last = {
        let (_, _, body) = get(&s, "/api/nodes?sort=last&limit=1", Some(&token));
        let v: serde_json::Value = serde_json::from_str(&body).unwrap();
        v["next"].as_str().unwrap().to_string()
    };
    // Refused, naming the parameter (JSON and page alike).
    let refused: Vec<(String, &str)> = [
        ("role=web'%20OR%20'1'='1".to_string(), "role"),
        ("role=%25".to_string(), "role"),
        ("group=a%2Cb".to_string(), "group"),
        (format!("role={long}"), "role"),
        (format!("group={long}"), "group"),
        (format!("environment={long}"), "environment"),
        (format!("status={long}"), "status"),
        ("revision=sideways".to_string(), "revision"),
        ("sort=drop".to_string(), "sort"),
        ("sort=name%3Bdrop%20table".to_string(), "sort"),
        ("after=not-a-cursor".to_string(), "after"),
        ("before=%22%27".to_string(), "before"),
        (format!("after={}", "A".repeat(2000)), "after"),
        // A cursor of another sort than the one asked.
        (format!("sort=name&after={cursor_of_last}"), "after"),
        (
            format!("after={cursor_of_last}&before={cursor_of_last}&sort=last"),
            "after",
        ),
    ]
    .into();
    for (query, named) in refused {
        let (code, _, body) = get(&s, &format!("/api/nodes?{query}"), Some(&token));
        assert_eq!(code, 400, "{query}: {body}");
        assert!(body.contains(named), "{query}: {body}");
        assert_eq!(
            get(&s, &format!("/?{query}"), Some(&token)).0,
            400,
            "{query}"
        );
    }
    // Within bounds, bound as values: quotes, `%` and `_` match nothing but themselves.
    for query in [
        "environment=test'%20OR%20'1'='1",
        "environment=%25",
        "environment=t_st",
        "status=%25",
        "status=changed'--",
        "role=w_b",
        "role=we",
        "group=e_st",
    ] {
        let (code, _, body) = get(&s, &format!("/api/nodes?{query}"), Some(&token));
        assert_eq!(code, 200, "{query}: {body}");
        let v: serde_json::Value = serde_json::from_str(&body).unwrap();
        assert_eq!(v["total"], 0, "{query}: {body}");
    }
    // The page's form sent with its fields blank filters nothing.
    let (code, _, page) = get(
        &s,
        "/?environment=&status=&role=&group=&revision=&sort=name&order=asc&limit=100",
        Some(&token),
    );
    assert_eq!(code, 200, "{page}");
    assert!(page.contains("data-node=\"n1\"") && page.contains("data-node=\"n2\""));
    // The fleet is still there.
    let (_, _, body) = get(&s, "/api/nodes", Some(&token));
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["total"], 2);
}
