//! TLS for the store's connections, as the URL's `sslmode` asks, with
//! libpq's meaning: `disable` (never), `prefer` (the default: TLS when the
//! server offers it, else plain), `require` (TLS or no connection).
//!
//! As in libpq, `prefer` and `require` encrypt without verifying the
//! server's certificate (libpq verifies only under `verify-ca` and
//! `verify-full`, which the URL parser of the driver does not accept): they
//! protect against eavesdropping, not against a man in the middle. The
//! handshake's signatures are verified, and with SCRAM authentication the
//! connection is bound to the TLS channel (`SCRAM-SHA-256-PLUS`), which a
//! man in the middle cannot relay. rustls with the ring provider.

use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, OnceLock};

use rustls::ClientConfig;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{CryptoProvider, verify_tls12_signature, verify_tls13_signature};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{DigitallySignedStruct, SignatureScheme};
use tokio_postgres::config::Host;
use tokio_postgres::tls::{MakeTlsConnect, TlsConnect};
use tokio_postgres_rustls::MakeRustlsConnect;

use crate::conn::Socket;

type BoxError = Box<dyn std::error::Error + Send + Sync>;
type Stream = <MakeRustlsConnect as MakeTlsConnect<Socket>>::Stream;

/// The TLS connector of a connection to `host`; it does its work only if
/// the server offers TLS and `sslmode` is not `disable`.
pub(crate) fn connector(host: &Host) -> Connector {
    Connector {
        host: match host {
            Host::Tcp(name) => name.clone(),
            Host::Unix(_) => "localhost".to_owned(),
        },
    }
}

/// A rustls connector made when the handshake starts.
pub(crate) struct Connector {
    host: String,
}

/// Accepts the server's certificate without checking who it names or who
/// signed it (libpq's `require`), and checks the handshake's signatures.
#[derive(Debug)]
struct Unverified(Arc<CryptoProvider>);

impl ServerCertVerifier for Unverified {
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

/// The client configuration, made once per process.
fn client_config() -> Result<ClientConfig, BoxError> {
    static CONFIG: OnceLock<Result<ClientConfig, String>> = OnceLock::new();
    CONFIG
        .get_or_init(|| {
            // ring is deprecated in rustls 0.23.48 for lacking post-quantum
            // key exchange; the alternative (aws-lc-rs) needs cmake and a C
            // build every user would need too. Classical TLS 1.2/1.3 is what
            // PostgreSQL servers speak.
            #[allow(deprecated)]
            let provider = Arc::new(rustls::crypto::ring::default_provider());
            ClientConfig::builder_with_provider(Arc::clone(&provider))
                .with_safe_default_protocol_versions()
                .map(|b| {
                    b.dangerous()
                        .with_custom_certificate_verifier(Arc::new(Unverified(provider)))
                        .with_no_client_auth()
                })
                .map_err(|e| format!("TLS configuration: {e}"))
        })
        .clone()
        .map_err(Into::into)
}

impl TlsConnect<Socket> for Connector {
    type Stream = Stream;
    type Error = BoxError;
    type Future = Pin<Box<dyn Future<Output = Result<Stream, BoxError>> + Send>>;

    fn connect(self, socket: Socket) -> Self::Future {
        Box::pin(async move {
            let mut make = MakeRustlsConnect::new(client_config()?);
            let tls = MakeTlsConnect::<Socket>::make_tls_connect(&mut make, &self.host)
                .map_err(|never| match never {})?;
            tls.connect(socket).await.map_err(Into::into)
        })
    }
}
