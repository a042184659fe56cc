//! TLS for the listeners (rustls, ring): a certificate chain and key, and optionally the CA
//! that client certificates must chain to (mTLS).

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::WebPkiClientVerifier;
use serde::{Deserialize, Serialize};

/// The `tls:` section of the config; it applies to every listener.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TlsConfig {
    /// PEM certificate chain (leaf first). With `key_file`, every listener speaks TLS only.
    pub cert_file: Option<PathBuf>,
    /// PEM private key (PKCS#8, PKCS#1 or SEC1).
    pub key_file: Option<PathBuf>,
    /// PEM CA certificates: clients must present a certificate that chains to one (mTLS).
    pub client_ca_file: Option<PathBuf>,
    /// With `client_ca_file`: also admit clients without a certificate (they then need a
    /// token where one is required).
    pub client_cert_optional: bool,
}

impl TlsConfig {
    /// Whether TLS is configured.
    pub fn enabled(&self) -> bool {
        self.cert_file.is_some() || self.key_file.is_some()
    }

    /// The rustls server config, or `None` without TLS. Errors name the file and the problem.
    pub fn server_config(&self) -> Result<Option<Arc<rustls::ServerConfig>>, String> {
        let (cert, key) = match (&self.cert_file, &self.key_file) {
            (None, None) => {
                if self.client_ca_file.is_some() {
                    return Err("tls.client_ca_file needs tls.cert_file and tls.key_file".into());
                }
                return Ok(None);
            }
            (Some(c), Some(k)) => (c, k),
            (Some(_), None) => return Err("tls.cert_file is set without tls.key_file".into()),
            (None, Some(_)) => return Err("tls.key_file is set without tls.cert_file".into()),
        };
        let chain = certs(cert)?;
        let key = PrivateKeyDer::from_pem_file(key).map_err(|e| format!("tls.key_file {}: {e}", key.display()))?;
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let builder = rustls::ServerConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()
            .map_err(|e| format!("tls: {e}"))?;
        let builder = match &self.client_ca_file {
            None => builder.with_no_client_auth(),
            Some(ca) => {
                let mut roots = rustls::RootCertStore::empty();
                for c in certs(ca)? {
                    roots.add(c).map_err(|e| format!("tls.client_ca_file {}: {e}", ca.display()))?;
                }
                let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider);
                let verifier = if self.client_cert_optional { verifier.allow_unauthenticated() } else { verifier };
                let verifier = verifier.build().map_err(|e| format!("tls.client_ca_file {}: {e}", ca.display()))?;
                builder.with_client_cert_verifier(verifier)
            }
        };
        let mut config = builder.with_single_cert(chain, key).map_err(|e| {
            format!("tls: {} and {} do not make a usable pair: {e}", cert.display(), self.key_display())
        })?;
        config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
        Ok(Some(Arc::new(config)))
    }

    fn key_display(&self) -> String {
        self.key_file.as_deref().map(|p| p.display().to_string()).unwrap_or_default()
    }
}

fn certs(path: &Path) -> Result<Vec<CertificateDer<'static>>, String> {
    let certs: Vec<_> = CertificateDer::pem_file_iter(path)
        .map_err(|e| format!("{}: {e}", path.display()))?
        .collect::<Result<_, _>>()
        .map_err(|e| format!("{}: {e}", path.display()))?;
    if certs.is_empty() {
        return Err(format!("{}: no PEM certificate in it", path.display()));
    }
    Ok(certs)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn half_a_pair_is_an_error_that_names_the_field() {
        let cfg = TlsConfig { cert_file: Some("c.pem".into()), ..Default::default() };
        assert_eq!(cfg.server_config().unwrap_err(), "tls.cert_file is set without tls.key_file");
        let cfg = TlsConfig { client_ca_file: Some("ca.pem".into()), ..Default::default() };
        assert!(cfg.server_config().unwrap_err().contains("needs tls.cert_file"));
        assert!(TlsConfig::default().server_config().unwrap().is_none());
    }

    #[test]
    fn a_missing_file_is_named() {
        let cfg = TlsConfig {
            cert_file: Some("/nonexistent/cert.pem".into()),
            key_file: Some("/nonexistent/key.pem".into()),
            ..Default::default()
        };
        assert!(cfg.server_config().unwrap_err().contains("/nonexistent/cert.pem"));
    }
}
