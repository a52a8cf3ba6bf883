use super::*;

/// A directory with a self-signed certificate and its key, and one with a second key.
struct Fixture {
    dir: PathBuf,
}

impl Fixture {
    fn new(name: &str) -> Fixture {
        let dir = std::env::temp_dir().join(format!("web-config-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let cert = rcgen::generate_simple_self_signed(vec!["localhost".to_owned()]).unwrap();
        std::fs::write(dir.join("server.crt"), cert.cert.pem()).unwrap();
        std::fs::write(dir.join("server.key"), cert.key_pair.serialize_pem()).unwrap();
        let other = rcgen::KeyPair::generate().unwrap();
        std::fs::write(dir.join("other.key"), other.serialize_pem()).unwrap();
        Fixture { dir }
    }

    fn parse(&self, yaml: &str) -> anyhow::Result<WebConfig> {
        WebConfig::parse(yaml, &self.dir)
    }

    fn error(&self, yaml: &str) -> String {
        match self.parse(yaml) {
            Ok(_) => panic!("accepted:\n{yaml}"),
            Err(err) => {
                let text = format!("{err:#}");
                assert!(!text.contains('\n'), "error is not one line: {text}");
                text
            }
        }
    }
}

impl Drop for Fixture {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn secret_hash() -> String {
    bcrypt::hash("secret", 4).unwrap()
}

#[test]
fn empty_file_is_plain_http_without_auth() {
    let fixture = Fixture::new("empty");
    for yaml in ["", "\n", "# nothing yet\n", "{}"] {
        let config = fixture.parse(yaml).unwrap();
        assert!(config.tls.is_none() && config.auth.is_none() && config.headers.is_empty());
    }
}

#[test]
fn valid_file_with_relative_paths() {
    let fixture = Fixture::new("valid");
    let yaml = format!(
        "tls_server_config:\n  cert_file: server.crt\n  key_file: server.key\n  min_version: TLS13\n\
         http_server_config:\n  http2: false\n  headers:\n    X-Frame-Options: deny\n\
         basic_auth_users:\n  alice: '{}'\n",
        secret_hash()
    );
    let config = fixture.parse(&yaml).unwrap();
    let tls = config.tls.unwrap();
    assert_eq!(tls.alpn_protocols, vec![b"http/1.1".to_vec()]);
    let auth = config.auth.unwrap();
    assert!(!auth.cached("alice", "secret"));
    assert!(auth.verify("alice", "secret"));
    assert!(auth.cached("alice", "secret"));
    assert!(!auth.cached("alice", "Secret"));
    assert!(!auth.verify("alice", "Secret"));
    assert!(!auth.verify("bob", "secret"));
    assert!(!auth.cached("bob", "secret"));
    assert_eq!(
        config.headers,
        vec![(
            HeaderName::from_static("x-frame-options"),
            HeaderValue::from_static("deny")
        )]
    );
}

#[test]
fn the_toolkits_tls_options() {
    let fixture = Fixture::new("options");
    let ca = std::fs::read_to_string(fixture.dir.join("server.crt")).unwrap();
    let yaml = format!(
        "tls_server_config:\n  cert_file: server.crt\n  key_file: server.key\n  client_auth_type: RequireAndVerifyClientCert\n  client_ca: |\n{}\n  cipher_suites: [TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256, TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305]\n  curve_preferences: [X25519, CurveP256]\n  prefer_server_cipher_suites: false\n",
        ca.lines()
            .map(|line| format!("    {line}"))
            .collect::<Vec<_>>()
            .join("\n")
    );
    let config = fixture.parse(&yaml).unwrap();
    assert!(!config.tls.unwrap().ignore_client_order);
}

#[test]
fn unknown_field_is_named_with_its_line() {
    let fixture = Fixture::new("unknown");
    let error = fixture.error(
        "tls_server_config:\n  cert_file: server.crt\n  key_file: server.key\n  cert_flie: x\n",
    );
    assert!(
        error.contains("cert_flie") && error.contains("line 4"),
        "{error}"
    );
    let error = fixture.error("basic_auth_user:\n  alice: x\n");
    assert!(
        error.contains("basic_auth_user") && error.contains("line 1"),
        "{error}"
    );
}

#[test]
fn invalid_yaml_has_its_line() {
    let fixture = Fixture::new("yaml");
    let error = fixture.error("basic_auth_users:\n  alice: [unclosed\n");
    assert!(error.contains("line"), "{error}");
}

#[test]
fn missing_cert_file_is_named() {
    let fixture = Fixture::new("missing");
    let error =
        fixture.error("tls_server_config:\n  cert_file: nowhere.crt\n  key_file: server.key\n");
    assert!(
        error.contains("cert_file")
            && error.contains("nowhere.crt")
            && error.contains("No such file"),
        "{error}"
    );
    let error = fixture.error("tls_server_config:\n  cert_file: server.crt\n");
    assert!(error.contains("key_file"), "{error}");
    let error = fixture.error("tls_server_config: {}\n");
    assert!(error.contains("cert_file"), "{error}");
}

#[test]
fn mismatched_or_non_pem_files_are_refused() {
    let fixture = Fixture::new("mismatch");
    let error =
        fixture.error("tls_server_config:\n  cert_file: server.crt\n  key_file: other.key\n");
    assert!(error.contains("other.key"), "{error}");
    let error =
        fixture.error("tls_server_config:\n  cert_file: server.key\n  key_file: server.key\n");
    assert!(error.contains("no certificate"), "{error}");
    let error =
        fixture.error("tls_server_config:\n  cert_file: server.crt\n  key_file: server.crt\n");
    assert!(error.contains("no private key"), "{error}");
}

#[test]
fn bad_bcrypt_hash_is_refused_with_its_line() {
    let fixture = Fixture::new("bcrypt");
    let error = fixture.error("basic_auth_users:\n  alice: $2y$10$tooshort\n");
    // Where, then whose, then what and how to fix it.
    assert!(
        error.contains("line 2 column 3: basic_auth_users.alice: not a bcrypt hash")
            && error.ends_with("make one with: htpasswd -nBC 10 \"\" | tr -d ':\\n'"),
        "{error}"
    );
    let error = fixture.error("basic_auth_users:\n  alice: secret\n");
    assert!(error.contains("bcrypt"), "{error}");
    // Well-formed, so accepted (whether it matches is for the request to find out).
    fixture
        .parse(&format!(
            "basic_auth_users:\n  alice: '{}'\n",
            secret_hash()
        ))
        .unwrap();
}

#[test]
fn unsupported_options_are_refused_not_ignored() {
    let fixture = Fixture::new("unsupported");
    let tls = "tls_server_config:\n  cert_file: server.crt\n  key_file: server.key\n";
    for (extra, expected) in [
        ("  min_version: TLS10\n", "`TLS10` is not supported"),
        ("  max_version: TLS14\n", "not a TLS version"),
        (
            "  min_version: TLS13\n  max_version: TLS12\n",
            "min_version",
        ),
        (
            "  client_auth_type: RequireAnyClientCert\n  client_ca_file: server.crt\n",
            "without verifying",
        ),
        (
            "  client_auth_type: RequireAndVerifyClientCert\n",
            "client_ca_file",
        ),
        ("  client_ca_file: server.crt\n", "client_auth_type"),
        ("  client_allowed_sans: [a]\n", "client_allowed_sans"),
        (
            "  cipher_suites: [TLS_RSA_WITH_RC4_128_SHA]\n",
            "TLS_RSA_WITH_RC4_128_SHA",
        ),
        ("  curve_preferences: [CurveP521]\n", "CurveP521"),
        ("  cert: inline\n", "not both"),
    ] {
        let error = fixture.error(&format!("{tls}{extra}"));
        assert!(error.contains(expected), "{extra:?}: {error}");
    }
    let error = fixture.error("rate_limit:\n  interval: 1s\n  burst: 5\n");
    assert!(
        error.contains("--web.max-requests") && error.contains("line 1"),
        "{error}"
    );
    let error = fixture.error("http_server_config:\n  headers:\n    X-Frame-Options: allow\n");
    assert!(error.contains("X-Frame-Options"), "{error}");
    let error = fixture.error("http_server_config:\n  headers:\n    Server: me\n");
    assert!(error.contains("Server"), "{error}");
    let error = fixture.error(&format!(
        "basic_auth_users:\n  'a:b': '{}'\n",
        secret_hash()
    ));
    assert!(error.contains("a:b"), "{error}");
}

#[test]
fn load_names_the_file() {
    let fixture = Fixture::new("load");
    let path = fixture.dir.join("web.yml");
    let error = format!("{:#}", WebConfig::load(&path).err().unwrap());
    assert!(
        error.contains("web.yml") && error.contains("cannot read"),
        "{error}"
    );
    std::fs::write(
        &path,
        "tls_server_config:\n  cert_file: server.crt\n  key_file: server.key\n",
    )
    .unwrap();
    assert!(
        WebConfig::load(&path).unwrap().tls.is_some(),
        "relative to the file's directory"
    );
    std::fs::write(&path, "nonsense: 1\n").unwrap();
    let error = format!("{:#}", WebConfig::load(&path).err().unwrap());
    assert!(
        error.starts_with(&format!("web config {}: ", path.display()))
            && error.contains("nonsense"),
        "{error}"
    );
}

#[test]
fn basic_credentials_are_decoded() {
    let header = |text: &str| HeaderValue::from_str(text).unwrap();
    // "alice:s3:cret"
    assert_eq!(
        basic_credentials(&header("Basic YWxpY2U6czM6Y3JldA==")),
        Some(("alice".into(), "s3:cret".into()))
    );
    assert_eq!(
        basic_credentials(&header("basic YWxpY2U6czM6Y3JldA=="))
            .unwrap()
            .0,
        "alice"
    );
    for bad in [
        "Bearer YWxpY2U6eA==",
        "Basic !!!",
        "Basic YWxpY2U=",
        "Basic",
    ] {
        assert_eq!(basic_credentials(&header(bad)), None, "{bad}");
    }
}
