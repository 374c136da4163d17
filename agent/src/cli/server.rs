//! `sparkscope server`: a Spark Connect server from the installed Spark, with the listener
//! attached, and the agent beside it in this process — the embedded default for a laptop, a
//! tutorial or CI. Spark runs in its own process group so that a terminal's Ctrl-C reaches only
//! us: Spark is stopped first (its last events still reach the agent), then the agent drains.

use super::install;
use super::serve::{shutdown_signal, ServeArgs};
use anyhow::{bail, Context};
use clap::Args;
use sparkscope::agent::{Agent, Config, Drained};
use sparkscope::auth::Secret;
use std::io::Write;
use std::net::{Ipv4Addr, SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;
use tokio::process::{Child, Command};

#[derive(Args)]
pub struct ServerArgs {
    /// Spark master of the server.
    #[arg(long, default_value = "local[*]", env = "SPARKSCOPE_SPARK_MASTER")]
    master: String,
    /// Spark Connect's port (bound to 127.0.0.1).
    #[arg(long, default_value_t = 15002, env = "SPARKSCOPE_CONNECT_PORT")]
    connect_port: u16,
    /// Spark's home; by default SPARK_HOME, else the pyspark installed beside sparkscope.
    #[arg(long)]
    spark_home: Option<PathBuf>,
    /// A Spark conf for the server, `key=value`; repeatable.
    #[arg(long = "conf", value_name = "KEY=VALUE", value_parser = parse_conf)]
    confs: Vec<(String, String)>,
    /// Seconds the server gets to start listening.
    #[arg(long, default_value_t = 180)]
    startup_timeout_seconds: u64,
    /// Seconds Spark gets to stop on Ctrl-C before it is killed.
    #[arg(long, default_value_t = 60)]
    stop_timeout_seconds: u64,
    #[command(flatten)]
    serve: ServeArgs,
}

fn parse_conf(s: &str) -> Result<(String, String), String> {
    match s.split_once('=') {
        Some((k, v)) if !k.trim().is_empty() => Ok((k.trim().to_owned(), v.to_owned())),
        _ => Err(format!("expected key=value, got {s:?}")),
    }
}

/// Makes the credentials the operator did not give, then runs Spark and the agent.
pub async fn run(args: ServerArgs) -> anyhow::Result<()> {
    let mut cfg = args.serve.config;
    let listener = match &cfg.ingest.token {
        Some(t) => t.clone(),
        None => new_token()?,
    };
    cfg.ingest.token = Some(listener.clone());
    // The stream's token for notebooks on this machine, unless subscribers are identified
    // another way.
    let auth = &mut cfg.stream.auth;
    let identified = auth.tokens_file.is_some() || auth.jupyterhub_api.is_some() || auth.anonymous;
    if auth.shared.is_none() && !identified {
        auth.shared = Some(new_token()?);
    }
    let subscriber = auth.shared.clone();
    let access = &mut cfg.access;
    if access.api_token.is_none() && !access.allow_anonymous_api {
        access.api_token = Some(new_token()?);
    }
    let api = access.api_token.clone();
    let spark = SparkOptions {
        spark_home: args.spark_home,
        master: args.master,
        connect_port: args.connect_port,
        confs: args.confs,
        startup_timeout: Duration::from_secs(args.startup_timeout_seconds),
        stop_timeout: Duration::from_secs(args.stop_timeout_seconds),
    };
    let creds = Credentials {
        listener,
        subscriber,
        api,
    };
    serve(cfg, spark, creds, shutdown_signal()).await
}

/// The Spark side of `sparkscope server`.
struct SparkOptions {
    /// Spark's home; `None` finds it (see [`install::spark_home`]).
    spark_home: Option<PathBuf>,
    master: String,
    /// Spark Connect's gRPC port, on 127.0.0.1.
    connect_port: u16,
    /// More `--conf key=value` for the server.
    confs: Vec<(String, String)>,
    startup_timeout: Duration,
    stop_timeout: Duration,
}

/// Credentials of this run, written to files only the user can read.
struct Credentials {
    listener: Secret,
    /// The stream's shared token, unless the operator configured subscriber identities.
    subscriber: Option<Secret>,
    api: Option<Secret>,
}

/// A random 128-bit token, hex.
fn new_token() -> anyhow::Result<Secret> {
    let mut bytes = [0u8; 16];
    getrandom::fill(&mut bytes).map_err(|e| anyhow::anyhow!("no randomness: {e}"))?;
    let hex: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
    Secret::new(Some(hex)).context("an empty token")
}

/// Runs until SIGINT/SIGTERM or until Spark exits; `cfg` already holds the credentials' tokens.
async fn serve(
    cfg: Config,
    spark: SparkOptions,
    creds: Credentials,
    shutdown: impl std::future::Future<Output = ()>,
) -> anyhow::Result<()> {
    // Polled once now, so that its signal handlers are in place before Spark starts: a SIGTERM
    // while Spark starts up (minutes, at worst) must stop Spark too, not only us.
    let mut shutdown = std::pin::pin!(shutdown);
    tokio::select! {
        biased;
        () = &mut shutdown => return Ok(()),
        () = std::future::ready(()) => {}
    }
    let jar = install::listener_jar()?;
    let home = install::spark_home(spark.spark_home.as_deref())?;
    let dir = install::user_dir();
    private_dir(&dir)?;
    let token_file = dir.join("token");
    let api_token_file = dir.join("api-token");
    if let Some(t) = &creds.subscriber {
        write_secret(&token_file, t.expose())?;
    }
    if let Some(t) = &creds.api {
        write_secret(&api_token_file, t.expose())?;
    }
    let listener_token_file = dir.join(format!("listener-token-{}", std::process::id()));
    write_secret(&listener_token_file, creds.listener.expose())?;
    let _remove = RemoveOnDrop(listener_token_file.clone());
    let tls = cfg.tls.is_on();
    let agent = Agent::build(cfg).await?;
    let addrs = agent.addrs();
    let running = agent.spawn();
    let ws = if tls { "wss" } else { "ws" };
    let stream_url = format!("{ws}://{}/api/v1/stream", addrs.http);
    // Where this user's Jupyter server (its sparkscope extension, which has no Connect session
    // to ask) finds the stream; not a secret, and gone when the server stops.
    let url_file = dir.join("stream-url");
    std::fs::write(&url_file, format!("{stream_url}\n"))
        .with_context(|| format!("cannot write {}", url_file.display()))?;
    let _remove_url = RemoveOnDrop(url_file);

    let log_path = dir.join("spark-connect-server.log");
    let log = std::fs::File::create(&log_path)
        .with_context(|| format!("cannot write {}", log_path.display()))?;
    let mut conf: Vec<(String, String)> = vec![
        (
            "spark.connect.grpc.binding.address".into(),
            "127.0.0.1".into(),
        ),
        (
            "spark.connect.grpc.binding.port".into(),
            spark.connect_port.to_string(),
        ),
        ("spark.connect.grpc.port.maxRetries".into(), "0".into()),
        ("spark.driver.host".into(), "127.0.0.1".into()),
        ("spark.driver.bindAddress".into(), "127.0.0.1".into()),
        ("spark.ui.showConsoleProgress".into(), "false".into()),
        (
            "spark.extraListeners".into(),
            install::LISTENER_CLASS.into(),
        ),
        ("spark.sparkscope.agent".into(), addrs.ingest.to_string()),
        // The listener reads its token from this file, which is gone once it has connected:
        // Connect users run code in the driver (`reflect`), and must find the token neither in
        // its environment nor on disk.
        (
            "spark.sparkscope.tokenFile".into(),
            listener_token_file.display().to_string(),
        ),
        // What a notebook's kernel reads from its Connect session to find the stream.
        ("spark.sparkscope.streamUrl".into(), stream_url.clone()),
    ];
    conf.extend(spark.confs);
    let mut cmd = Command::new(home.join("bin").join("spark-submit"));
    cmd.args([
        "--class",
        "org.apache.spark.sql.connect.service.SparkConnectServer",
        "--name",
        "Spark Connect server",
        "--master",
        &spark.master,
        "--jars",
    ])
    .arg(&jar);
    for (k, v) in &conf {
        cmd.arg("--conf").arg(format!("{k}={v}"));
    }
    // No secret of ours in the driver's environment (Connect users can read it) nor on its
    // command line (every local user can).
    for (name, _) in std::env::vars_os() {
        if name.to_string_lossy().starts_with("SPARKSCOPE_") {
            cmd.env_remove(name);
        }
    }
    // A shell or Jupyter server set up for Connect clients (SPARK_REMOTE, pyspark's mode) would
    // make spark-submit refuse the server: "Remote cannot be specified with master".
    for name in [
        "SPARK_REMOTE",
        "SPARK_CONNECT_MODE_ENABLED",
        "SPARK_API_MODE",
    ] {
        cmd.env_remove(name);
    }
    cmd.env("SPARK_HOME", &home)
        .stdin(Stdio::null())
        .stdout(log.try_clone()?)
        .stderr(log)
        .process_group(0)
        .kill_on_drop(true);
    let mut child = cmd
        .spawn()
        .with_context(|| format!("cannot start {}", home.join("bin/spark-submit").display()))?;
    tracing::info!(spark_home = %home.display(), log = %log_path.display(), "starting spark connect server");

    let result = async {
        tokio::select! {
            ready = wait_ready(
                &mut child,
                spark.connect_port,
                spark.startup_timeout,
                &log_path,
            ) => ready?,
            () = &mut shutdown => return Ok(()), // stopped while starting
        }
        // The listener read its token when Spark started it; once it has connected, the file
        // goes (it keeps the token in memory for its reconnects).
        tokio::select! {
            () = wait_listener(&running, Duration::from_secs(30)) => {}
            () = &mut shutdown => return Ok(()),
        }
        let _ = std::fs::remove_file(&listener_token_file);
        let mut out = std::io::stdout().lock();
        writeln!(
            out,
            "Spark Connect server  sc://127.0.0.1:{}    (log {})",
            spark.connect_port,
            log_path.display()
        )?;
        writeln!(out, "sparkscope stream     {stream_url}")?;
        if creds.subscriber.is_some() {
            writeln!(out, "  its token           {}", token_file.display())?;
        }
        if creds.api.is_some() {
            writeln!(
                out,
                "sparkscope JSON API   http://{}/api/v1/applications  (token {})",
                addrs.http,
                api_token_file.display()
            )?;
        }
        writeln!(
            out,
            "In a notebook: %load_ext sparkscope, then \
             SparkSession.builder.remote(\"sc://127.0.0.1:{}\").getOrCreate().\nCtrl-C stops both.",
            spark.connect_port
        )?;
        out.flush()?;
        drop(out);
        tokio::select! {
            () = &mut shutdown => Ok(()),
            status = child.wait() => {
                let status = status?;
                bail!("the Spark Connect server exited ({status}); its log:\n{}", tail(&log_path))
            }
        }
    }
    .await;
    stop_spark(&mut child, spark.stop_timeout).await;
    if running.shutdown().await == Drained::TimedOut {
        tracing::warn!("grace period over; exiting with connections still open");
    }
    result
}

/// Waits until a listener has connected to the agent, at most `timeout`.
async fn wait_listener(agent: &sparkscope::agent::RunningAgent, timeout: Duration) {
    let deadline = tokio::time::Instant::now() + timeout;
    while tokio::time::Instant::now() < deadline {
        let connected = agent
            .store()
            .apps()
            .iter()
            .any(|a| sparkscope::model::lock(a).is_live());
        if connected {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    tracing::warn!("no listener connected within {} s", timeout.as_secs());
}

/// A file removed when this goes out of scope, however the run ends.
struct RemoveOnDrop(PathBuf);

impl Drop for RemoveOnDrop {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

async fn wait_ready(
    child: &mut Child,
    port: u16,
    timeout: Duration,
    log: &Path,
) -> anyhow::Result<()> {
    let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        if let Some(status) = child.try_wait()? {
            bail!(
                "the Spark Connect server exited ({status}) before it listened on {addr}; its log:\n{}",
                tail(log)
            );
        }
        let open = tokio::task::spawn_blocking(move || {
            TcpStream::connect_timeout(&addr, Duration::from_millis(500)).is_ok()
        })
        .await?;
        if open {
            return Ok(());
        }
        if tokio::time::Instant::now() > deadline {
            bail!(
                "the Spark Connect server did not listen on {addr} within {} s; its log:\n{}",
                timeout.as_secs(),
                tail(log)
            );
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// SIGTERM to Spark's process group, so its shutdown hook stops the context (the listener sends
/// the application's end); SIGKILL after `timeout`.
async fn stop_spark(child: &mut Child, timeout: Duration) {
    let Some(pid) = child.id() else {
        return; // already reaped
    };
    let group = nix::unistd::Pid::from_raw(pid as i32);
    let _ = nix::sys::signal::killpg(group, nix::sys::signal::Signal::SIGTERM);
    if tokio::time::timeout(timeout, child.wait()).await.is_err() {
        tracing::warn!("spark connect server did not stop in time; killing it");
        let _ = nix::sys::signal::killpg(group, nix::sys::signal::Signal::SIGKILL);
        let _ = child.wait().await;
    } else {
        tracing::info!("spark connect server stopped");
    }
}

fn tail(path: &Path) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(30)..].join("\n")
}

fn private_dir(dir: &Path) -> anyhow::Result<()> {
    use std::os::unix::fs::DirBuilderExt;
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .with_context(|| format!("cannot create {}", dir.display()))
}

/// A token in a file only the user can read (created so, never widened afterwards).
fn write_secret(path: &Path, token: &str) -> anyhow::Result<()> {
    use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)
        .with_context(|| format!("cannot write {}", path.display()))?;
    f.set_permissions(std::fs::Permissions::from_mode(0o600))?;
    writeln!(f, "{token}")?;
    Ok(())
}
