//! The measurement that chose the render limits (ignored tests: run with --ignored).
#![allow(clippy::print_stderr)] // the measurement's table

use super::*;

/// Hostile templates that run until a limit stops them (or the process runs out of
/// memory, before fuel): what they cost, each in its own process.
const HOSTILE: &[(&str, &str)] = &[
    (
        "nested loops",
        "{% for a in range(100000) %}{% for b in range(100000) %}{% for c in range(100000) %}{% endfor %}{% endfor %}{% endfor %}",
    ),
    (
        "lines",
        "{% for a in range(100000) %}{% for b in range(100000) %}host{{ a }}-{{ b }} 10.0.{{ a }}.{{ b }}\n{% endfor %}{% endfor %}",
    ),
    ("repeat", "{{ \"x\" * 10000000000 }}"),
    (
        "sort",
        "{% for i in range(100000) %}{{ range(100000)|list|sort|length }}{% endfor %}",
    ),
    (
        "in",
        "{% set s = \"x\" * 50000000 %}{% for i in range(100000) %}{{ (s ~ \"y\") in s }}{% endfor %}",
    ),
    (
        "doubling ~",
        "{% set ns = namespace(s=\"x\") %}{% for i in range(60) %}{% set ns.s = ns.s ~ ns.s %}{% endfor %}",
    ),
    (
        "doubling join",
        "{% set ns = namespace(s=\"x\") %}{% for i in range(60) %}{% set ns.s = [ns.s, ns.s]|join %}{% endfor %}",
    ),
    (
        "doubling format",
        "{% set ns = namespace(s=\"x\") %}{% for i in range(60) %}{% set ns.s = \"%s%s\"|format(ns.s, ns.s) %}{% endfor %}",
    ),
    (
        "doubling macro",
        "{% macro d(s, n) %}{% if n %}{{ d(s ~ s, n - 1) }}{% endif %}{% endmacro %}{{ d(\"x\", 60) }}",
    ),
    (
        "doubling sets",
        "{% set s = \"x\" * 100000000 %}{% set s = s ~ s %}{% set s = s ~ s %}{% set s = s ~ s %}{% set s = s ~ s %}{{ s|length }}",
    ),
];

/// `cargo test --release -p strata-core measure -- --ignored --nocapture`, with
/// `CASE=name` for one case (the peak is the process's).
#[test]
#[ignore = "a measurement, not a test"]
fn what_the_limits_let_hostile_templates_take() {
    let r = Renderer::new();
    let ctx = minijinja::Value::from(minijinja::value::Serde(serde_json::json!({})));
    let only = std::env::var("CASE").ok();
    for (what, src) in HOSTILE {
        if only.as_deref().is_some_and(|o| o != *what) {
            continue;
        }
        let start = std::time::Instant::now();
        let res = r.render("t.j2", src, &ctx);
        let peak = strata_fs::read_to_string(std::path::Path::new("/proc/self/status"))
            .unwrap_or_default()
            .lines()
            .find_map(|l| l.strip_prefix("VmHWM:").map(|v| v.trim().to_string()))
            .unwrap_or_default();
        let res = res.map_or_else(
            |e| e.message[..40].to_string(),
            |s| format!("{} bytes", s.len()),
        );
        eprintln!(
            "{what:16} {:>10.3?} peak {peak:>12}  {res}",
            start.elapsed()
        );
    }
    // A large real template: an /etc/hosts of 10,000 nodes.
    let hosts: Vec<_> = (0..10_000)
        .map(|i| {
            serde_json::json!({"name": format!("node{i}.example.com"),
            "ip": format!("10.0.{}.{}", i / 256, i % 256), "aliases": ["a", "b"],
            "enabled": i % 7 != 0})
        })
        .collect();
    let ctx = minijinja::Value::from(minijinja::value::Serde(serde_json::json!({"hosts": hosts})));
    let src = "{% for h in hosts %}{% if h.enabled %}{{ h.ip }}\t{{ h.name }}{% for a in h.aliases %} {{ a }}.{{ h.name|replace('.example.com', '') }}{% endfor %}\n{% else %}# {{ h.name }} disabled\n{% endif %}{% endfor %}\n";
    let mut env = minijinja::Environment::new();
    env.set_fuel(Some(u64::MAX >> 8));
    let t = env.template_from_str(src).expect("valid");
    let start = std::time::Instant::now();
    let mut out = Vec::new();
    let done = t.render_captured_to(ctx, &mut out).expect("renders");
    let fuel = done.state().fuel_levels().map_or(0, |f| f.0);
    eprintln!(
        "hosts of 10,000 nodes: {} bytes in {:.3?}, {fuel} fuel",
        out.len(),
        start.elapsed()
    );
}

/// What Ansible's dialect (its formatter, the filters registered, preserve_order)
/// costs a render: the bench's kind of template, rendered 20,000 times with the
/// dialect and with a bare environment of the same syntax.
/// `cargo test --release -p strata-core dialect_cost -- --ignored --nocapture`
#[test]
#[ignore = "a measurement, not a test"]
fn dialect_cost() {
    let ctx = minijinja::Value::from(minijinja::value::Serde(serde_json::json!({
        "app": {"port": 8080, "workers": 4, "log_level": "info", "gzip": true,
                "upstreams": ["10.0.0.11:9000", "10.0.0.12:9000"]},
        "node": {"name": "web1.example.com"}, "module": {"version": "2.0"}})));
    let src = "# acme app {{ module.version }} on {{ node.name }}\nlisten = {{ app.port }}\n\
               workers = {{ app.workers }}\nlog_level = \"{{ app.log_level }}\"\n\
               gzip = {{ app.gzip | lower }}\n{% for u in app.upstreams %}\
               upstream = \"{{ u }}\"\n{% endfor %}";
    let dialect = Renderer::new();
    let mut bare = Environment::new();
    bare.set_undefined_behavior(UndefinedBehavior::Strict);
    bare.set_fuel(Some(TEMPLATE_FUEL));
    bare.set_syntax(Whitespace::ANSIBLE.syntax());
    for round in 0..2 {
        let start = std::time::Instant::now();
        for _ in 0..20_000 {
            dialect.render("t.j2", src, &ctx).expect("renders");
        }
        let with = start.elapsed();
        let start = std::time::Instant::now();
        for _ in 0..20_000 {
            let t = bare.template_from_named_str("t.j2", src).expect("parses");
            t.render(ctx.clone()).expect("renders");
        }
        let without = start.elapsed();
        eprintln!(
            "round {round}: 20,000 renders: dialect {with:.3?}, bare {without:.3?} \
             ({:.2} µs more per render); Renderer::new {:.3?}",
            (with.as_secs_f64() - without.as_secs_f64()) * 1e6 / 20_000.0,
            {
                let s = std::time::Instant::now();
                let _ = Renderer::new();
                s.elapsed()
            }
        );
    }
}
