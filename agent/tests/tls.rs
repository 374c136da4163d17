//! TLS on every socket of the agent: a listener's handshake, the HTTP API and the gRPC stream
//! all go over TLS with the agent's certificate, and a client that speaks plain text is refused.

mod common;

use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, ServerName};
use sparkscope::tls::TlsConfig;
use sparkscope_proto::sparkscope::v1 as pb;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

struct Cert {
    _dir: tempfile::TempDir,
    tls: TlsConfig,
    pem: String,
}

fn self_signed() -> Cert {
    let cert = rcgen::generate_simple_self_signed(vec!["127.0.0.1".into(), "localhost".into()])
        .expect("a certificate");
    let dir = tempfile::tempdir().expect("dir");
    let (cert_path, key_path) = (dir.path().join("cert.pem"), dir.path().join("key.pem"));
    let pem = cert.cert.pem();
    std::fs::write(&cert_path, &pem).expect("write");
    std::fs::write(&key_path, cert.key_pair.serialize_pem()).expect("write");
    Cert {
        _dir: dir,
        tls: TlsConfig {
            cert: Some(cert_path),
            key: Some(key_path),
        },
        pem,
    }
}

fn connector(pem: &str) -> tokio_rustls::TlsConnector {
    let mut roots = rustls::RootCertStore::empty();
    for c in CertificateDer::pem_slice_iter(pem.as_bytes()) {
        roots.add(c.expect("pem")).expect("root");
    }
    let cfg = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .expect("versions")
    .with_root_certificates(roots)
    .with_no_client_auth();
    tokio_rustls::TlsConnector::from(Arc::new(cfg))
}

#[tokio::test]
async fn every_socket_speaks_tls_and_plain_text_is_refused() {
    let cert = self_signed();
    let mut cfg = common::config();
    cfg.tls = cert.tls.clone();
    let agent = common::start(cfg).await;
    let addrs = agent.addrs();
    let tls = connector(&cert.pem);
    let name = ServerName::try_from("127.0.0.1").expect("name");

    // A listener's handshake over TLS.
    let sock = TcpStream::connect(addrs.ingest).await.expect("connect");
    let mut s = tls
        .connect(name.clone(), sock)
        .await
        .expect("TLS to the ingest port");
    let hello = "{\"Event\":\"SparkscopeHello\",\"protocol\":3,\"appId\":\"tls-app\",\"runId\":\"r\",\"nonce\":\"0123456789abcdef0123456789abcdef\"}\n";
    s.write_all(hello.as_bytes()).await.expect("hello");
    let mut buf = vec![0u8; 1024];
    let n = tokio::time::timeout(Duration::from_secs(5), s.read(&mut buf))
        .await
        .expect("in time")
        .expect("read");
    let challenge = String::from_utf8_lossy(&buf[..n]);
    assert!(challenge.contains("\"proof\""), "{challenge}");

    // Plain text on the same port: the handshake fails, counted as such.
    let mut plain = TcpStream::connect(addrs.ingest).await.expect("connect");
    plain.write_all(hello.as_bytes()).await.expect("write");
    let mut rest = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(5), plain.read_to_end(&mut rest)).await;
    assert!(
        !String::from_utf8_lossy(&rest).contains("\"ok\":true"),
        "plain text got an answer"
    );

    // The HTTP API over TLS.
    let sock = TcpStream::connect(addrs.http).await.expect("connect");
    let mut https = tls.connect(name.clone(), sock).await.expect("TLS to HTTP");
    https
        .write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .await
        .expect("request");
    let mut answer = String::new();
    https.read_to_string(&mut answer).await.expect("answer");
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");

    // The gRPC stream over TLS.
    let endpoint = tonic::transport::Endpoint::from_shared(format!("https://{}", addrs.grpc))
        .expect("endpoint")
        .tls_config(
            tonic::transport::ClientTlsConfig::new()
                .ca_certificate(tonic::transport::Certificate::from_pem(&cert.pem))
                .domain_name("127.0.0.1"),
        )
        .expect("tls config");
    let channel = endpoint.connect().await.expect("gRPC over TLS");
    let mut client = pb::monitor_client::MonitorClient::new(channel);
    let mut req = tonic::Request::new(pb::SubscribeRequest {
        sessions: vec![pb::SessionKey {
            session_id: "39ed1fc5-ed53-4117-945b-fae9e26c0ce8".into(),
            user_id: "alice".into(),
            ..Default::default()
        }],
    });
    let bearer = format!("Bearer {}", common::SUBSCRIBER_TOKEN);
    req.metadata_mut()
        .insert("authorization", bearer.parse().expect("metadata"));
    let mut updates = client.subscribe(req).await.expect("subscribe").into_inner();
    let first = updates.message().await.expect("update").expect("open");
    assert!(first.snapshot);
}

/// TLS that cannot be set up stops the agent before it serves anything: no socket, gRPC
/// included, is ever served in plain text instead.
#[tokio::test]
async fn a_certificate_that_cannot_be_used_stops_the_agent() {
    let (a, b) = (self_signed(), self_signed());
    let mut cfg = common::config();
    cfg.tls = sparkscope::tls::TlsConfig {
        cert: a.tls.cert.clone(),
        key: b.tls.key.clone(),
    };
    let err = match sparkscope::agent::Agent::build(cfg).await {
        Ok(_) => panic!("the agent started with a key that is not its certificate's"),
        Err(e) => e.to_string(),
    };
    assert!(err.contains("TLS"), "{err}");
    let mut cfg = common::config();
    cfg.tls = sparkscope::tls::TlsConfig {
        cert: a.tls.cert.clone(),
        key: Some(a.tls.cert.clone().expect("cert").with_extension("missing")),
    };
    assert!(sparkscope::agent::Agent::build(cfg).await.is_err());
}

/// A Spark UI behind an authenticating https proxy, as it answers: 401 without the header,
/// jobs with it.
async fn https_spark_ui(cert: &Cert) -> std::net::SocketAddr {
    let tls = cert.tls.files().expect("files").load().expect("loads");
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move {
        while let Ok((sock, _)) = listener.accept().await {
            let acceptor = tls.acceptor.clone();
            tokio::spawn(async move {
                let Ok(mut s) = acceptor.accept(sock).await else {
                    return;
                };
                let mut req = Vec::new();
                let mut buf = [0u8; 4096];
                while !req.windows(4).any(|w| w == b"\r\n\r\n") {
                    match s.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => req.extend_from_slice(&buf[..n]),
                    }
                }
                let req = String::from_utf8_lossy(&req).to_lowercase();
                let (status, body) = if req.contains("authorization: bearer proxy-secret") {
                    (
                        "200 OK",
                        r#"[{"jobId":3,"name":"n","status":"SUCCEEDED","stageIds":[1]}]"#,
                    )
                } else {
                    ("401 Unauthorized", "no")
                };
                let resp = format!(
                    "HTTP/1.1 {status}\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                    body.len()
                );
                let _ = s.write_all(resp.as_bytes()).await;
                let _ = s.shutdown().await;
            });
        }
    });
    addr
}

#[tokio::test]
async fn spark_rest_over_https_with_a_proxy_header() {
    use sparkscope::spark_api::{SparkApi, SparkApiConfig};
    let cert = self_signed();
    let addr = https_spark_ui(&cert).await;
    let dir = tempfile::tempdir().expect("dir");
    let ca = dir.path().join("ca.pem");
    std::fs::write(&ca, &cert.pem).expect("write");
    let header = dir.path().join("header");
    std::fs::write(&header, "Authorization: Bearer proxy-secret\n").expect("write");
    let ui = format!("https://localhost:{}", addr.port());
    let api = |ca_file: Option<std::path::PathBuf>, header_file| {
        SparkApi::new(SparkApiConfig {
            ca_file,
            header_file,
            ..SparkApiConfig::default()
        })
    };
    let jobs = api(Some(ca.clone()), Some(header.clone()))
        .jobs(&ui, "app-1")
        .await
        .expect("jobs over https with the header");
    assert_eq!(jobs.iter().map(|j| j.job_id).collect::<Vec<_>>(), [3]);
    let err = api(Some(ca.clone()), None)
        .jobs(&ui, "app-1")
        .await
        .expect_err("the proxy refuses");
    assert!(err.to_string().contains("401"), "{err}");
    // a server the CA file does not vouch for gets nothing, the header least of all
    let err = api(None, Some(header.clone()))
        .jobs(&ui, "app-1")
        .await
        .expect_err("an unknown certificate is refused");
    assert!(!err.to_string().contains("401"), "{err}");
    // a header file that is no header stops the agent at its start
    std::fs::write(&header, "no colon here").expect("write");
    let mut cfg = common::config();
    cfg.spark_api.header_file = Some(header);
    let e = sparkscope::agent::Agent::build(cfg)
        .await
        .err()
        .expect("refused");
    assert!(e.to_string().contains("Name: value"), "{e}");
}
