//! `/boot/*`: what a machine netbooting with iPXE fetches from `serve` (SITE-FORMAT.md,
//! "Provisioning a bare machine"): an iPXE script, and the kernel and initrd that
//! `strata netboot build` made. Unauthenticated, as PXE is: the script carries the
//! provisioning token, so the token's limits (uses, time, environment) are its defence.

use std::path::PathBuf;
use std::sync::Arc;

use axum::Router;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;

use crate::app::{ApiError, Server, internal};

/// What `serve --netboot DIR` serves.
#[derive(Debug, Clone)]
pub struct Netboot {
    /// Holds `vmlinuz` and `initrd.img` (`strata netboot build --out DIR`).
    pub dir: PathBuf,
    /// The URL the machines reach the server at; without it, `http://` and the
    /// request's Host.
    pub url: Option<String>,
    /// The file holding the provisioning token the script hands the initrd, if any:
    /// read at each request, so that a new token needs no restart.
    pub token_file: Option<PathBuf>,
    /// The kernel's console arguments (`console=ttyS0,115200`).
    pub console: String,
}

/// The routes, answering 404 when serve has no `--netboot`.
pub(crate) fn routes() -> Router<Arc<Server>> {
    Router::new()
        .route("/boot/ipxe", get(chain))
        .route("/boot/ipxe/{mac}", get(ipxe))
        .route("/boot/base.tar", get(base))
        .route(
            "/boot/vmlinuz",
            get(|s: State<Arc<Server>>| file(s, "vmlinuz")),
        )
        .route(
            "/boot/initrd.img",
            get(|s: State<Arc<Server>>| file(s, "initrd.img")),
        )
}

fn netboot(s: &Server) -> Result<&Netboot, ApiError> {
    s.netboot.as_ref().ok_or_else(|| {
        ApiError::new(
            StatusCode::NOT_FOUND,
            "serve was not started with --netboot DIR",
        )
    })
}

/// Whether `host` (a Host header) is a plain `name[:port]` or `[v6]:port`, safe in a
/// URL and a kernel command line.
fn plain_host(host: &str) -> bool {
    !host.is_empty()
        && host.len() <= 255
        && host
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | ':' | '[' | ']'))
}

/// The first script: iPXE asks again with the MAC of the interface it booted from (the
/// node's name is `m-` and that MAC), so that a machine already provisioned is told to
/// boot its disk.
pub fn chain_script(url: &str) -> String {
    format!("#!ipxe\nchain {url}/boot/ipxe/${{netX/mac:hexraw}}\n")
}

/// What a provisioned machine is answered: boot the first disk (BIOS drive 0x80), or,
/// where iPXE cannot, go back to the firmware, which tries its next boot device.
pub fn local_script(node: &str) -> String {
    format!(
        "#!ipxe\necho strata: {node} is provisioned: booting from its disk\n\
         sanboot --no-describe --drive 0x80 || exit\n"
    )
}

/// Whether `mac` is a MAC in iPXE's `hexraw` form (12 hex digits).
fn plain_mac(mac: &str) -> bool {
    mac.len() == 12 && mac.bytes().all(|b| b.is_ascii_hexdigit())
}

/// The script: the kernel with the server's URL and the token, then the initrd.
pub fn script(url: &str, token: Option<&str>, console: &str) -> String {
    let mut args = format!("{console} strata.server={url}");
    if let Some(t) = token {
        args.push_str(" strata.token=");
        args.push_str(t);
    }
    format!("#!ipxe\nkernel {url}/boot/vmlinuz {args}\ninitrd {url}/boot/initrd.img\nboot\n")
}

/// The URL machines reach this server at: `--netboot-url`, else the request's Host.
fn base_url(n: &Netboot, headers: &HeaderMap) -> Result<String, ApiError> {
    if let Some(u) = &n.url {
        return Ok(u.trim_end_matches('/').to_string());
    }
    let host = headers
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .unwrap_or("");
    if !plain_host(host) {
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "a Host header is needed",
        ));
    }
    Ok(format!("http://{host}"))
}

fn script_answer(text: String) -> Response {
    (
        [
            (header::CONTENT_TYPE, "text/plain"),
            (header::CACHE_CONTROL, "no-store"),
        ],
        text,
    )
        .into_response()
}

async fn chain(State(s): State<Arc<Server>>, headers: HeaderMap) -> Response {
    match netboot(&s).and_then(|n| base_url(n, &headers)) {
        Ok(url) => script_answer(chain_script(&url)),
        Err(e) => e.into_response(),
    }
}

/// Whether the node has been provisioned: accepted, and it reported since it was enrolled
/// under this name (the initrd posts its first report once the disk is written; a
/// provisioning stopped halfway posts none; reports from before a `nodes forget` do not
/// count, so a machine forgotten to be reinstalled is not sent to its old disk).
fn provisioned(s: &Server, node: &str) -> Result<bool, ApiError> {
    let mut inventory = s.inventory.lock().map_err(internal)?;
    Ok(inventory
        .node(node)?
        .is_some_and(|n| n.state == crate::inventory::NodeState::Accepted && n.reported))
}

async fn ipxe(
    State(s): State<Arc<Server>>,
    axum::extract::Path(mac): axum::extract::Path<String>,
    headers: HeaderMap,
) -> Response {
    let n = match netboot(&s) {
        Ok(n) => n,
        Err(e) => return e.into_response(),
    };
    if !plain_mac(&mac) {
        return ApiError::new(
            StatusCode::BAD_REQUEST,
            "expected /boot/ipxe/MAC, the MAC as 12 hex digits",
        )
        .into_response();
    }
    let url = match base_url(n, &headers) {
        Ok(u) => u,
        Err(e) => return e.into_response(),
    };
    let node = format!("m-{}", mac.to_ascii_lowercase());
    let state = s.clone();
    let who = node.clone();
    match tokio::task::spawn_blocking(move || provisioned(&state, &who)).await {
        Ok(Ok(true)) => return script_answer(local_script(&node)),
        Ok(Ok(false)) => {}
        Ok(Err(e)) => return e.into_response(),
        Err(e) => return internal(e).into_response(),
    }
    let token = match n.token_file.as_deref().map(read_token).transpose() {
        Ok(t) => t,
        Err(e) => return e.into_response(),
    };
    script_answer(script(&url, token.as_deref(), &n.console))
}

/// The base tarball, streamed from the file (it is hundreds of MB).
async fn base(State(s): State<Arc<Server>>) -> Response {
    let path = match netboot(&s) {
        Ok(n) => n.dir.join("base.tar"),
        Err(e) => return e.into_response(),
    };
    match tokio::fs::File::open(&path).await {
        Ok(f) => {
            let len = f.metadata().await.map(|m| m.len()).ok();
            let body = axum::body::Body::from_stream(tokio_util::io::ReaderStream::with_capacity(
                f,
                1 << 20,
            ));
            let mut r = ([(header::CONTENT_TYPE, "application/x-tar")], body).into_response();
            if let Some(len) = len {
                r.headers_mut().insert(header::CONTENT_LENGTH, len.into());
            }
            r
        }
        Err(e) => ApiError::new(
            StatusCode::NOT_FOUND,
            format!(
                "{}: {e} (run `strata netboot build --out DIR`)",
                path.display()
            ),
        )
        .into_response(),
    }
}

/// The token in `path`, checked to be one word of a token's characters (nothing that
/// could add a command to the script or an argument to the kernel).
fn read_token(path: &std::path::Path) -> Result<String, ApiError> {
    let unusable = |why: String| {
        ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            format!("the netboot token file {}: {why}", path.display()),
        )
    };
    let text = strata_fs::read_sized_file(path, 4096).map_err(|e| unusable(e.to_string()))?;
    let t = String::from_utf8_lossy(&text).trim().to_string();
    if t.is_empty() || !t.chars().all(|c| c.is_ascii_alphanumeric() || c == '.') {
        return Err(unusable("not a token from `strata nodes token`".into()));
    }
    Ok(t)
}

async fn file(State(s): State<Arc<Server>>, name: &'static str) -> Response {
    let path = match netboot(&s) {
        Ok(n) => n.dir.join(name),
        Err(e) => return e.into_response(),
    };
    match tokio::task::spawn_blocking(move || strata_fs::read(&path).map_err(|e| (path, e))).await {
        Ok(Ok(bytes)) => {
            ([(header::CONTENT_TYPE, "application/octet-stream")], bytes).into_response()
        }
        Ok(Err((path, e))) => ApiError::new(
            StatusCode::NOT_FOUND,
            format!(
                "{}: {e} (run `strata netboot build --out DIR`)",
                path.display()
            ),
        )
        .into_response(),
        Err(e) => internal(e).into_response(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_script_boots_the_kernel_with_the_server_and_token() {
        let s = script(
            "http://10.0.2.2:8080",
            Some("strata1.ab.cd"),
            "console=ttyS0",
        );
        assert_eq!(
            s,
            "#!ipxe\nkernel http://10.0.2.2:8080/boot/vmlinuz console=ttyS0 \
             strata.server=http://10.0.2.2:8080 strata.token=strata1.ab.cd\n\
             initrd http://10.0.2.2:8080/boot/initrd.img\nboot\n"
        );
    }

    #[test]
    fn the_first_script_asks_again_with_the_mac_and_a_provisioned_node_boots_its_disk() {
        assert_eq!(
            chain_script("http://10.0.2.2:8080"),
            "#!ipxe\nchain http://10.0.2.2:8080/boot/ipxe/${netX/mac:hexraw}\n"
        );
        let local = local_script("m-525400123401");
        assert!(local.starts_with("#!ipxe\n"), "{local}");
        assert!(
            local.contains("\nsanboot --no-describe --drive 0x80 || exit\n"),
            "{local}"
        );
        assert!(plain_mac("525400123401"));
        for bad in [
            "",
            "52540012340",
            "52:54:00:12:34:01",
            "5254001234zz",
            "525400123401/x",
        ] {
            assert!(!plain_mac(bad), "{bad:?}");
        }
    }

    #[test]
    fn a_host_header_that_could_inject_into_the_script_is_refused() {
        assert!(plain_host("10.0.2.2:8080"));
        assert!(plain_host("[::1]:80"));
        for bad in ["", "a b", "x\nboot", "h/evil", "a;b", "h?x"] {
            assert!(!plain_host(bad), "{bad:?}");
        }
    }
}
