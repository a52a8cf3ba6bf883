use std::{
    io::{BufRead as _, BufReader, Write as _},
    net::TcpListener,
};

use super::*;
use crate::identity::kubernetes::tests::{LIST, read_request};

#[test]
fn api_urls() {
    let url = parse_api_url("https://10.96.0.1:443").unwrap();
    assert_eq!(
        url,
        HttpUrl {
            https: true,
            host: "10.96.0.1".into(),
            port: 443,
            authority: "10.96.0.1:443".into(),
            path: String::new(),
        }
    );
    let url = parse_api_url("https://[fd00::1]").unwrap();
    assert_eq!((url.host.as_str(), url.port), ("fd00::1", 443));
    let url = parse_api_url("http://127.0.0.1:8001/proxy/").unwrap();
    assert_eq!((url.https, url.port), (false, 8001));
    assert_eq!(url.path, "/proxy");
    assert!(parse_api_url("ftp://x").is_err());
    assert!(parse_api_url("https://:443").is_err());
    assert!(parse_api_url("https://host:port").is_err());
    assert_eq!(
        encode_query("spec.nodeName=test-node"),
        "spec.nodeName%3Dtest-node"
    );
}

#[test]
fn lines_are_split_across_chunks() {
    let mut lines = LineBuffer::default();
    lines.push(b"{\"a\"").unwrap();
    assert_eq!(lines.next_line(), None);
    lines.push(b":1}\n{\"b\":2}\n{\"c\"").unwrap();
    assert_eq!(lines.next_line().as_deref(), Some(&b"{\"a\":1}"[..]));
    assert_eq!(lines.next_line().as_deref(), Some(&b"{\"b\":2}"[..]));
    assert_eq!(lines.next_line(), None);
    assert_eq!(lines.rest().as_deref(), Some(&b"{\"c\""[..]));
    assert_eq!(lines.rest(), None);
}

#[tokio::test]
async fn api_errors_carry_the_servers_message_and_a_hint() {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let address = listener.local_addr().unwrap();
    let server = std::thread::spawn(move || {
        let (mut stream, _) = listener.accept().unwrap();
        read_request(&stream);
        let body = r#"{"kind":"Status","apiVersion":"v1","metadata":{},"status":"Failure","message":"pods is forbidden: User \"system:serviceaccount:monitoring:agent\" cannot list resource \"pods\" in API group \"\" at the cluster scope","reason":"Forbidden","details":{"kind":"pods"},"code":403}"#;
        write!(
            stream,
            "HTTP/1.1 403 Forbidden\r\nContent-Type: application/json\r\n\
             Content-Length: {}\r\n\r\n{body}",
            body.len()
        )
        .unwrap();
    });
    let config = KubeConfig {
        api_url: format!("http://{address}"),
        token: None,
        ca_file: None,
        node_name: "test-node".into(),
        deleted_ttl: Duration::from_secs(1),
    };
    let err = Client::new(&config, None)
        .unwrap()
        .list()
        .await
        .unwrap_err();
    let err = format!("{err:#}");
    assert!(
        err.starts_with(&format!(
            "GET http://{address}/api/v1/pods?fieldSelector=spec.nodeName%3Dtest-node: \
             HTTP 403 Forbidden: pods is forbidden: User \"system:serviceaccount:monitoring"
        )),
        "{err}"
    );
    assert!(err.contains("needs get, list and watch on pods"), "{err}");
    server.join().unwrap();
}

/// A CA and a certificate for 127.0.0.1 signed by it, as an API server has.
fn test_ca() -> (String, rustls::ServerConfig) {
    use rcgen::{BasicConstraints, CertificateParams, IsCa, KeyPair};
    use rustls_pki_types::{CertificateDer, PrivateKeyDer};

    let ca_key = KeyPair::generate().unwrap();
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let ca = ca_params.self_signed(&ca_key).unwrap();
    let key = KeyPair::generate().unwrap();
    let cert = CertificateParams::new(vec!["127.0.0.1".to_owned()])
        .unwrap()
        .signed_by(&key, &ca, &ca_key)
        .unwrap();
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let server = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(
            vec![CertificateDer::from(cert.der().to_vec())],
            PrivateKeyDer::Pkcs8(key.serialize_der().into()),
        )
        .unwrap();
    (ca.pem(), server)
}

#[tokio::test]
async fn lists_over_https_trusting_the_ca_file() {
    let (ca_pem, server_config) = test_ca();
    let (other_ca_pem, _) = test_ca();
    let dir = std::env::temp_dir().join(format!("kube-tls-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let (ca_file, other_ca_file) = (dir.join("ca.crt"), dir.join("other.crt"));
    std::fs::write(&ca_file, ca_pem).unwrap();
    std::fs::write(&other_ca_file, other_ca_pem).unwrap();

    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let address = listener.local_addr().unwrap();
    let server_config = Arc::new(server_config);
    let server = std::thread::spawn(move || {
        let mut authorizations = Vec::new();
        for _ in 0..2 {
            let (tcp, _) = listener.accept().unwrap();
            let connection = rustls::ServerConnection::new(Arc::clone(&server_config)).unwrap();
            let mut tls = rustls::StreamOwned::new(connection, tcp);
            // The second client does not trust this server: its handshake fails here.
            let mut reader = BufReader::new(&mut tls);
            let mut line = String::new();
            if reader.read_line(&mut line).is_err() {
                continue;
            }
            loop {
                let mut header = String::new();
                reader.read_line(&mut header).unwrap();
                let header = header.trim_end();
                if header.is_empty() {
                    break;
                }
                if let Some(value) = header.strip_prefix("authorization: ") {
                    authorizations.push(value.to_owned());
                }
            }
            write!(
                tls,
                "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\
                 Connection: close\r\n\r\n{LIST}",
                LIST.len()
            )
            .unwrap();
            tls.conn.send_close_notify();
            tls.flush().unwrap();
        }
        authorizations
    });

    let mut config = KubeConfig {
        api_url: format!("https://{address}"),
        token: Some("tls-token".into()),
        ca_file: Some(ca_file),
        node_name: "test-node".into(),
        deleted_ttl: Duration::from_secs(1),
    };
    let list = Client::new(&config, None).unwrap().list().await.unwrap();
    assert_eq!(list.pods.len(), 2);

    config.ca_file = Some(other_ca_file);
    let err = Client::new(&config, None)
        .unwrap()
        .list()
        .await
        .unwrap_err();
    let err = format!("{err:#}");
    assert!(err.contains("TLS handshake with 127.0.0.1:"), "{err}");
    assert!(
        err.contains(&format!("GET https://{address}/api/v1/pods?")),
        "{err}"
    );

    assert_eq!(server.join().unwrap(), vec!["Bearer tls-token".to_owned()]);
    std::fs::remove_dir_all(&dir).unwrap();
}
