//! `--web.config.file`: TLS, basic-auth users and response headers, in the file format the
//! Prometheus exporters share (exporter-toolkit's "web configuration"). The whole file is read,
//! checked and turned into ready-to-use settings at start-up, before any probe is loaded, so a
//! mistake costs one line on stderr and nothing else. Unknown fields are errors; fields of the
//! format that this agent cannot honour are errors too, never silently ignored.
use std::{
    collections::{BTreeMap, HashMap},
    path::{Path, PathBuf},
    sync::{Arc, Mutex},
};

use anyhow::{Context as _, anyhow, bail};
use base64::Engine as _;
use hyper::header::{HeaderName, HeaderValue};
use rustls::{
    NamedGroup, RootCertStore, ServerConfig, SupportedProtocolVersion,
    crypto::CryptoProvider,
    server::{VerifierBuilderError, WebPkiClientVerifier},
};
use rustls_pki_types::{CertificateDer, pem::PemObject as _};
use serde::{Deserialize, Deserializer, de::Error as _};

/// What the file asks for, checked and ready to serve with.
pub struct WebConfig {
    /// `None`: plain HTTP.
    pub tls: Option<Arc<ServerConfig>>,
    /// `None`: no authentication.
    pub auth: Option<Arc<BasicAuth>>,
    /// Added to every response.
    pub headers: Vec<(HeaderName, HeaderValue)>,
}

impl WebConfig {
    /// No file: plain HTTP, no authentication, no extra headers.
    pub fn none() -> WebConfig {
        WebConfig {
            tls: None,
            auth: None,
            headers: Vec::new(),
        }
    }

    /// Reads and checks the file; every error names the file and, where it can, the field and
    /// the line. Relative paths in it are relative to the file's own directory.
    pub fn load(path: &Path) -> anyhow::Result<WebConfig> {
        let text = std::fs::read_to_string(path).with_context(|| {
            format!(
                "web config {}: cannot read it (--web.config.file)",
                path.display()
            )
        })?;
        let dir = path.parent().unwrap_or(Path::new(""));
        WebConfig::parse(&text, dir).with_context(|| format!("web config {}", path.display()))
    }

    pub fn parse(text: &str, dir: &Path) -> anyhow::Result<WebConfig> {
        // An empty file (or only comments) is a YAML null: nothing configured.
        let raw: Option<RawFile> =
            serde_norway::from_str(text).map_err(|err| yaml_error(text, &err))?;
        let raw = raw.unwrap_or_default();
        let tls = raw
            .tls_server_config
            .map(|tls| tls.build(dir))
            .transpose()?
            .map(Arc::new);
        let users = raw.basic_auth_users.unwrap_or_default();
        let auth = (!users.is_empty()).then(|| Arc::new(BasicAuth::new(users)));
        let headers = raw
            .http_server_config
            .and_then(|http| http.headers)
            .map(RawHeaders::build)
            .transpose()?
            .unwrap_or_default();
        Ok(WebConfig { tls, auth, headers })
    }
}

/// The error as the operator needs it: where first (`line L column C:`), then the field,
/// then what is wrong and how to fix it.
///
/// serde_norway places an error at the start of the mapping that holds the bad key, and at
/// the top level nowhere at all; when the message names a key (`unknown field `x``, or the
/// first `backticked` word of our own messages), point at that key's line instead. An error in
/// a map's value (a user's password hash) is placed on that entry: its key is named too.
fn yaml_error(text: &str, err: &serde_norway::Error) -> anyhow::Error {
    let mut message = err.to_string();
    let mut located = None;
    if let Some(location) = err.location() {
        let suffix = format!(" at line {} column {}", location.line(), location.column());
        if let Some(stripped) = message.strip_suffix(&suffix) {
            message = stripped.to_owned();
            located = Some((location.line(), location.column()));
        }
    }
    let from_line = located.map_or(0, |(line, _)| line.saturating_sub(1));
    let key = message.split('`').nth(1).filter(|key| !key.is_empty());
    let key_line = key.and_then(|key| {
        text.lines()
            .enumerate()
            .skip(from_line)
            .find_map(|(index, line)| {
                let line = line.trim_start().trim_start_matches("- ");
                [
                    format!("{key}:"),
                    format!("'{key}':"),
                    format!("\"{key}\":"),
                ]
                .iter()
                .any(|prefix| line.starts_with(prefix.as_str()))
                .then_some(index + 1)
            })
    });
    if let Some(line) = key_line {
        return anyhow!("line {line}: {message}");
    }
    let Some((line, column)) = located else {
        return anyhow!("{message}");
    };
    anyhow!(
        "line {line} column {column}: {}",
        name_entry(text, line, &message)
    )
}

/// `path: what` → `path.key: what` when the error sits on a `key: value` line under `path`
/// (serde names the map, not the entry: `basic_auth_users`, not the user).
fn name_entry(text: &str, line: usize, message: &str) -> String {
    let entry_key = text
        .lines()
        .nth(line.saturating_sub(1))
        .and_then(|line| line.trim_start().split_once(':'))
        .map(|(key, _)| key.trim().trim_matches(|c| c == '\'' || c == '"'))
        .filter(|key| !key.is_empty() && !key.contains(' '));
    match (entry_key, message.split_once(": ")) {
        (Some(key), Some((path, what)))
            if !path.contains(' ') && path.rsplit('.').next() != Some(key) =>
        {
            format!("{path}.{key}: {what}")
        }
        _ => message.to_owned(),
    }
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawFile {
    tls_server_config: Option<RawTls>,
    http_server_config: Option<RawHttp>,
    basic_auth_users: Option<BTreeMap<UserName, BcryptHash>>,
    #[allow(dead_code)] // never set: present, it is an error
    #[serde(default, deserialize_with = "unsupported_rate_limit")]
    rate_limit: Option<()>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawTls {
    cert: Option<String>,
    key: Option<String>,
    client_ca: Option<String>,
    cert_file: Option<PathBuf>,
    key_file: Option<PathBuf>,
    client_ca_file: Option<PathBuf>,
    client_auth_type: Option<ClientAuth>,
    min_version: Option<TlsVersion>,
    max_version: Option<TlsVersion>,
    cipher_suites: Option<Vec<String>>,
    prefer_server_cipher_suites: Option<bool>,
    curve_preferences: Option<Vec<String>>,
    #[allow(dead_code)] // never set: present, it is an error
    #[serde(default, deserialize_with = "unsupported_allowed_sans")]
    client_allowed_sans: Option<()>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawHttp {
    /// Accepted for compatibility; the agent speaks HTTP/1.1 only.
    #[allow(dead_code)]
    http2: Option<bool>,
    headers: Option<RawHeaders>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawHeaders {
    #[serde(rename = "Content-Security-Policy")]
    content_security_policy: Option<String>,
    #[serde(rename = "X-Frame-Options")]
    x_frame_options: Option<String>,
    #[serde(rename = "X-Content-Type-Options")]
    x_content_type_options: Option<String>,
    #[serde(rename = "X-XSS-Protection")]
    x_xss_protection: Option<String>,
    #[serde(rename = "Strict-Transport-Security")]
    strict_transport_security: Option<String>,
}

fn unsupported_rate_limit<'de, D: Deserializer<'de>>(_: D) -> Result<Option<()>, D::Error> {
    Err(D::Error::custom(
        "`rate_limit` is not supported by monitor-agent: use --web.max-requests",
    ))
}

fn unsupported_allowed_sans<'de, D: Deserializer<'de>>(_: D) -> Result<Option<()>, D::Error> {
    Err(D::Error::custom(
        "`client_allowed_sans` is not supported by monitor-agent",
    ))
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum TlsVersion {
    Tls12,
    Tls13,
}

impl<'de> Deserialize<'de> for TlsVersion {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        match String::deserialize(deserializer)?.as_str() {
            "TLS12" => Ok(TlsVersion::Tls12),
            "TLS13" => Ok(TlsVersion::Tls13),
            old @ ("TLS10" | "TLS11") => Err(D::Error::custom(format!(
                "`{old}` is not supported: monitor-agent speaks TLS12 and TLS13"
            ))),
            other => Err(D::Error::custom(format!(
                "`{other}` is not a TLS version: use TLS12 or TLS13"
            ))),
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum ClientAuth {
    None,
    VerifyIfGiven,
    RequireAndVerify,
}

impl<'de> Deserialize<'de> for ClientAuth {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        match String::deserialize(deserializer)?.as_str() {
            "" | "NoClientCert" => Ok(ClientAuth::None),
            "VerifyClientCertIfGiven" => Ok(ClientAuth::VerifyIfGiven),
            "RequireAndVerifyClientCert" => Ok(ClientAuth::RequireAndVerify),
            unverified @ ("RequestClientCert" | "RequireAnyClientCert") => {
                Err(D::Error::custom(format!(
                    "`{unverified}` accepts client certificates without verifying them and is not \
                 supported: use RequireAndVerifyClientCert"
                )))
            }
            other => Err(D::Error::custom(format!(
                "`{other}` is not a client_auth_type: use NoClientCert, VerifyClientCertIfGiven \
                 or RequireAndVerifyClientCert"
            ))),
        }
    }
}

/// A user name that basic auth can carry: not empty, no `:`.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
struct UserName(String);

impl<'de> Deserialize<'de> for UserName {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let name = String::deserialize(deserializer)?;
        if name.is_empty() || name.contains(':') || name.chars().any(char::is_control) {
            return Err(D::Error::custom(format!(
                "`{name}` cannot be a user name (empty, or has `:` or a control character)"
            )));
        }
        Ok(UserName(name))
    }
}

/// A well-formed bcrypt hash (`$2a$`, `$2b$`, `$2x$` or `$2y$`, cost 4 to 31).
#[derive(Clone, Debug)]
struct BcryptHash(String);

impl<'de> Deserialize<'de> for BcryptHash {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let hash = String::deserialize(deserializer)?;
        let parts: bcrypt::HashParts = hash.parse().map_err(|err| {
            D::Error::custom(format!(
                "not a bcrypt hash ({err}); make one with: htpasswd -nBC 10 \"\" | tr -d ':\\n'"
            ))
        })?;
        if !(4..=31).contains(&parts.get_cost()) {
            return Err(D::Error::custom(format!(
                "bcrypt cost {} out of range 4..=31",
                parts.get_cost()
            )));
        }
        Ok(BcryptHash(hash))
    }
}

impl RawTls {
    fn build(self, dir: &Path) -> anyhow::Result<ServerConfig> {
        // Files are watched for renewals; an inline certificate cannot change.
        let files = self
            .cert_file
            .as_ref()
            .zip(self.key_file.as_ref())
            .map(|(cert, key)| (dir.join(cert), dir.join(key)));
        let cert = pem_source("cert", self.cert, self.cert_file, dir)?
            .ok_or_else(|| anyhow!("tls_server_config: cert_file (or cert) is required"))?;
        let key = pem_source("key", self.key, self.key_file, dir)?
            .ok_or_else(|| anyhow!("tls_server_config: key_file (or key) is required"))?;
        let client_ca = pem_source("client_ca", self.client_ca, self.client_ca_file, dir)?;

        let mut provider = rustls::crypto::ring::default_provider();
        if let Some(names) = &self.cipher_suites {
            provider.cipher_suites = cipher_suites(&provider, names)?;
        }
        if let Some(names) = &self.curve_preferences {
            provider.kx_groups = curves(&provider, names)?;
        }
        let provider = Arc::new(provider);
        let certified = certificate::certified_key(&cert, &key, &provider)?;

        let min = self.min_version.unwrap_or(TlsVersion::Tls12);
        let max = self.max_version.unwrap_or(TlsVersion::Tls13);
        if min > max {
            bail!("tls_server_config: min_version is above max_version");
        }
        let versions: Vec<&'static SupportedProtocolVersion> = [
            (TlsVersion::Tls12, &rustls::version::TLS12),
            (TlsVersion::Tls13, &rustls::version::TLS13),
        ]
        .into_iter()
        .filter(|(version, _)| (min..=max).contains(version))
        .map(|(_, supported)| supported)
        .collect();
        let builder = ServerConfig::builder_with_provider(Arc::clone(&provider))
            .with_protocol_versions(&versions)
            .map_err(|err| anyhow!("tls_server_config: {err}"))?;

        let client_auth = self.client_auth_type.unwrap_or(ClientAuth::None);
        let builder = match (client_auth, client_ca) {
            (ClientAuth::None, None) => builder.with_no_client_auth(),
            (ClientAuth::None, Some(_)) => bail!(
                "tls_server_config: client_ca_file is set but client_auth_type is not: \
                 set client_auth_type: RequireAndVerifyClientCert"
            ),
            (_, None) => {
                bail!("tls_server_config: client_auth_type needs client_ca_file (or client_ca)")
            }
            (mode, Some(ca)) => {
                let mut roots = RootCertStore::empty();
                for der in CertificateDer::pem_slice_iter(&ca.bytes) {
                    let der = der.map_err(|err| {
                        anyhow!(
                            "tls_server_config.{}: {} is not PEM: {err}",
                            ca.field,
                            ca.place
                        )
                    })?;
                    roots.add(der).map_err(|err| {
                        anyhow!(
                            "tls_server_config.{}: bad CA certificate in {}: {err}",
                            ca.field,
                            ca.place
                        )
                    })?;
                }
                let verifier = WebPkiClientVerifier::builder_with_provider(
                    Arc::new(roots),
                    Arc::clone(&provider),
                );
                let verifier = if mode == ClientAuth::VerifyIfGiven {
                    verifier.allow_unauthenticated()
                } else {
                    verifier
                };
                let verifier = verifier.build().map_err(|err| match err {
                    VerifierBuilderError::NoRootAnchors => {
                        anyhow!(
                            "tls_server_config.{}: no certificate in {}",
                            ca.field,
                            ca.place
                        )
                    }
                    other => anyhow!("tls_server_config.{}: {other}", ca.field),
                })?;
                builder.with_client_cert_verifier(verifier)
            }
        };
        let mut config = builder.with_cert_resolver(Arc::new(certificate::Certificate::new(
            certified,
            files,
            Arc::clone(&provider),
        )));
        config.ignore_client_order = self.prefer_server_cipher_suites.unwrap_or(true);
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        Ok(config)
    }
}

fn pem_source(
    field: &str,
    inline: Option<String>,
    file: Option<PathBuf>,
    dir: &Path,
) -> anyhow::Result<Option<Pem>> {
    match (inline, file) {
        (None, None) => Ok(None),
        (Some(_), Some(_)) => bail!("tls_server_config: set {field} or {field}_file, not both"),
        (Some(text), None) => Ok(Some(Pem {
            bytes: text.into_bytes(),
            field: field.to_owned(),
            place: format!("the inline {field}"),
        })),
        (None, Some(file)) => Ok(Some(certificate::read_pem(field, &dir.join(file))?)),
    }
}

/// TLS 1.3 suites always stay (as in Go); `names` choose and order the TLS 1.2 ones, by their
/// IANA names as Go spells them.
fn cipher_suites(
    provider: &CryptoProvider,
    names: &[String],
) -> anyhow::Result<Vec<rustls::SupportedCipherSuite>> {
    let (tls13, tls12): (Vec<_>, Vec<_>) = provider
        .cipher_suites
        .iter()
        .copied()
        .partition(|suite| suite.version() == &rustls::version::TLS13);
    let mut chosen = tls13;
    for name in names {
        // Go also knows the ChaCha20 suites without their `_SHA256` suffix.
        let full = if name.ends_with("_POLY1305") {
            format!("{name}_SHA256")
        } else {
            name.clone()
        };
        let suite = tls12
            .iter()
            .find(|suite| format!("{:?}", suite.suite()) == full)
            .ok_or_else(|| {
                let known: Vec<String> = tls12
                    .iter()
                    .map(|suite| format!("{:?}", suite.suite()))
                    .collect();
                anyhow!(
                    "tls_server_config.cipher_suites: `{name}` is not supported; use some of {}",
                    known.join(", ")
                )
            })?;
        chosen.push(*suite);
    }
    Ok(chosen)
}

fn curves(
    provider: &CryptoProvider,
    names: &[String],
) -> anyhow::Result<Vec<&'static dyn rustls::crypto::SupportedKxGroup>> {
    names
        .iter()
        .map(|name| {
            let group = match name.as_str() {
                "X25519" => Some(NamedGroup::X25519),
                "CurveP256" => Some(NamedGroup::secp256r1),
                "CurveP384" => Some(NamedGroup::secp384r1),
                _ => None,
            };
            group
                .and_then(|group| provider.kx_groups.iter().copied().find(|kx| kx.name() == group))
                .ok_or_else(|| {
                    anyhow!(
                        "tls_server_config.curve_preferences: `{name}` is not supported; use some of \
                         X25519, CurveP256, CurveP384"
                    )
                })
        })
        .collect()
}

impl RawHeaders {
    fn build(self) -> anyhow::Result<Vec<(HeaderName, HeaderValue)>> {
        if let Some(value) = &self.x_frame_options {
            if !["deny", "sameorigin"].contains(&value.to_ascii_lowercase().as_str()) {
                bail!(
                    "http_server_config.headers.X-Frame-Options: `{value}` is not deny or sameorigin"
                );
            }
        }
        if let Some(value) = &self.x_content_type_options {
            if !value.eq_ignore_ascii_case("nosniff") {
                bail!(
                    "http_server_config.headers.X-Content-Type-Options: `{value}` is not nosniff"
                );
            }
        }
        [
            ("content-security-policy", self.content_security_policy),
            ("x-frame-options", self.x_frame_options),
            ("x-content-type-options", self.x_content_type_options),
            ("x-xss-protection", self.x_xss_protection),
            ("strict-transport-security", self.strict_transport_security),
        ]
        .into_iter()
        .filter_map(|(name, value)| Some((name, value.filter(|value| !value.is_empty())?)))
        .map(|(name, value)| {
            let value = HeaderValue::from_str(&value).map_err(|_| {
                anyhow!("http_server_config.headers: `{value}` is not a valid header value")
            })?;
            Ok((HeaderName::from_static(name), value))
        })
        .collect()
    }
}

/// Basic authentication against bcrypt hashes. A bcrypt check costs tens of milliseconds by
/// design, so a successful one is remembered: per user, a salted SHA-256 of the password that
/// passed. A scrape every few seconds then costs a hash, not a bcrypt; a changed or wrong
/// password always goes through bcrypt again.
pub struct BasicAuth {
    users: BTreeMap<String, String>,
    verified: Mutex<HashMap<String, [u8; 32]>>,
    salt: [u8; 32],
}

impl BasicAuth {
    fn new(users: BTreeMap<UserName, BcryptHash>) -> BasicAuth {
        let mut salt = [0; 32];
        // The salt only keeps the cache from holding plain SHA-256 digests of passwords; if
        // the system RNG failed, a zero salt is still correct, only less private.
        let _ = ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut salt);
        BasicAuth {
            users: users
                .into_iter()
                .map(|(user, hash)| (user.0, hash.0))
                .collect(),
            verified: Mutex::new(HashMap::new()),
            salt,
        }
    }

    /// Cheap: true if this exact user and password passed bcrypt before.
    pub fn cached(&self, user: &str, password: &str) -> bool {
        let digest = self.digest(password);
        let verified = self
            .verified
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        verified
            .get(user)
            .is_some_and(|known| constant_time_eq(known, &digest))
    }

    /// The bcrypt check (slow: run it off the async runtime); remembers a success.
    pub fn verify(&self, user: &str, password: &str) -> bool {
        let Some(hash) = self.users.get(user) else {
            // As long as for a known user, so that timing does not tell which users exist.
            if let Some(any) = self.users.values().next() {
                let _ = bcrypt::verify(password, any);
            }
            return false;
        };
        if !bcrypt::verify(password, hash).unwrap_or(false) {
            return false;
        }
        let digest = self.digest(password);
        self.verified
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .insert(user.to_owned(), digest);
        true
    }

    fn digest(&self, password: &str) -> [u8; 32] {
        let mut context = ring::digest::Context::new(&ring::digest::SHA256);
        context.update(&self.salt);
        context.update(password.as_bytes());
        let mut digest = [0; 32];
        digest.copy_from_slice(context.finish().as_ref());
        digest
    }
}

fn constant_time_eq(a: &[u8; 32], b: &[u8; 32]) -> bool {
    a.iter().zip(b).fold(0u8, |diff, (x, y)| diff | (x ^ y)) == 0
}

/// `Authorization: Basic base64(user:password)` → (user, password).
pub fn basic_credentials(header: &HeaderValue) -> Option<(String, String)> {
    let encoded = header.to_str().ok()?;
    let (scheme, encoded) = encoded.trim().split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("basic") {
        return None;
    }
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(encoded.trim())
        .ok()?;
    let decoded = String::from_utf8(decoded).ok()?;
    let (user, password) = decoded.split_once(':')?;
    Some((user.to_owned(), password.to_owned()))
}

#[cfg(test)]
mod tests;

mod certificate;
use certificate::Pem;
