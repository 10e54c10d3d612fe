//! TLS to etcd: the PEM files `[cluster]` names, read and checked once at start, so that a
//! missing or malformed file stops the monitor with one sentence instead of surfacing as an
//! opaque handshake error at every reconnect. Only a CA given in `ca_file` is trusted: no
//! system roots (an etcd cluster's certificates come from its own CA).

use anyhow::{Context, bail};
use etcd_client::{Certificate, Identity, TlsOptions};
use rustls_pki_types::pem::{self, PemObject};
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use std::path::Path;

/// The certificates and key for `https://` endpoints, as PEM text read at start.
#[derive(Clone)]
pub struct TlsFiles {
    /// The CA certificate(s) that etcd's server certificate must chain to.
    pub ca: Vec<u8>,
    /// This monitor's client certificate (chain) and private key, for an etcd started with
    /// `--client-cert-auth`.
    pub identity: Option<(Vec<u8>, Vec<u8>)>,
}

/// Never prints the private key (settings are logged with `{:?}` in places).
impl std::fmt::Debug for TlsFiles {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TlsFiles")
            .field("ca_bytes", &self.ca.len())
            .field("client_certificate", &self.identity.is_some())
            .finish()
    }
}

impl TlsFiles {
    /// The options for etcd-client, built from the text read at start (no file access).
    pub fn options(&self) -> TlsOptions {
        let options = TlsOptions::new().ca_certificate(Certificate::from_pem(&self.ca));
        match &self.identity {
            Some((cert, key)) => options.identity(Identity::from_pem(cert, key)),
            None => options,
        }
    }
}

/// Checks the TLS settings of `[cluster]` against the endpoints' scheme and reads the files.
/// `https` says whether the endpoints are `https://` (the caller refuses a mix).
pub fn load(
    https: bool,
    ca_file: Option<&Path>,
    cert_file: Option<&Path>,
    key_file: Option<&Path>,
) -> anyhow::Result<Option<TlsFiles>> {
    let identity = match (cert_file, key_file) {
        (Some(cert), Some(key)) => Some((cert, key)),
        (None, None) => None,
        _ => bail!("cluster.cert_file and cluster.key_file go together: set both or neither"),
    };
    if !https {
        if ca_file.is_some() || identity.is_some() {
            bail!(
                "cluster.ca_file, cert_file and key_file are for https:// endpoints, but cluster.etcd lists http:// ones: use https:// or remove them"
            );
        }
        return Ok(None);
    }
    let Some(ca_file) = ca_file else {
        bail!(
            "cluster.etcd uses https:// but cluster.ca_file is missing: name the PEM file of the CA that signed etcd's certificate"
        );
    };
    let ca = certificates("cluster.ca_file", ca_file)?;
    let identity = match identity {
        Some((cert, key)) => Some((certificates("cluster.cert_file", cert)?, private_key(key)?)),
        None => None,
    };
    Ok(Some(TlsFiles { ca, identity }))
}

fn read(setting: &str, path: &Path) -> anyhow::Result<Vec<u8>> {
    std::fs::read(path).with_context(|| format!("{setting}: cannot read {}", path.display()))
}

/// A file holding at least one PEM certificate, and nothing malformed.
fn certificates(setting: &str, path: &Path) -> anyhow::Result<Vec<u8>> {
    let text = read(setting, path)?;
    let mut count = 0;
    for certificate in CertificateDer::pem_slice_iter(&text) {
        if let Err(error) = certificate {
            bail!("{setting}: {} is not valid PEM ({error})", path.display());
        }
        count += 1;
    }
    if count == 0 {
        bail!("{setting}: {} holds no PEM certificate (-----BEGIN CERTIFICATE-----)", path.display());
    }
    Ok(text)
}

/// A file holding a PEM private key (PKCS #8, RSA or EC).
fn private_key(path: &Path) -> anyhow::Result<Vec<u8>> {
    let text = read("cluster.key_file", path)?;
    match PrivateKeyDer::from_pem_slice(&text) {
        Ok(_) => Ok(text),
        Err(pem::Error::NoItemsFound) => bail!(
            "cluster.key_file: {} holds no PEM private key (-----BEGIN PRIVATE KEY-----, RSA or EC)",
            path.display()
        ),
        Err(error) => bail!("cluster.key_file: {} is not valid PEM ({error})", path.display()),
    }
}
