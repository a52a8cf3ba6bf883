//! The server's certificate and key, re-read when their files change, so that a renewed
//! certificate (cert-manager rewriting a Secret, a cron job running certbot) is served
//! without a restart. The files are looked at during a handshake, at most once a second (two
//! `stat`s); a pair that does not load (a key written before its certificate, say) is not
//! taken: the previous pair keeps being served, said once per change at WARN, and the next
//! look tries again.
use std::{
    path::{Path, PathBuf},
    sync::{Arc, Mutex},
    time::{Duration, Instant, SystemTime},
};

use anyhow::anyhow;
use log::{info, warn};
use rustls::{
    crypto::CryptoProvider,
    server::{ClientHello, ResolvesServerCert},
    sign::CertifiedKey,
};
use rustls_pki_types::{CertificateDer, PrivateKeyDer, pem::PemObject as _};

/// How often the files are looked at, at most.
const LOOK_EVERY: Duration = Duration::from_secs(1);

/// PEM bytes, and how to name where they came from in an error.
pub struct Pem {
    pub bytes: Vec<u8>,
    pub field: String,
    pub place: String,
}

/// The certificate chain and key of `cert` and `key`, checked to belong together.
pub fn certified_key(
    cert: &Pem,
    key: &Pem,
    provider: &CryptoProvider,
) -> anyhow::Result<CertifiedKey> {
    let certs = CertificateDer::pem_slice_iter(&cert.bytes)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|err| {
            anyhow!(
                "tls_server_config.{}: {} is not PEM: {err}",
                cert.field,
                cert.place
            )
        })?;
    if certs.is_empty() {
        return Err(anyhow!(
            "tls_server_config.{}: no certificate in {}",
            cert.field,
            cert.place
        ));
    }
    let private_key = PrivateKeyDer::from_pem_slice(&key.bytes).map_err(|err| {
        anyhow!(
            "tls_server_config.{}: no private key in {} ({err})",
            key.field,
            key.place
        )
    })?;
    CertifiedKey::from_der(certs, private_key, provider).map_err(|err| {
        anyhow!(
            "tls_server_config: {} and {} do not make a usable certificate: {err}",
            cert.place,
            key.place
        )
    })
}

/// Reads `path` as the PEM of `field`.
pub fn read_pem(field: &str, path: &Path) -> anyhow::Result<Pem> {
    let bytes = std::fs::read(path).map_err(|err| {
        anyhow!(
            "tls_server_config.{field}_file: cannot read {}: {err}",
            path.display()
        )
    })?;
    Ok(Pem {
        bytes,
        field: format!("{field}_file"),
        place: path.display().to_string(),
    })
}

#[derive(Debug)]
pub struct Certificate {
    /// The files to watch; `None` for an inline certificate, which cannot change.
    files: Option<(PathBuf, PathBuf)>,
    provider: Arc<CryptoProvider>,
    served: Mutex<Served>,
}

#[derive(Debug)]
struct Served {
    key: Arc<CertifiedKey>,
    /// The files' modification times when `key` was loaded.
    stamp: Option<(SystemTime, SystemTime)>,
    /// The modification times of a pair that failed to load (said once).
    refused: Option<(SystemTime, SystemTime)>,
    looked: Instant,
}

fn stamp(cert: &Path, key: &Path) -> Option<(SystemTime, SystemTime)> {
    let modified = |path: &Path| {
        std::fs::metadata(path)
            .and_then(|meta| meta.modified())
            .ok()
    };
    Some((modified(cert)?, modified(key)?))
}

impl Certificate {
    pub fn new(
        key: CertifiedKey,
        files: Option<(PathBuf, PathBuf)>,
        provider: Arc<CryptoProvider>,
    ) -> Self {
        let stamp = files.as_ref().and_then(|(cert, key)| stamp(cert, key));
        Self {
            files,
            provider,
            served: Mutex::new(Served {
                key: Arc::new(key),
                stamp,
                refused: None,
                looked: Instant::now(),
            }),
        }
    }

    /// The pair to serve now, re-read first if the files changed since the last look.
    fn current(&self) -> Arc<CertifiedKey> {
        let mut served = self
            .served
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        let Some((cert_path, key_path)) = &self.files else {
            return Arc::clone(&served.key);
        };
        if served.looked.elapsed() < LOOK_EVERY {
            return Arc::clone(&served.key);
        }
        served.looked = Instant::now();
        let now = stamp(cert_path, key_path);
        if now.is_none() || now == served.stamp || now == served.refused {
            return Arc::clone(&served.key);
        }
        let loaded = read_pem("cert", cert_path)
            .and_then(|cert| Ok((cert, read_pem("key", key_path)?)))
            .and_then(|(cert, key)| certified_key(&cert, &key, &self.provider));
        match loaded {
            Ok(key) => {
                info!(
                    "TLS certificate reloaded from {} and {}",
                    cert_path.display(),
                    key_path.display()
                );
                served.key = Arc::new(key);
                served.stamp = now;
                served.refused = None;
            }
            Err(err) => {
                warn!("{err:#}; still serving the previous certificate");
                served.refused = now;
            }
        }
        Arc::clone(&served.key)
    }
}

impl ResolvesServerCert for Certificate {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.current())
    }
}
