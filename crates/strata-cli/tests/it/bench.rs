//! The benchmark's workload cannot rot: at N = 100, strata applies the generated site
//! byte for byte, a second plan is empty, and every other tool's configuration is
//! generated from the same files (bench/src/tools.rs; the tools themselves run only in
//! `bench/run`).

use strata_bench::tools::{Tool, Vars};

use crate::env;

#[test]
fn the_benchmark_workload_is_applied_byte_for_byte() {
    let e = env();
    let files = strata_bench::generate(&e.site(), 100, "bench.example.com").expect("generate");
    e.run(&["apply", "--node", "bench"]).code(0);
    for f in &files {
        let have = std::fs::read(e.root().join(&f.path)).expect("a generated file");
        assert_eq!(have, f.content, "{}", f.path);
    }
    e.run(&["plan", "--node", "bench"]).code(0);
    // The dry-run phase changes every templated file.
    let dry = e
        .run(&[
            "plan",
            "--node",
            "bench",
            "--set",
            "gen.host_name=other.example.com",
        ])
        .code(2)
        .stdout;
    assert!(dry.contains("50 to modify"), "{dry}");

    for tool in Tool::ALL {
        let dir = e.path().join(tool.name());
        strata_bench::tools::generate(tool, &dir, &e.root(), &files, &Vars { host: "h" })
            .expect("tool configuration");
        let policy = match tool {
            Tool::Ansible => "playbook.yml",
            Tool::Pyinfra => "deploy.py",
            Tool::Salt => "states/bench.sls",
            Tool::Puppet => "site.pp",
            Tool::Cfengine => "policy.cf",
        };
        let text = std::fs::read_to_string(dir.join(policy)).expect("policy");
        // Every templated file is named in the policy.
        for f in files
            .iter()
            .filter(|f| f.content.starts_with(b"# templated"))
        {
            assert!(text.contains(&f.path), "{} lacks {}", tool.name(), f.path);
        }
    }
}
