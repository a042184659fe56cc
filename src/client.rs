//! How the one-shot commands reach a locked server: a read token, a CA to trust, and a
//! client certificate for mTLS (`slo query --server`, `slo explain --server`).

use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use clap::Args;

use crate::cli::Failure;

/// Credentials for `--server`.
#[derive(Debug, Clone, Default, Args)]
pub(crate) struct ClientArgs {
    /// File holding the bearer token for the server (its first line); `SLO_TOKEN` gives
    /// the token itself. Never pass a token on the command line: other users see it.
    #[arg(long, env = "SLO_TOKEN_FILE")]
    pub token_file: Option<PathBuf>,
    /// PEM CA certificate(s) to trust for an `https://` server, beside the system's.
    #[arg(long, env = "SLO_CA_FILE")]
    pub ca_file: Option<PathBuf>,
    /// PEM client certificate for mTLS (with --client-key).
    #[arg(long, env = "SLO_CLIENT_CERT", requires = "client_key")]
    pub client_cert: Option<PathBuf>,
    /// PEM private key of --client-cert.
    #[arg(long, env = "SLO_CLIENT_KEY", requires = "client_cert")]
    pub client_key: Option<PathBuf>,
}

impl ClientArgs {
    /// The token, from `SLO_TOKEN` or the file.
    fn token(&self) -> Result<Option<String>, Failure> {
        if let Some(f) = &self.token_file {
            let text = std::fs::read_to_string(f)
                .with_context(|| format!("--token-file {}", f.display()))
                .map_err(Failure::usage)?;
            let line = text.lines().map(str::trim).find(|l| !l.is_empty() && !l.starts_with('#'));
            return match line {
                Some(t) => Ok(Some(t.to_string())),
                None => Err(Failure::usage_msg(format!("--token-file {}: no token in it", f.display()))),
            };
        }
        Ok(std::env::var("SLO_TOKEN").ok().filter(|t| !t.trim().is_empty()).map(|t| t.trim().to_string()))
    }

    /// A client that sends the token with every request and trusts the CA.
    pub(crate) fn client(&self) -> Result<reqwest::Client, Failure> {
        let mut builder = reqwest::Client::builder().connect_timeout(Duration::from_secs(10));
        if let Some(token) = self.token()? {
            let mut value = reqwest::header::HeaderValue::from_str(&format!("Bearer {token}"))
                .map_err(|_| Failure::usage_msg("the token has characters a header cannot carry".into()))?;
            value.set_sensitive(true);
            let mut headers = reqwest::header::HeaderMap::new();
            headers.insert(reqwest::header::AUTHORIZATION, value);
            builder = builder.default_headers(headers);
        }
        if let Some(ca) = &self.ca_file {
            let pem =
                std::fs::read(ca).with_context(|| format!("--ca-file {}", ca.display())).map_err(Failure::usage)?;
            let certs = reqwest::Certificate::from_pem_bundle(&pem)
                .with_context(|| format!("--ca-file {}: not PEM certificates", ca.display()))
                .map_err(Failure::usage)?;
            for c in certs {
                builder = builder.add_root_certificate(c);
            }
        }
        if let (Some(cert), Some(key)) = (&self.client_cert, &self.client_key) {
            let mut pem = std::fs::read(cert)
                .with_context(|| format!("--client-cert {}", cert.display()))
                .map_err(Failure::usage)?;
            pem.push(b'\n');
            pem.extend(
                std::fs::read(key)
                    .with_context(|| format!("--client-key {}", key.display()))
                    .map_err(Failure::usage)?,
            );
            let id = reqwest::Identity::from_pem(&pem)
                .with_context(|| format!("--client-cert {} / --client-key {}", cert.display(), key.display()))
                .map_err(Failure::usage)?;
            builder = builder.identity(id);
        }
        Ok(builder.build().context("building the HTTP client")?)
    }
}
