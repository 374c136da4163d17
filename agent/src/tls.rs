//! Optional TLS on every socket of the agent (rustls): the listeners' port, the HTTP API with its
//! WebSocket stream, and the gRPC stream all present the same certificate.

use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio_rustls::server::TlsStream;
use tokio_rustls::TlsAcceptor;
use tokio_stream::StreamExt;

/// Makes ring the process's TLS provider, once: every HTTP client (Spark's REST API, the
/// JupyterHub API, the CLI's own requests) builds on it. Later calls do nothing.
pub fn install_crypto_provider() {
    // Err means a provider is already installed, which is all this wants.
    let _ = rustls::crypto::ring::default_provider().install_default();
}

/// TLS on every socket, when both files are given.
#[derive(Debug, Clone, Default, clap::Args)]
#[command(next_help_heading = "TLS")]
pub struct TlsConfig {
    /// TLS on every socket: the certificate (chain), PEM. Listeners check it against their
    /// spark.sparkscope.tls.trustCert; notebooks against SPARKSCOPE_CA_FILE.
    #[arg(
        id = "tls_cert",
        long = "tls-cert",
        value_name = "FILE",
        env = "SPARKSCOPE_TLS_CERT",
        requires = "tls_key"
    )]
    pub cert: Option<PathBuf>,
    /// The certificate's private key, PEM.
    #[arg(
        id = "tls_key",
        long = "tls-key",
        value_name = "FILE",
        env = "SPARKSCOPE_TLS_KEY",
        requires = "tls_cert"
    )]
    pub key: Option<PathBuf>,
}

/// Where the agent's certificate (chain) and private key are, both PEM.
#[derive(Debug, Clone)]
pub struct TlsFiles {
    pub cert: PathBuf,
    pub key: PathBuf,
}

impl TlsConfig {
    /// The two files, when TLS is on.
    pub fn files(&self) -> Option<TlsFiles> {
        self.cert
            .clone()
            .zip(self.key.clone())
            .map(|(cert, key)| TlsFiles { cert, key })
    }

    pub fn is_on(&self) -> bool {
        self.cert.is_some()
    }
}

#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("cannot read {path}: {why}")]
    Read { path: PathBuf, why: String },
    #[error("{0} holds no certificate")]
    NoCertificate(PathBuf),
    #[error("the certificate and key do not go together: {0}")]
    Config(String),
}

impl TlsFiles {
    fn read_err(path: &Path) -> impl Fn(rustls_pki_types::pem::Error) -> TlsError + '_ {
        move |e| TlsError::Read {
            path: path.to_owned(),
            why: e.to_string(),
        }
    }

    /// The PEM files, read, and the two acceptors made from them. An error here stops the
    /// agent: no socket is ever served in plain text because its TLS could not be set up.
    pub fn load(&self) -> Result<Loaded, TlsError> {
        let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(&self.cert)
            .map_err(Self::read_err(&self.cert))?
            .collect::<Result<_, _>>()
            .map_err(Self::read_err(&self.cert))?;
        if certs.is_empty() {
            return Err(TlsError::NoCertificate(self.cert.clone()));
        }
        let key = PrivateKeyDer::from_pem_file(&self.key).map_err(Self::read_err(&self.key))?;
        let config = |alpn: &[&[u8]]| -> Result<TlsAcceptor, TlsError> {
            let mut server = rustls::ServerConfig::builder_with_provider(Arc::new(
                rustls::crypto::ring::default_provider(),
            ))
            .with_safe_default_protocol_versions()
            .map_err(|e| TlsError::Config(e.to_string()))?
            .with_no_client_auth()
            .with_single_cert(certs.clone(), key.clone_key())
            .map_err(|e| TlsError::Config(e.to_string()))?;
            server.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
            Ok(TlsAcceptor::from(Arc::new(server)))
        };
        Ok(Loaded {
            acceptor: config(&[])?,
            // gRPC clients insist on negotiating HTTP/2.
            grpc: config(&[b"h2"])?,
        })
    }
}

/// A loaded certificate: the acceptor for the listeners' and HTTP sockets, and the one for the
/// gRPC socket (the same certificate, HTTP/2 negotiated).
#[derive(Clone)]
pub struct Loaded {
    pub acceptor: TlsAcceptor,
    pub grpc: TlsAcceptor,
}

/// How long a client gets for its TLS handshake.
const HANDSHAKE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

/// A TCP listener whose connections have done their TLS handshake. Handshakes run as their own
/// tasks, so a client that never finishes one holds up nobody else.
pub struct TlsListener {
    ready: mpsc::Receiver<(TlsStream<TcpStream>, std::net::SocketAddr)>,
    local: std::net::SocketAddr,
}

impl TlsListener {
    pub fn new(tcp: TcpListener, acceptor: TlsAcceptor) -> std::io::Result<TlsListener> {
        let local = tcp.local_addr()?;
        let (tx, ready) = mpsc::channel(64);
        tokio::spawn(async move {
            loop {
                let (sock, peer) = match tcp.accept().await {
                    Ok(c) => c,
                    Err(e) => {
                        tracing::warn!(error = %e, "accept failed");
                        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                        continue;
                    }
                };
                let (acceptor, ready) = (acceptor.clone(), tx.clone());
                tokio::spawn(async move {
                    match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(sock)).await {
                        Ok(Ok(tls)) => {
                            let _ = ready.send((tls, peer)).await;
                        }
                        Ok(Err(e)) => tracing::debug!(%peer, error = %e, "TLS handshake failed"),
                        Err(_) => tracing::debug!(%peer, "TLS handshake timed out"),
                    }
                });
                if tx.is_closed() {
                    return;
                }
            }
        });
        Ok(TlsListener { ready, local })
    }
}

impl TlsListener {
    /// The connections as a stream, for tonic.
    pub fn into_stream(
        self,
    ) -> impl tokio_stream::Stream<Item = std::io::Result<TlsStream<TcpStream>>> {
        tokio_stream::wrappers::ReceiverStream::new(self.ready).map(|(tls, _)| Ok(tls))
    }
}

impl axum::serve::Listener for TlsListener {
    type Io = TlsStream<TcpStream>;
    type Addr = std::net::SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        match self.ready.recv().await {
            Some(c) => c,
            // The accepting task only ends when this listener is gone.
            None => std::future::pending().await,
        }
    }

    fn local_addr(&self) -> std::io::Result<Self::Addr> {
        Ok(self.local)
    }
}
