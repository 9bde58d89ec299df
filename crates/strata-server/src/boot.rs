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
        .route("/boot/ipxe", get(ipxe))
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

/// The script: the kernel with the server's URL and the token, then the initrd.
pub fn script(url: &str, token: Option<&str>, console: &str) -> String {
    let mut args = format!("{console} strata.server={url}");
    if let Some(t) = token {
        args.push_str(" strata.token=");
        args.push_str(t);
    }
    format!("#!ipxe\nkernel {url}/boot/vmlinuz {args}\ninitrd {url}/boot/initrd.img\nboot\n")
}

async fn ipxe(State(s): State<Arc<Server>>, headers: HeaderMap) -> Response {
    let n = match netboot(&s) {
        Ok(n) => n,
        Err(e) => return e.into_response(),
    };
    let url = match &n.url {
        Some(u) => u.trim_end_matches('/').to_string(),
        None => {
            let host = headers
                .get(header::HOST)
                .and_then(|h| h.to_str().ok())
                .unwrap_or("");
            if !plain_host(host) {
                return ApiError::new(StatusCode::BAD_REQUEST, "a Host header is needed")
                    .into_response();
            }
            format!("http://{host}")
        }
    };
    let token = match n.token_file.as_deref().map(read_token).transpose() {
        Ok(t) => t,
        Err(e) => return e.into_response(),
    };
    (
        [
            (header::CONTENT_TYPE, "text/plain"),
            (header::CACHE_CONTROL, "no-store"),
        ],
        script(&url, token.as_deref(), &n.console),
    )
        .into_response()
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
    fn a_host_header_that_could_inject_into_the_script_is_refused() {
        assert!(plain_host("10.0.2.2:8080"));
        assert!(plain_host("[::1]:80"));
        for bad in ["", "a b", "x\nboot", "h/evil", "a;b", "h?x"] {
            assert!(!plain_host(bad), "{bad:?}");
        }
    }
}
