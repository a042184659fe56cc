//! How the load generator exports spans (`--otlp`): the exporter for either transport, a
//! bearer token and a CA to trust for a collector whose doors are locked.
//!
//! `OTEL_EXPORTER_OTLP_HEADERS` works as with any OpenTelemetry SDK; `--otlp-token-file`
//! and `--otlp-ca-file` say the same without environment variables. OTLP/HTTP goes through
//! this crate's reqwest client (rustls), so the CA applies to both transports alike.

use std::collections::HashMap;
use std::path::PathBuf;
use std::time::Duration;

use bytes::Bytes;
use opentelemetry_otlp::{WithExportConfig, WithHttpConfig, WithTonicConfig};

use crate::endpoint::OtlpProtocol;
use crate::error::{Error, Result};

/// `--otlp-token-file` and `--otlp-ca-file`.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct OtlpAuthArgs {
    /// File holding a bearer token for the --otlp endpoint (its first line)
    #[arg(long, value_name = "FILE")]
    pub otlp_token_file: Option<PathBuf>,
    /// PEM CA certificate(s) to trust for an https:// --otlp endpoint
    #[arg(long, value_name = "FILE")]
    pub otlp_ca_file: Option<PathBuf>,
}

/// The token and CA, read.
#[derive(Clone, Default)]
pub struct OtlpAuth {
    token: Option<String>,
    ca_pem: Option<Vec<u8>>,
}

impl std::fmt::Debug for OtlpAuth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OtlpAuth")
            .field("token", &self.token.as_ref().map(|_| "<redacted>"))
            .field("ca", &self.ca_pem.is_some())
            .finish()
    }
}

impl OtlpAuthArgs {
    /// Reads the files; errors name the flag and the file.
    pub fn load(&self) -> Result<OtlpAuth> {
        let token = match &self.otlp_token_file {
            None => None,
            Some(f) => {
                let text = std::fs::read_to_string(f)
                    .map_err(|e| Error::io(format!("--otlp-token-file {}", f.display()), e))?;
                let line = text.lines().map(str::trim).find(|l| !l.is_empty() && !l.starts_with('#'));
                Some(
                    line.ok_or_else(|| Error::Invalid(format!("--otlp-token-file {}: no token in it", f.display())))?
                        .to_string(),
                )
            }
        };
        let ca_pem = match &self.otlp_ca_file {
            None => None,
            Some(f) => {
                let pem = std::fs::read(f).map_err(|e| Error::io(format!("--otlp-ca-file {}", f.display()), e))?;
                reqwest::Certificate::from_pem_bundle(&pem).map_err(|e| {
                    Error::Invalid(format!("--otlp-ca-file {}: not PEM certificates ({e})", f.display()))
                })?;
                Some(pem)
            }
        };
        Ok(OtlpAuth { token, ca_pem })
    }
}

/// An OTLP span exporter for `--otlp URL` (gRPC, or HTTP with `/v1/traces` added to a bare
/// host). Shared by target mode and the simulator's live mode.
pub(crate) fn span_exporter(
    url: &str,
    protocol: OtlpProtocol,
    auth: &OtlpAuth,
) -> Result<opentelemetry_otlp::SpanExporter> {
    let fail = |e: opentelemetry_otlp::ExporterBuildError| Error::Invalid(format!("--otlp {url:?}: {e}"));
    let bearer = auth.token.as_ref().map(|t| format!("Bearer {t}"));
    match protocol {
        OtlpProtocol::Grpc => {
            let mut b = opentelemetry_otlp::SpanExporter::builder()
                .with_tonic()
                .with_endpoint(url)
                .with_timeout(Duration::from_secs(10));
            if let Some(value) = &bearer {
                let mut md = opentelemetry_otlp::tonic_types::metadata::MetadataMap::new();
                let value = value
                    .parse()
                    .map_err(|_| Error::Invalid("the OTLP token has characters a header cannot carry".into()))?;
                md.insert("authorization", value);
                b = b.with_metadata(md);
            }
            if let Some(pem) = &auth.ca_pem {
                use opentelemetry_otlp::tonic_types::transport::{Certificate, ClientTlsConfig};
                b = b.with_tls_config(ClientTlsConfig::new().ca_certificate(Certificate::from_pem(pem)));
            }
            b.build().map_err(fail)
        }
        OtlpProtocol::Http => {
            let mut b = opentelemetry_otlp::SpanExporter::builder()
                .with_http()
                .with_endpoint(http_traces_url(url))
                .with_timeout(Duration::from_secs(10))
                .with_http_client(Reqwest(client(auth)?));
            if let Some(value) = bearer {
                b = b.with_headers(HashMap::from([("authorization".to_string(), value)]));
            }
            b.build().map_err(fail)
        }
    }
}

fn client(auth: &OtlpAuth) -> Result<reqwest::Client> {
    let mut b = reqwest::Client::builder().timeout(Duration::from_secs(10));
    if let Some(pem) = &auth.ca_pem {
        for c in
            reqwest::Certificate::from_pem_bundle(pem).map_err(|e| Error::Invalid(format!("--otlp-ca-file: {e}")))?
        {
            b = b.add_root_certificate(c);
        }
    }
    b.build().map_err(|e| Error::Invalid(format!("OTLP HTTP client: {e}")))
}

/// The exporter's HTTP client: this crate's reqwest (the exporter's own is another major
/// version, without rustls here).
#[derive(Debug)]
struct Reqwest(reqwest::Client);

#[async_trait::async_trait]
impl opentelemetry_http::HttpClient for Reqwest {
    async fn send_bytes(
        &self,
        request: http::Request<Bytes>,
    ) -> std::result::Result<http::Response<Bytes>, opentelemetry_http::HttpError> {
        let (parts, body) = request.into_parts();
        let mut req = self.0.request(parts.method, parts.uri.to_string()).body(body);
        for (name, value) in &parts.headers {
            req = req.header(name, value);
        }
        let resp = req.send().await?;
        let mut out = http::Response::builder().status(resp.status());
        for (name, value) in resp.headers() {
            out = out.header(name, value);
        }
        let body = resp.bytes().await?;
        Ok(out.body(body)?)
    }
}

fn http_traces_url(url: &str) -> String {
    let base = url.trim_end_matches('/');
    let has_path = base.splitn(4, '/').nth(3).is_some_and(|p| !p.is_empty());
    if has_path { base.to_owned() } else { format!("{base}/v1/traces") }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn http_otlp_url_gets_the_traces_path() {
        assert_eq!(http_traces_url("http://h:4318"), "http://h:4318/v1/traces");
        assert_eq!(http_traces_url("http://h:4318/"), "http://h:4318/v1/traces");
        assert_eq!(http_traces_url("http://h/x/v1/traces"), "http://h/x/v1/traces");
    }

    #[test]
    fn the_token_is_read_from_its_file_and_never_shown() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("t");
        std::fs::write(&f, "# for the collector\nsecret-token-value\n").unwrap();
        let auth = OtlpAuthArgs { otlp_token_file: Some(f), otlp_ca_file: None }.load().unwrap();
        assert_eq!(auth.token.as_deref(), Some("secret-token-value"));
        assert!(!format!("{auth:?}").contains("secret"));
        let bad = OtlpAuthArgs { otlp_token_file: None, otlp_ca_file: Some(dir.path().join("none.pem")) }.load();
        assert!(bad.unwrap_err().to_string().contains("--otlp-ca-file"));
    }
}
