//! TLS client configuration: webpki roots by default (plus the CA bundle of `--cacert`), or no
//! verification with `--insecure`.
//!
//! A certificate given with `--cacert` is trusted as a CA, and also as itself: a server that
//! presents a certificate byte-identical to one of the bundle is accepted even where webpki
//! refuses it as an end entity, as curl and Go's clients (Fortio, k6, vegeta) accept it. That is
//! the self-signed certificate `openssl req -x509` makes, which is marked `CA:TRUE` (webpki:
//! `CaUsedAsEndEntity`), or a leaf given without its issuer (`UnknownIssuer`). Only those two
//! refusals are overridden, and only after the name (or IP) checks out; the handshake signature
//! is checked by webpki's verifier as always, and an expired or not-yet-valid certificate stays
//! refused (webpki checks the dates before the chain, so an override never skips them).

use std::sync::Arc;

use rustls::client::WebPkiServerVerifier;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::server::ParsedCertificate;
use rustls::{CertificateError, ClientConfig, DigitallySignedStruct, SignatureScheme};

/// Errors reading a CA bundle.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The file could not be read or holds no PEM certificate.
    #[error("--cacert {path}: {problem}")]
    CaBundle {
        /// The file.
        path: String,
        /// What is wrong.
        problem: String,
    },
}

/// Reads the PEM certificates of a CA bundle (`--cacert FILE`).
pub fn read_ca_bundle(path: &std::path::Path) -> Result<Vec<CertificateDer<'static>>, Error> {
    use rustls::pki_types::pem::PemObject;
    let bad = |problem: String| Error::CaBundle {
        path: path.display().to_string(),
        problem,
    };
    let bytes = std::fs::read(path).map_err(|e| bad(e.to_string()))?;
    let certs = CertificateDer::pem_slice_iter(&bytes)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| bad(format!("not a PEM certificate bundle ({e})")))?;
    if certs.is_empty() {
        return Err(bad("holds no PEM certificate".to_string()));
    }
    Ok(certs)
}

/// Builds the client TLS configuration, trusting the webpki roots and `extra_roots`. `http2`
/// selects the ALPN offer (`h2` or `http/1.1`).
pub fn client_config(
    insecure: bool,
    http2: bool,
    extra_roots: &[CertificateDer<'static>],
) -> Arc<ClientConfig> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        // The ring provider supports the default protocol versions; this cannot fail.
        .unwrap_or_else(|_| unreachable!("ring supports TLS 1.2 and 1.3"));
    let verifier: Arc<dyn ServerCertVerifier> = if insecure {
        Arc::new(AcceptAnyCert(provider))
    } else {
        verifier(provider, extra_roots)
    };
    let mut config = builder
        .dangerous()
        .with_custom_certificate_verifier(verifier)
        .with_no_client_auth();
    config.alpn_protocols = if http2 {
        vec![b"h2".to_vec()]
    } else {
        vec![b"http/1.1".to_vec()]
    };
    Arc::new(config)
}

/// Webpki's verification against its roots and `extra_roots`, which are also pinned (see the
/// module doc).
fn verifier(
    provider: Arc<rustls::crypto::CryptoProvider>,
    extra_roots: &[CertificateDer<'static>],
) -> Arc<dyn ServerCertVerifier> {
    let mut roots = rustls::RootCertStore {
        roots: webpki_roots::TLS_SERVER_ROOTS.to_vec(),
    };
    // A certificate the store rejects (not a CA) adds no trust as a CA; it is still pinned.
    let _ = roots.add_parsable_certificates(extra_roots.iter().cloned());
    // The builder fails only without roots, and the webpki roots are never empty.
    let webpki = WebPkiServerVerifier::builder_with_provider(Arc::new(roots), provider)
        .build()
        .unwrap_or_else(|e| unreachable!("webpki roots are never empty: {e}"));
    if extra_roots.is_empty() {
        webpki
    } else {
        Arc::new(Pinned {
            webpki,
            pinned: extra_roots.to_vec(),
        })
    }
}

/// `--cacert`: webpki's verification, and the bundle's own certificates accepted as themselves
/// (see the module doc).
#[derive(Debug)]
struct Pinned {
    webpki: Arc<WebPkiServerVerifier>,
    pinned: Vec<CertificateDer<'static>>,
}

impl ServerCertVerifier for Pinned {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let refused = match self.webpki.verify_server_cert(
            end_entity,
            intermediates,
            server_name,
            ocsp_response,
            now,
        ) {
            Ok(verified) => return Ok(verified),
            Err(refused) => refused,
        };
        // `Other` is how rustls passes on webpki's `CaUsedAsEndEntity`.
        let about_the_chain = matches!(
            refused,
            rustls::Error::InvalidCertificate(
                CertificateError::UnknownIssuer | CertificateError::Other(_)
            )
        );
        if !about_the_chain
            || !self
                .pinned
                .iter()
                .any(|p| p.as_ref() == end_entity.as_ref())
        {
            return Err(refused);
        }
        let cert = ParsedCertificate::try_from(end_entity)?;
        rustls::client::verify_server_name(&cert, server_name)?;
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.webpki.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.webpki.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.webpki.supported_verify_schemes()
    }
}

/// `--insecure`: accepts any certificate, but still checks handshake signatures.
#[derive(Debug)]
struct AcceptAnyCert(Arc<rustls::crypto::CryptoProvider>);

impl ServerCertVerifier for AcceptAnyCert {
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
        rustls::crypto::verify_tls12_signature(
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
        rustls::crypto::verify_tls13_signature(
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

#[cfg(test)]
mod tests {
    use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, KeyPair};

    use super::*;

    /// A self-signed certificate for `localhost`, marked `CA:TRUE` as `openssl req -x509`
    /// marks it; `expired` puts its dates in the past.
    fn self_signed_ca(expired: bool) -> CertificateDer<'static> {
        let mut params = params("localhost");
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        if expired {
            params.not_before = rcgen::date_time_ymd(2000, 1, 1);
            params.not_after = rcgen::date_time_ymd(2001, 1, 1);
        }
        let key = KeyPair::generate().unwrap();
        params.self_signed(&key).unwrap().der().clone()
    }

    /// Parameters for a certificate for `name`, with a subject of its own (rcgen's default
    /// subject is the same for every certificate).
    fn params(name: &str) -> CertificateParams {
        let mut params = CertificateParams::new(vec![name.to_string()]).unwrap();
        static SERIAL: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        let serial = SERIAL.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        params
            .distinguished_name
            .push(DnType::CommonName, format!("{name} {serial}"));
        params
    }

    /// A `localhost` leaf signed by a CA that is not in any bundle.
    fn orphan_leaf() -> CertificateDer<'static> {
        let mut ca = params("test CA");
        ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        let ca_key = KeyPair::generate().unwrap();
        let ca = ca.self_signed(&ca_key).unwrap();
        let leaf = params("localhost");
        let key = KeyPair::generate().unwrap();
        leaf.signed_by(&key, &ca, &ca_key).unwrap().der().clone()
    }

    /// The certificate verification `--cacert BUNDLE` gets.
    fn verifier(bundle: &[CertificateDer<'static>]) -> Arc<dyn ServerCertVerifier> {
        super::verifier(Arc::new(rustls::crypto::ring::default_provider()), bundle)
    }

    fn verify(
        verifier: &dyn ServerCertVerifier,
        cert: &CertificateDer<'_>,
        name: &str,
    ) -> Result<(), rustls::Error> {
        let name = ServerName::try_from(name.to_string()).unwrap();
        verifier
            .verify_server_cert(cert, &[], &name, &[], UnixTime::now())
            .map(|_| ())
    }

    #[test]
    fn a_bundled_certificate_is_trusted_as_itself_for_its_names_only() {
        for cert in [self_signed_ca(false), orphan_leaf()] {
            let pinned = verifier(std::slice::from_ref(&cert));
            assert_eq!(verify(&*pinned, &cert, "localhost"), Ok(()));
            for wrong in ["example.com", "127.0.0.1"] {
                let refused = verify(&*pinned, &cert, wrong).unwrap_err();
                assert!(
                    matches!(
                        refused,
                        rustls::Error::InvalidCertificate(
                            CertificateError::NotValidForNameContext { .. }
                        )
                    ),
                    "{wrong}: {refused}"
                );
            }
        }
    }

    #[test]
    fn a_certificate_outside_the_bundle_is_refused_as_before() {
        for served in [self_signed_ca(false), orphan_leaf()] {
            for bundle in [&[self_signed_ca(false)][..], &[]] {
                let refused = verify(&*verifier(bundle), &served, "localhost");
                assert!(
                    matches!(
                        refused,
                        Err(rustls::Error::InvalidCertificate(
                            CertificateError::UnknownIssuer | CertificateError::Other(_)
                        ))
                    ),
                    "{refused:?}"
                );
            }
        }
    }

    #[test]
    fn an_expired_bundled_certificate_stays_refused() {
        let cert = self_signed_ca(true);
        let refused = verify(&*verifier(std::slice::from_ref(&cert)), &cert, "localhost");
        assert!(
            matches!(
                refused,
                Err(rustls::Error::InvalidCertificate(
                    CertificateError::ExpiredContext { .. }
                ))
            ),
            "{refused:?}"
        );
    }
}
