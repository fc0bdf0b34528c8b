//! TLS with rustls (ring, TLS 1.2 and 1.3, no OpenSSL): the servers' certificates with
//! optional client verification (mTLS), re-read on SIGHUP; and the exporters' clients,
//! which verify the server against the system roots or a CA file and can present a
//! certificate of their own. See the README's security section.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;
use hyper_rustls::{HttpsConnector, HttpsConnectorBuilder};
use hyper_util::client::legacy::connect::HttpConnector;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{verify_tls12_signature, verify_tls13_signature, CryptoProvider};
use rustls::server::WebPkiClientVerifier;
use rustls::{ClientConfig, DigitallySignedStruct, RootCertStore, ServerConfig, SignatureScheme};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use tokio_rustls::TlsAcceptor;

use crate::config::{ClientTlsConfig, TlsConfig};

/// A TLS file that cannot be used, or a certificate and key that do not fit.
#[derive(Debug, thiserror::Error)]
#[error("{what}: {why}")]
pub struct TlsError {
    /// the config key or file at fault
    pub what: String,
    /// why
    pub why: String,
}

fn err(what: impl Into<String>, why: impl std::fmt::Display) -> TlsError {
    TlsError {
        what: what.into(),
        why: why.to_string(),
    }
}

fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

const VERSIONS: &[&rustls::SupportedProtocolVersion] =
    &[&rustls::version::TLS13, &rustls::version::TLS12];

fn certs(path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let certs = CertificateDer::pem_file_iter(path)
        .and_then(|it| it.collect::<Result<Vec<_>, _>>())
        .map_err(|e| err(path.display().to_string(), e))?;
    if certs.is_empty() {
        return Err(err(path.display().to_string(), "no PEM certificate in it"));
    }
    Ok(certs)
}

fn key(path: &Path) -> Result<PrivateKeyDer<'static>, TlsError> {
    PrivateKeyDer::from_pem_file(path).map_err(|e| err(path.display().to_string(), e))
}

fn roots(path: &Path) -> Result<RootCertStore, TlsError> {
    let mut store = RootCertStore::empty();
    for c in certs(path)? {
        store
            .add(c)
            .map_err(|e| err(path.display().to_string(), e))?;
    }
    Ok(store)
}

/// The server side of one listener's TLS: the config in use, swapped whole on reload so
/// a handshake always sees one consistent certificate, key and client CA.
pub struct ServerTls {
    files: TlsConfig,
    current: ArcSwap<ServerConfig>,
}

impl ServerTls {
    /// Reads the certificate, key and (for mTLS) client CA of `files`.
    pub fn load(files: &TlsConfig) -> Result<Arc<ServerTls>, TlsError> {
        Ok(Arc::new(ServerTls {
            current: ArcSwap::from_pointee(server_config(files)?),
            files: files.clone(),
        }))
    }

    /// Reads the files again; on an error the certificate in use stays.
    pub fn reload(&self) -> Result<(), TlsError> {
        self.current.store(Arc::new(server_config(&self.files)?));
        Ok(())
    }

    /// An acceptor with the certificate in use now.
    pub fn acceptor(&self) -> TlsAcceptor {
        TlsAcceptor::from(self.current.load_full())
    }
}

fn server_config(files: &TlsConfig) -> Result<ServerConfig, TlsError> {
    let builder = ServerConfig::builder_with_provider(provider())
        .with_protocol_versions(VERSIONS)
        .map_err(|e| err("tls", e))?;
    let builder = match &files.client_ca_file {
        Some(ca) => {
            let verifier =
                WebPkiClientVerifier::builder_with_provider(Arc::new(roots(ca)?), provider())
                    .build()
                    .map_err(|e| err(ca.display().to_string(), e))?;
            builder.with_client_cert_verifier(verifier)
        }
        None => builder.with_no_client_auth(),
    };
    let mut config = builder
        .with_single_cert(certs(&files.cert_file)?, key(&files.key_file)?)
        .map_err(|e| {
            err(
                format!(
                    "{} and {}",
                    files.cert_file.display(),
                    files.key_file.display()
                ),
                e,
            )
        })?;
    // gRPC needs HTTP/2; OTLP/HTTP and the admin endpoint speak either.
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(config)
}

/// The client TLS of an exporter: `tls` as configured, or the system roots when the
/// endpoint is `https://` and `tls` is left out.
pub fn client_config(tls: Option<&ClientTlsConfig>) -> Result<ClientConfig, TlsError> {
    let d = ClientTlsConfig::default();
    let tls = tls.unwrap_or(&d);
    let builder = ClientConfig::builder_with_provider(provider())
        .with_protocol_versions(VERSIONS)
        .map_err(|e| err("tls", e))?;
    let builder = if tls.insecure_skip_verify {
        builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(NoVerify(provider())))
    } else {
        let store = match &tls.ca_file {
            Some(ca) => roots(ca)?,
            None => system_roots()?,
        };
        builder.with_root_certificates(store)
    };
    match (&tls.cert_file, &tls.key_file) {
        (Some(c), Some(k)) => builder
            .with_client_auth_cert(certs(c)?, key(k)?)
            .map_err(|e| err(format!("{} and {}", c.display(), k.display()), e)),
        _ => Ok(builder.with_no_client_auth()),
    }
}

/// The operating system's trusted roots (on Debian `/etc/ssl/certs`; `SSL_CERT_FILE`
/// and `SSL_CERT_DIR` override it, as for OpenSSL).
fn system_roots() -> Result<RootCertStore, TlsError> {
    let found = rustls_native_certs::load_native_certs();
    let mut store = RootCertStore::empty();
    let (added, _) = store.add_parsable_certificates(found.certs);
    if added == 0 {
        let why = found
            .errors
            .first()
            .map_or("none found".to_string(), |e| e.to_string());
        return Err(err(
            "system root certificates",
            format!("{why}: set tls.ca_file"),
        ));
    }
    Ok(store)
}

/// `insecure_skip_verify`: any certificate is accepted, but the handshake's signatures
/// are still checked (the peer holds the key of the certificate it sent).
#[derive(Debug)]
struct NoVerify(Arc<CryptoProvider>);

impl ServerCertVerifier for NoVerify {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

/// The connector of every exporter's HTTP client: plain TCP for `http://`, TLS for
/// `https://`.
pub type Connector = HttpsConnector<HttpConnector>;

/// Which HTTP versions a client offers over TLS (ALPN).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Alpn {
    /// gRPC: HTTP/2 only
    H2,
    /// HTTP/1.1
    Http1,
}

/// A connector with `tls` (see [`client_config`]), TCP_NODELAY and a connect timeout.
/// The TLS config is built only when `tls` is set or the endpoint is `https://`, so a
/// plaintext exporter does not depend on the system roots being readable.
pub fn connector(
    endpoint: &str,
    tls: Option<&ClientTlsConfig>,
    alpn: Alpn,
    connect_timeout: Duration,
) -> Result<Connector, TlsError> {
    let mut http = HttpConnector::new();
    http.set_nodelay(true);
    http.set_connect_timeout(Some(connect_timeout));
    http.enforce_http(false);
    let config = if tls.is_some() || is_https(endpoint) {
        client_config(tls)?
    } else {
        // never used for an http:// endpoint; an empty root store keeps it that way
        ClientConfig::builder_with_provider(provider())
            .with_protocol_versions(VERSIONS)
            .map_err(|e| err("tls", e))?
            .with_root_certificates(RootCertStore::empty())
            .with_no_client_auth()
    };
    let b = HttpsConnectorBuilder::new()
        .with_tls_config(config)
        .https_or_http();
    Ok(match alpn {
        Alpn::H2 => b.enable_http2().wrap_connector(http),
        Alpn::Http1 => b.enable_http1().wrap_connector(http),
    })
}

/// Whether `endpoint` asks for TLS.
pub fn is_https(endpoint: &str) -> bool {
    endpoint
        .get(..8)
        .is_some_and(|s| s.eq_ignore_ascii_case("https://"))
}
