//! `upstream.tls:` -> the rustls client configs: roots (a CA file, or the
//! system's), an optional client certificate, the name checked, ALPN.
//! Files are read here, at load, so a reload picks up rotated ones.

use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{CryptoProvider, verify_tls12_signature, verify_tls13_signature};
use rustls::{ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};

use crate::config::file::{Located, RawTls};
use crate::config::yaml::Problems;
use crate::config::{HttpVersion, UpstreamTls};

/// What `upstream.tls` and the URL's `host` say about TLS to the app.
pub(super) struct TlsInput<'a> {
    pub raw: Option<&'a Located<RawTls>>,
    pub host: &'a str,
    pub version: HttpVersion,
}

/// The TLS settings of an `https://` upstream; `None` after recording why
/// they cannot be used. `warnings` gets the loud one about
/// `insecure_skip_verify`.
pub(super) fn upstream_tls(
    input: &TlsInput<'_>,
    p: &mut Problems,
    warnings: &mut Vec<String>,
) -> Option<UpstreamTls> {
    let empty = Located {
        value: RawTls::default(),
        loc: Default::default(),
    };
    let raw = input.raw.unwrap_or(&empty);
    let tls = &raw.value;
    let mut digest = blake3::Hasher::new();
    let roots = roots(tls.ca_file.as_ref(), &mut digest, p);
    let client = client_cert(tls, raw, &mut digest, p);
    let name = tls.server_name.as_ref().map_or(input.host, |n| &n.value);
    let name = name.trim_start_matches('[').trim_end_matches(']');
    let server_name = match ServerName::try_from(name.to_owned()) {
        Ok(n) => Some(n),
        Err(_) => {
            let loc = tls.server_name.as_ref().map(|n| n.loc);
            let message = format!("`{name}` is not a DNS name or an IP address");
            p.at_loc(loc, "upstream.tls.server_name", message);
            None
        }
    };
    let insecure = tls.insecure_skip_verify.as_ref().is_some_and(|v| v.value);
    if insecure {
        warnings.push(
            "upstream.tls.insecure_skip_verify is true: the app's certificate is NOT checked, so \
             anyone on the path can read and change the traffic; use it only in tests"
                .to_owned(),
        );
    }
    digest.update(name.as_bytes());
    digest.update(&[u8::from(insecure), input.version as u8]);
    let (roots, client, server_name) = (roots?, client?, server_name?);
    match configs(&roots, client.as_ref(), insecure, input.version) {
        Ok((config, http1)) => Some(UpstreamTls {
            config,
            http1,
            server_name,
            fingerprint: *digest.finalize().as_bytes(),
        }),
        Err(e) => {
            p.at_loc(Some(raw.loc), "upstream.tls", e.to_string());
            None
        }
    }
}

/// The client configs: one offering what `version` allows in ALPN, and
/// one offering HTTP/1.1 only (for `Upgrade` handshakes).
fn configs(
    roots: &RootCertStore,
    client: Option<&(Vec<CertificateDer<'static>>, Arc<PrivateKeyDer<'static>>)>,
    insecure: bool,
    version: HttpVersion,
) -> Result<(Arc<ClientConfig>, Arc<ClientConfig>), rustls::Error> {
    let build = |alpn: &[&[u8]]| {
        let mut config = base(roots.clone(), client.cloned(), insecure)?;
        config.alpn_protocols = alpn.iter().map(|a| a.to_vec()).collect();
        Ok::<_, rustls::Error>(Arc::new(config))
    };
    let offered: &[&[u8]] = match version {
        HttpVersion::Auto => &[b"h2", b"http/1.1"],
        HttpVersion::Http1 => &[b"http/1.1"],
        HttpVersion::Http2 => &[b"h2"],
    };
    Ok((build(offered)?, build(&[b"http/1.1"])?))
}

/// A client config trusting `roots` (or anything, when `insecure`), with
/// the client certificate if there is one.
fn base(
    roots: RootCertStore,
    client: Option<(Vec<CertificateDer<'static>>, Arc<PrivateKeyDer<'static>>)>,
    insecure: bool,
) -> Result<ClientConfig, rustls::Error> {
    let provider = Arc::new(provider());
    let builder = ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()?
        .with_root_certificates(roots);
    let mut config = match client {
        Some((chain, key)) => builder.with_client_auth_cert(chain, key.clone_key())?,
        None => builder.with_no_client_auth(),
    };
    if insecure {
        config
            .dangerous()
            .set_certificate_verifier(Arc::new(AnyCertificate(provider)));
    }
    Ok(config)
}

/// The crypto of every TLS connection cachecar makes: *ring*'s, which
/// builds with a C compiler alone (aws-lc-rs, rustls' default, also
/// needs CMake in some builds). rustls marks it deprecated because it has
/// no post-quantum key exchange; connections to an app in the same pod or
/// cluster are not where that matters first.
#[allow(deprecated)]
pub(crate) fn provider() -> CryptoProvider {
    rustls::crypto::ring::default_provider()
}

/// The CAs of `ca_file`, or the system's.
fn roots(
    ca_file: Option<&Located<String>>,
    digest: &mut blake3::Hasher,
    p: &mut Problems,
) -> Option<RootCertStore> {
    let mut roots = RootCertStore::empty();
    let Some(file) = ca_file else {
        let found = rustls_native_certs::load_native_certs();
        let (added, _) = roots.add_parsable_certificates(found.certs);
        if added == 0 {
            p.at_loc(
                None,
                "upstream.tls.ca_file",
                "no system CA certificates were found: set the CA file the app's certificate is signed by",
            );
            return None;
        }
        return Some(roots);
    };
    let certs = pem_certs(file, "upstream.tls.ca_file", digest, p)?;
    let (added, _) = roots.add_parsable_certificates(certs);
    if added == 0 {
        let message = format!("`{}` holds no usable CA certificate", file.value);
        p.at_loc(Some(file.loc), "upstream.tls.ca_file", message);
        return None;
    }
    Some(roots)
}

/// A client chain and key: `Some(None)` when neither file is set.
type ClientCert = Option<(Vec<CertificateDer<'static>>, Arc<PrivateKeyDer<'static>>)>;

/// `cert_file` and `key_file`, both or neither.
fn client_cert(
    tls: &RawTls,
    raw: &Located<RawTls>,
    digest: &mut blake3::Hasher,
    p: &mut Problems,
) -> Option<ClientCert> {
    let (cert, key) = match (&tls.cert_file, &tls.key_file) {
        (None, None) => return Some(None),
        (Some(cert), Some(key)) => (cert, key),
        _ => {
            let message =
                "`cert_file` and `key_file` go together: the client certificate and its key";
            p.at_loc(Some(raw.loc), "upstream.tls", message);
            return None;
        }
    };
    let chain = pem_certs(cert, "upstream.tls.cert_file", digest, p);
    let read = std::fs::read(&key.value).map_err(|e| e.to_string());
    let parsed = read.and_then(|bytes| {
        digest.update(&bytes);
        PrivateKeyDer::from_pem_slice(&bytes).map_err(|e| format!("holds no private key ({e})"))
    });
    let key = match parsed {
        Ok(k) => k,
        Err(e) => {
            let message = format!("`{}`: {e}", key.value);
            p.at_loc(Some(key.loc), "upstream.tls.key_file", message);
            return None;
        }
    };
    Some(Some((chain?, Arc::new(key))))
}

/// The certificates of the PEM file `file`.
fn pem_certs(
    file: &Located<String>,
    path: &str,
    digest: &mut blake3::Hasher,
    p: &mut Problems,
) -> Option<Vec<CertificateDer<'static>>> {
    let certs = std::fs::read(&file.value)
        .map_err(|e| e.to_string())
        .and_then(|bytes| {
            digest.update(&bytes);
            CertificateDer::pem_slice_iter(&bytes)
                .collect::<Result<Vec<_>, _>>()
                .map_err(|e| format!("is not PEM certificates ({e})"))
        });
    match certs {
        Ok(certs) if !certs.is_empty() => Some(certs),
        Ok(_) => {
            let message = format!("`{}` holds no certificate", file.value);
            p.at_loc(Some(file.loc), path, message);
            None
        }
        Err(e) => {
            p.at_loc(Some(file.loc), path, format!("`{}`: {e}", file.value));
            None
        }
    }
}

/// `insecure_skip_verify`: any certificate, any name. Signatures are still
/// checked, so the handshake itself is sound.
#[derive(Debug)]
struct AnyCertificate(Arc<CryptoProvider>);

impl ServerCertVerifier for AnyCertificate {
    fn verify_server_cert(
        &self,
        _: &CertificateDer<'_>,
        _: &[CertificateDer<'_>],
        _: &ServerName<'_>,
        _: &[u8],
        _: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        let algorithms = &self.0.signature_verification_algorithms;
        verify_tls12_signature(message, cert, dss, algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        let algorithms = &self.0.signature_verification_algorithms;
        verify_tls13_signature(message, cert, dss, algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}
