//! Operators with client certificates: `strata serve --operator-ca` checks a client's
//! certificate during the TLS handshake, and the dashboard maps a certificate bound with
//! `strata operators add NAME --cert` to its operator. Certificates made here with
//! `openssl`, real TLS on loopback, `curl` as the client.

use std::path::Path;
use std::process::Command;

use crate::serve::{certificates, output, served};

/// Makes (in `dir`) a CA `NAME-ca.pem` and a client certificate `NAME.pem`/`NAME.key` it
/// issued with CN `cn`.
fn client_certificate(dir: &Path, name: &str, cn: &str) {
    sh(
        dir,
        &format!(
            "openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes \
               -keyout {name}-ca.key -out {name}-ca.pem -days 2 -subj '/CN={name} operators CA'"
        ),
    );
    issue(dir, name, name, cn, "clientAuth");
}

/// Makes (in `dir`) `NAME.pem`/`NAME.key` with CN `cn` and extended key usage `eku`,
/// issued by the CA `CA-ca.pem`.
fn issue(dir: &Path, ca: &str, name: &str, cn: &str, eku: &str) {
    sh(
        dir,
        &format!(
            "openssl req -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes \
               -keyout {name}.key -out {name}.csr -subj '/CN={cn}'
             printf 'basicConstraints=CA:FALSE\\nextendedKeyUsage={eku}\\n' > {name}.ext
             openssl x509 -req -in {name}.csr -CA {ca}-ca.pem -CAkey {ca}-ca.key \
               -CAcreateserial -out {name}.pem -days 2 -extfile {name}.ext"
        ),
    );
}

fn sh(dir: &Path, script: &str) {
    let (code, out, err) = output(
        Command::new("sh")
            .arg("-c")
            .arg(format!("set -e\n{script}"))
            .current_dir(dir),
    );
    assert_eq!(code, 0, "openssl: {out}{err}");
}

#[test]
fn an_operator_reads_with_a_certificate_from_the_operators_ca_and_no_other() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let (ca, cert, key) = certificates(d);
    client_certificate(d, "ops", "alice");
    // Another CA, a certificate with the same name.
    client_certificate(d, "other", "alice");
    // The operators' CA, a certificate for servers only.
    issue(d, "ops", "server-only", "alice", "serverAuth");
    let s = served(&[
        "--tls-cert",
        cert.to_str().unwrap(),
        "--tls-key",
        key.to_str().unwrap(),
        "--operator-ca",
        d.join("ops-ca.pem").to_str().unwrap(),
    ]);
    let curl_with = |client: Option<&str>, path: &str, extra: &[&str]| {
        let mut c = Command::new("curl");
        c.args(extra);
        c.args(["-sS", "-o", "/dev/null", "-w", "%{http_code}", "--cacert"])
            .arg(&ca)
            .arg(format!("{}{path}", s.url));
        if let Some(name) = client {
            c.arg("--cert").arg(d.join(format!("{name}.pem")));
            c.arg("--key").arg(d.join(format!("{name}.key")));
        }
        let (code, out, err) = output(&mut c);
        (code, out, err)
    };
    let curl = |client: Option<&str>, path: &str| curl_with(client, path, &[]);
    // No certificate (as nodes connect): served, and the dashboard wants an operator.
    assert_eq!(curl(None, "/api/nodes").1, "401");
    // A certificate of the operators' CA, not bound to an operator yet: 401.
    assert_eq!(curl(Some("ops"), "/api/nodes").1, "401");
    let (code, out, err) = s.site_cmd(&["operators", "add", "alice", "--cert"]);
    assert_ne!(code, 0, "--cert needs a file: {out}{err}");
    let (code, printed, err) = output(
        s.env
            .cmd(&["operators", "add", "alice", "--cert"])
            .arg(d.join("ops.pem"))
            .arg("--site")
            .arg(s.env.site()),
    );
    assert_eq!(code, 0, "{err}");
    // What it prints is the certificate's SHA-256 fingerprint, as openssl computes it.
    let (_, theirs, _) = output(
        Command::new("openssl")
            .args(["x509", "-noout", "-fingerprint", "-sha256", "-in"])
            .arg(d.join("ops.pem")),
    );
    let theirs = theirs
        .trim()
        .rsplit('=')
        .next()
        .unwrap()
        .replace(':', "")
        .to_lowercase();
    assert_eq!(printed.trim(), format!("sha256:{theirs}"));
    for path in ["/api/nodes", "/", "/nodes/nope"] {
        let want = if path == "/nodes/nope" { "404" } else { "200" };
        assert_eq!(curl(Some("ops"), path).1, want, "{path}");
    }
    // A bearer token, when sent, is what counts: a wrong one is 401 with the certificate.
    let wrong = ["-H", "authorization: Bearer strataop1.00"];
    assert_eq!(curl_with(Some("ops"), "/api/nodes", &wrong).1, "401");
    // A certificate from another CA, its CN the same, or one of the operators' CA not
    // for clients: refused in the handshake.
    for refused in ["other", "server-only"] {
        let (code, status, err) = curl(Some(refused), "/api/nodes");
        assert_ne!(code, 0, "{refused}: {status} {err}");
        assert_ne!(status, "200", "{refused}");
    }
    // A file that is not a certificate: a clear error, nothing bound.
    let (code, _, err) = output(
        s.env
            .cmd(&["operators", "add", "bob", "--cert"])
            .arg(d.join("ops.key"))
            .arg("--site")
            .arg(s.env.site()),
    );
    assert_ne!(code, 0);
    assert!(
        err.contains("ops.key") && err.contains("no certificate"),
        "{err}"
    );
}

#[test]
fn an_operator_ca_needs_tls() {
    let env = crate::env();
    let (code, _, err) = output(&mut env.cmd(&[
        "serve",
        "--listen",
        "127.0.0.1:0",
        "--operator-ca",
        "/nonexistent",
    ]));
    assert_ne!(code, 0, "{err}");
    assert!(err.contains("--tls-cert"), "{err}");
}
