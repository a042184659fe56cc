//! Bearer tokens: one set for ingest (both OTLP ports), one for reading (the web port).
//!
//! Tokens come from files (one a line, `#` comments; re-read every 15 s so a rotated Secret
//! takes effect without a restart) and from `SLO_INGEST_TOKENS` / `SLO_READ_TOKENS`
//! (comma-separated). Several may be valid at once, for rotation. Only their SHA-256
//! digests are kept, compared in constant time against the digest of what a request
//! presents; no token is ever logged (`Debug` shows how many there are).
//!
//! A request without a valid `Authorization: Bearer <token>` gets 401 with
//! `WWW-Authenticate: Bearer`, or for gRPC `UNAUTHENTICATED` (HTTP 200, `grpc-status: 16`,
//! which is how gRPC clients expect to hear it). `/healthz` and `/readyz` stay open so
//! probes need no secret; `/metrics` is open or not by config.

use std::path::PathBuf;
use std::sync::Arc;

use axum::Router;
use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use parking_lot::RwLock;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

/// Shortest token accepted: a guessable token is no lock.
pub(crate) const MIN_TOKEN_LEN: usize = 16;

/// The `auth:` section of the config.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AuthConfig {
    /// Files of tokens that may send telemetry (OTLP gRPC and HTTP).
    pub ingest_token_files: Vec<PathBuf>,
    /// Files of tokens that may read (the web port: API, pages, `/metrics` unless open).
    pub read_token_files: Vec<PathBuf>,
    /// Serve `/metrics` without a token even when read tokens are set (for a Prometheus
    /// that cannot send one).
    pub metrics_open: bool,
}

/// A set of valid tokens, by digest.
pub struct Tokens {
    what: &'static str,
    from_env: Vec<[u8; 32]>,
    files: Vec<PathBuf>,
    digests: RwLock<Vec<[u8; 32]>>,
}

impl std::fmt::Debug for Tokens {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tokens").field("what", &self.what).field("count", &self.digests.read().len()).finish()
    }
}

fn digest(token: &[u8]) -> [u8; 32] {
    Sha256::digest(token).into()
}

fn parse(text: &str, split: impl Fn(char) -> bool, source: &str) -> Result<Vec<[u8; 32]>, String> {
    let mut out = Vec::new();
    for (i, raw) in text.split(split).enumerate() {
        let t = raw.trim();
        if t.is_empty() || t.starts_with('#') {
            continue;
        }
        if t.len() < MIN_TOKEN_LEN {
            return Err(format!(
                "{source}: token {} is {} characters; at least {MIN_TOKEN_LEN} are required",
                i + 1,
                t.len()
            ));
        }
        if !t.bytes().all(|b| b.is_ascii_graphic()) {
            return Err(format!("{source}: token {} has characters a header cannot carry", i + 1));
        }
        out.push(digest(t.as_bytes()));
    }
    Ok(out)
}

impl Tokens {
    /// The tokens of `files` and of the environment value (comma-separated), or `None`
    /// when neither gives any source. Errors name the file or variable and the token's
    /// position, never its text.
    pub fn load(
        what: &'static str,
        env_name: &str,
        env: Option<&str>,
        files: &[PathBuf],
    ) -> Result<Option<Arc<Tokens>>, String> {
        if env.is_none() && files.is_empty() {
            return Ok(None);
        }
        let from_env = match env {
            Some(v) => parse(v, |c| c == ',' || c == '\n', env_name)?,
            None => Vec::new(),
        };
        let tokens = Tokens { what, from_env, files: files.to_vec(), digests: RwLock::default() };
        tokens.reload()?;
        if tokens.digests.read().is_empty() {
            return Err(format!("{what} tokens: the sources given ({env_name} or files) hold none"));
        }
        Ok(Some(Arc::new(tokens)))
    }

    /// Re-reads the files; on an error the previous set stays.
    pub fn reload(&self) -> Result<usize, String> {
        let mut all = self.from_env.clone();
        for f in &self.files {
            let text =
                std::fs::read_to_string(f).map_err(|e| format!("{} token file {}: {e}", self.what, f.display()))?;
            all.extend(parse(&text, |c| c == '\n', &f.display().to_string())?);
        }
        let n = all.len();
        *self.digests.write() = all;
        Ok(n)
    }

    /// Whether the token files are re-read.
    pub fn has_files(&self) -> bool {
        !self.files.is_empty()
    }

    /// Whether `presented` is one of the tokens, in time that does not depend on which
    /// token or how much of it matched.
    pub fn verify(&self, presented: &[u8]) -> bool {
        let d = digest(presented);
        let mut ok = subtle::Choice::from(0);
        for known in self.digests.read().iter() {
            ok |= known.ct_eq(&d);
        }
        ok.into()
    }
}

/// What a router requires.
#[derive(Debug, Clone)]
pub struct Guard {
    tokens: Option<Arc<Tokens>>,
    open: Arc<[&'static str]>,
}

impl Guard {
    /// Requires one of `tokens` (none: everything is open) except on the `open` paths.
    pub fn new(tokens: Option<Arc<Tokens>>, open: &[&'static str]) -> Guard {
        Guard { tokens, open: open.into() }
    }

    /// The router with the check in front of every route.
    pub fn wrap(self, router: Router) -> Router {
        if self.tokens.is_none() {
            return router;
        }
        router.layer(axum::middleware::from_fn_with_state(self, check))
    }
}

async fn check(State(guard): State<Guard>, req: Request, next: Next) -> Response {
    let Some(tokens) = &guard.tokens else { return next.run(req).await };
    if guard.open.contains(&req.uri().path()) {
        return next.run(req).await;
    }
    let presented = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer ").or_else(|| v.strip_prefix("bearer ")))
        .map(str::trim);
    let why = match presented {
        Some(t) if tokens.verify(t.as_bytes()) => return next.run(req).await,
        Some(_) => "the bearer token is not valid",
        None => "a bearer token is required (Authorization: Bearer <token>)",
    };
    let grpc = req.headers().get(header::CONTENT_TYPE).is_some_and(|v| v.as_bytes().starts_with(b"application/grpc"));
    if grpc {
        let mut resp = Response::new(Body::empty());
        let h = resp.headers_mut();
        h.insert(header::CONTENT_TYPE, HeaderValue::from_static("application/grpc"));
        h.insert("grpc-status", HeaderValue::from_static("16"));
        h.insert(
            "grpc-message",
            HeaderValue::from_str(&why.replace(' ', "%20")).unwrap_or(HeaderValue::from_static("unauthenticated")),
        );
        return resp;
    }
    let mut resp = (StatusCode::UNAUTHORIZED, axum::Json(serde_json::json!({ "error": why }))).into_response();
    resp.headers_mut().insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer realm=\"slo\""));
    resp
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_verify_and_rotate() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("tokens");
        std::fs::write(&file, "# current and next\nAAAAAAAAAAAAAAAAAAAA\nBBBBBBBBBBBBBBBBBBBB\n").unwrap();
        let t = Tokens::load("ingest", "SLO_INGEST_TOKENS", Some("CCCCCCCCCCCCCCCCCCCC"), std::slice::from_ref(&file))
            .unwrap()
            .unwrap();
        for ok in ["AAAAAAAAAAAAAAAAAAAA", "BBBBBBBBBBBBBBBBBBBB", "CCCCCCCCCCCCCCCCCCCC"] {
            assert!(t.verify(ok.as_bytes()), "{ok}");
        }
        assert!(!t.verify(b"AAAAAAAAAAAAAAAAAAA"));
        assert!(!t.verify(b""));
        std::fs::write(&file, "BBBBBBBBBBBBBBBBBBBB\n").unwrap();
        assert_eq!(t.reload().unwrap(), 2);
        assert!(!t.verify(b"AAAAAAAAAAAAAAAAAAAA"), "rotated out");
        assert!(t.verify(b"BBBBBBBBBBBBBBBBBBBB"));
        assert!(!format!("{t:?}").contains("BBBB"), "Debug never shows a token");
    }

    #[test]
    fn weak_or_missing_tokens_are_errors_without_the_token() {
        let err = Tokens::load("read", "SLO_READ_TOKENS", Some("short"), &[]).unwrap_err();
        assert!(err.contains("SLO_READ_TOKENS") && err.contains("at least 16"), "{err}");
        assert!(!err.contains("short"), "{err}");
        let err = Tokens::load("read", "SLO_READ_TOKENS", Some(" , "), &[]).unwrap_err();
        assert!(err.contains("hold none"), "{err}");
        let err = Tokens::load("read", "X", None, &["/nonexistent/t".into()]).unwrap_err();
        assert!(err.contains("/nonexistent/t"), "{err}");
        assert!(Tokens::load("read", "X", None, &[]).unwrap().is_none());
    }
}
