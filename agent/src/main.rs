//! The `sparkscope` command: `serve` runs the agent beside a Spark Connect server, `server` runs
//! both on this machine, `replay` reads Spark event logs through the same pipeline.

use anyhow::{bail, Context};
use clap::{Args, Parser, Subcommand, ValueEnum};
use sparkscope::agent::{Agent, Config, Drained};
use sparkscope::auth::{Secret, SubscriberAuthConfig};
use sparkscope::control::tasks::TaskListConfig;
use sparkscope::control::ControlConfig;
use sparkscope::ingest::listener::IngestConfig;
use sparkscope::ingest::reconcile::ReconcileConfig;
use sparkscope::ingest::replay::ReadConfig;
use sparkscope::model::retention::LiveLimits;
use sparkscope::model::Retention;
use sparkscope::publish::rest;
use sparkscope::publish::stream::StreamConfig;
use sparkscope::tls::TlsConfig;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::{Duration, Instant};

#[derive(Parser)]
#[command(name = "sparkscope", version, about)]
struct Cli {
    /// Log format on stderr.
    #[arg(
        long,
        value_enum,
        default_value = "plain",
        env = "SPARKSCOPE_LOG_FORMAT",
        global = true
    )]
    log_format: LogFormat,
    #[command(subcommand)]
    command: Command,
}

#[derive(Clone, Copy, ValueEnum)]
enum LogFormat {
    Plain,
    Json,
}

#[derive(Subcommand)]
enum Command {
    /// Run the agent: accept listener connections and serve what they report.
    Serve(Box<ServeArgs>),
    /// Read Spark event logs and print their applications and jobs.
    Replay(ReplayArgs),
    /// Stop a Connect session's work through a running agent (operators; needs the admin token).
    Cancel(CancelArgs),
    /// Run a local Spark Connect server (the installed pyspark's Spark) with the listener
    /// attached, and the agent beside it; Ctrl-C stops both. Credentials are made for the run and
    /// written to ~/.sparkscope (SPARKSCOPE_HOME), where notebooks on this machine find them.
    Server(Box<ServerArgs>),
    /// Print the path of the listener jar installed with this binary (for --jars).
    ListenerJar,
    /// Print the catalog of Prometheus metrics (Markdown), as kept in docs/metrics.md.
    MetricsCatalog,
}

#[derive(Args)]
struct ServerArgs {
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

#[derive(Args)]
struct CancelArgs {
    /// The agent's HTTP address.
    #[arg(
        long,
        default_value = "http://127.0.0.1:4740",
        env = "SPARKSCOPE_AGENT_URL"
    )]
    agent: String,
    /// The agent's --admin-token.
    #[arg(long, env = "SPARKSCOPE_ADMIN_TOKEN", hide_env_values = true)]
    admin_token: String,
    /// Spark Connect session id.
    #[arg(long)]
    session: String,
    /// The session's user id; looked up from the session when left out.
    #[arg(long, default_value = "")]
    user: String,
    #[command(flatten)]
    target: CancelTarget,
    /// Reason recorded by Spark.
    #[arg(long, default_value = "cancelled by an operator through sparkscope")]
    reason: String,
}

#[derive(Args)]
#[group(required = true, multiple = false)]
struct CancelTarget {
    /// Every running operation with this client tag (a notebook cell run).
    #[arg(long)]
    tag: Option<String>,
    /// One operation.
    #[arg(long)]
    operation: Option<String>,
    /// One job, through the listener.
    #[arg(long)]
    job: Option<i32>,
}

#[derive(Args)]
struct ServeArgs {
    /// Address listeners connect to (the listener's `spark.sparkscope.agent`).
    #[arg(long, default_value = "127.0.0.1:4741", env = "SPARKSCOPE_INGEST")]
    ingest: SocketAddr,
    /// Address of the HTTP API.
    #[arg(long, default_value = "127.0.0.1:4740", env = "SPARKSCOPE_HTTP")]
    http: SocketAddr,
    /// Token listeners must prove they know (the listener's SPARKSCOPE_LISTENER_TOKEN or
    /// spark.sparkscope.tokenFile). Prefer the environment variable: a flag is visible to every
    /// local user in the process list.
    #[arg(long, env = "SPARKSCOPE_LISTENER_TOKEN", hide_env_values = true)]
    listener_token: Option<String>,
    /// Accept listeners without a token. Only for a machine where every local user is trusted.
    #[arg(long, env = "SPARKSCOPE_ALLOW_ANONYMOUS_LISTENERS")]
    allow_anonymous_listeners: bool,
    /// Bearer token of the HTTP JSON API, an operator's view of every application and session
    /// (the admin token works too). Required unless --allow-anonymous-api.
    #[arg(long, env = "SPARKSCOPE_API_TOKEN", hide_env_values = true)]
    api_token: Option<String>,
    /// Serve the JSON API without a token. Only for a machine where every local user is trusted.
    #[arg(long, env = "SPARKSCOPE_ALLOW_ANONYMOUS_API")]
    allow_anonymous_api: bool,
    /// Bearer token of GET /metrics; unset leaves it open (it holds no session ids or tags).
    #[arg(long, env = "SPARKSCOPE_METRICS_TOKEN", hide_env_values = true)]
    metrics_token: Option<String>,
    /// One token for every stream subscriber, who may then follow any session it names by
    /// session id and user id: for a one-user machine. Shared servers identify users with
    /// --subscriber-tokens-file or --jupyterhub-api-url.
    #[arg(long, env = "SPARKSCOPE_SUBSCRIBER_TOKEN", hide_env_values = true)]
    subscriber_token: Option<String>,
    /// A file of `<user> <token>` lines: a subscriber presenting a user's token follows and
    /// cancels only that Spark Connect user's sessions. Read again when it changes.
    #[arg(long, env = "SPARKSCOPE_SUBSCRIBER_TOKENS_FILE")]
    subscriber_tokens_file: Option<PathBuf>,
    /// JupyterHub's API URL (e.g. http://127.0.0.1:8081/hub/api): a subscriber presenting a
    /// Hub user's API token (the kernel's JUPYTERHUB_API_TOKEN) is that user.
    #[arg(long, env = "SPARKSCOPE_JUPYTERHUB_API_URL")]
    jupyterhub_api_url: Option<String>,
    /// How long JupyterHub's answer about a token is trusted, in seconds.
    #[arg(
        long,
        default_value_t = 60,
        env = "SPARKSCOPE_JUPYTERHUB_CACHE_SECONDS"
    )]
    jupyterhub_cache_seconds: u64,
    /// Serve the streams without a credential. Only for a machine where every local user is
    /// trusted.
    #[arg(long, env = "SPARKSCOPE_ALLOW_ANONYMOUS_SUBSCRIBERS")]
    allow_anonymous_subscribers: bool,
    /// Address of the gRPC stream (sparkscope.v1.Monitor).
    #[arg(long, default_value = "127.0.0.1:4742", env = "SPARKSCOPE_GRPC")]
    grpc: SocketAddr,
    /// At most one stream update per subscriber per this many milliseconds.
    #[arg(long, default_value_t = 100, env = "SPARKSCOPE_STREAM_INTERVAL_MS")]
    stream_interval_ms: u64,
    /// A subscriber that does not accept an update within this many milliseconds is dropped.
    #[arg(
        long,
        default_value_t = 5000,
        env = "SPARKSCOPE_SLOW_SUBSCRIBER_TIMEOUT_MS"
    )]
    slow_subscriber_timeout_ms: u64,
    /// Spark Connect's gRPC address for interrupts (e.g. http://127.0.0.1:15002); by default
    /// the address the server announces to the listener.
    #[arg(long, env = "SPARKSCOPE_SPARK_CONNECT")]
    spark_connect: Option<String>,
    /// Spark's UI address (e.g. http://driver:4040) for reconciliation with its REST API, for
    /// every application; by default the address each listener announces.
    #[arg(long, env = "SPARKSCOPE_SPARK_UI")]
    spark_ui: Option<String>,
    /// Spark UI address people open from the notebook, when it is not the one the driver
    /// announces (a proxy): `{host}`, `{port}` and `{app}` are filled in from the announced
    /// address, `{user}` with the Connect user of the session shown
    /// (e.g. https://hub.example/user/{user}/proxy/{port}).
    #[arg(long, env = "SPARKSCOPE_SPARK_UI_LINK_TEMPLATE")]
    spark_ui_link_template: Option<String>,
    /// Busy-slots samples kept per application for the notebook's Tasks view (one per stream
    /// interval at most, only when the value changed); past it the oldest goes.
    #[arg(long, default_value_t = 6000, env = "SPARKSCOPE_TASK_SAMPLES")]
    task_samples: usize,
    /// When a notebook opens a stage, at most this many of its longest tasks (and as many
    /// failed ones) are listed from Spark's REST API.
    #[arg(long, default_value_t = 200, env = "SPARKSCOPE_TASK_LIST_MAX")]
    task_list_max: usize,
    /// Task-list requests to Spark's REST API at once; more are answered `unavailable`.
    #[arg(long, default_value_t = 8, env = "SPARKSCOPE_MAX_TASK_LISTS_IN_FLIGHT")]
    max_task_lists_in_flight: usize,
    /// While jobs run, also reconcile with Spark's REST API this often (seconds); 0: only after
    /// a gap (a listener reconnect, dropped events).
    #[arg(
        long,
        default_value_t = 30,
        env = "SPARKSCOPE_RECONCILE_INTERVAL_SECONDS"
    )]
    reconcile_interval_seconds: u64,
    /// Sent to Spark Connect as a bearer token when the server sets
    /// spark.connect.authenticate.token.
    #[arg(long, env = "SPARKSCOPE_SPARK_CONNECT_TOKEN", hide_env_values = true)]
    spark_connect_token: Option<String>,
    /// Token for operators' cancel (`POST /api/v1/cancel`, `sparkscope cancel`); unset turns
    /// that endpoint off. Notebooks cancel through the stream, where only followed sessions may
    /// be cancelled.
    #[arg(long, env = "SPARKSCOPE_ADMIN_TOKEN", hide_env_values = true)]
    admin_token: Option<String>,
    /// Users that get their own label value in /metrics; later users share `other`.
    #[arg(long, default_value_t = 50, env = "SPARKSCOPE_METRICS_MAX_USERS")]
    metrics_max_users: usize,
    /// Sessions one subscriber may follow.
    #[arg(
        long,
        default_value_t = 64,
        env = "SPARKSCOPE_MAX_SESSIONS_PER_SUBSCRIBER"
    )]
    max_sessions_per_subscriber: usize,
    #[command(flatten)]
    retention: RetentionArgs,
    #[command(flatten)]
    live: LiveLimitArgs,
    /// Finished jobs, stages, operations and sessions older than this many seconds are dropped.
    #[arg(long, default_value_t = 6 * 3600, env = "SPARKSCOPE_RETAIN_SECONDS")]
    retain_seconds: u64,
    /// Lines longer than this many bytes are counted as malformed and skipped.
    #[arg(long, default_value_t = 32 << 20, env = "SPARKSCOPE_MAX_LINE_BYTES")]
    max_line_bytes: usize,
    /// Listener connections past their hello; more are refused.
    #[arg(
        long,
        default_value_t = 1024,
        env = "SPARKSCOPE_MAX_LISTENER_CONNECTIONS"
    )]
    max_listener_connections: usize,
    /// Connections that have not yet sent their hello (at most 16 KiB each); past it, the oldest
    /// is closed, so silent connections cannot keep a real listener out.
    #[arg(long, default_value_t = 64, env = "SPARKSCOPE_MAX_PENDING_LISTENERS")]
    max_pending_listeners: usize,
    /// A connection that sends no hello within this many milliseconds is closed.
    #[arg(
        long,
        default_value_t = 5000,
        env = "SPARKSCOPE_LISTENER_HELLO_TIMEOUT_MS"
    )]
    listener_hello_timeout_ms: u64,
    /// Stream subscribers (WebSocket and gRPC together); more are refused.
    #[arg(long, default_value_t = 4096, env = "SPARKSCOPE_MAX_SUBSCRIBERS")]
    max_subscribers: usize,
    /// Cancel requests being carried out at once; more are answered `unavailable`.
    #[arg(long, default_value_t = 64, env = "SPARKSCOPE_MAX_CANCELS_IN_FLIGHT")]
    max_cancels_in_flight: usize,
    /// TLS on every socket: the certificate (chain), PEM. Listeners check it against their
    /// spark.sparkscope.tls.trustCert; notebooks against SPARKSCOPE_CA_FILE.
    #[arg(long, env = "SPARKSCOPE_TLS_CERT", requires = "tls_key")]
    tls_cert: Option<PathBuf>,
    /// The certificate's private key, PEM.
    #[arg(long, env = "SPARKSCOPE_TLS_KEY", requires = "tls_cert")]
    tls_key: Option<PathBuf>,
    /// On SIGINT/SIGTERM, how long open connections get to finish.
    #[arg(long, default_value_t = 5, env = "SPARKSCOPE_SHUTDOWN_GRACE_SECONDS")]
    shutdown_grace_seconds: u64,
    /// Once listening, write the bound addresses to this file as JSON (`ingest`, `http`,
    /// `grpc`): with port 0 in an address the system picks a free port.
    #[arg(long, env = "SPARKSCOPE_ADDRESSES_FILE")]
    addresses_file: Option<PathBuf>,
    /// Stop when the process with this id is no longer this one's parent (a notebook kernel's
    /// private agent stops with its kernel, however the kernel ends).
    #[arg(long, env = "SPARKSCOPE_PARENT_PID")]
    parent_pid: Option<u32>,
}

#[derive(Args)]
struct LiveLimitArgs {
    /// Running jobs kept per application; past it the oldest is ended as UNKNOWN (its end was
    /// lost).
    #[arg(long, default_value_t = 10_000, env = "SPARKSCOPE_MAX_RUNNING_JOBS")]
    max_running_jobs: usize,
    /// Live stage attempts kept per application; past it the oldest is retired.
    #[arg(long, default_value_t = 10_000, env = "SPARKSCOPE_MAX_LIVE_STAGES")]
    max_live_stages: usize,
    /// Open Connect sessions kept per application; past it the oldest is closed.
    #[arg(long, default_value_t = 10_000, env = "SPARKSCOPE_MAX_OPEN_SESSIONS")]
    max_open_sessions: usize,
    /// Unclosed Connect operations kept per application; past it the oldest is closed.
    #[arg(
        long,
        default_value_t = 10_000,
        env = "SPARKSCOPE_MAX_UNCLOSED_OPERATIONS"
    )]
    max_unclosed_operations: usize,
    /// Executors kept per application; past it the one added first goes.
    #[arg(long, default_value_t = 10_000, env = "SPARKSCOPE_MAX_EXECUTORS")]
    max_executors: usize,
}

impl LiveLimitArgs {
    fn limits(&self) -> LiveLimits {
        LiveLimits {
            running_jobs: self.max_running_jobs,
            live_stages: self.max_live_stages,
            open_sessions: self.max_open_sessions,
            unclosed_operations: self.max_unclosed_operations,
            executors: self.max_executors,
        }
    }
}

#[derive(Args)]
struct RetentionArgs {
    /// Jobs kept per application (like spark.ui.retainedJobs); running jobs always stay.
    #[arg(long, default_value_t = 1000, env = "SPARKSCOPE_RETAIN_JOBS")]
    retain_jobs: usize,
    /// Finished stage attempts kept per application.
    #[arg(long, default_value_t = 1000, env = "SPARKSCOPE_RETAIN_STAGES")]
    retain_stages: usize,
    /// Closed Connect operations kept per application.
    #[arg(long, default_value_t = 1000, env = "SPARKSCOPE_RETAIN_OPERATIONS")]
    retain_operations: usize,
    /// Closed Connect sessions kept per application.
    #[arg(long, default_value_t = 1000, env = "SPARKSCOPE_RETAIN_SESSIONS")]
    retain_sessions: usize,
}

impl RetentionArgs {
    fn retention(&self, max_age: Option<Duration>, live: LiveLimits) -> Retention {
        Retention {
            live,
            jobs: self.retain_jobs,
            stages: self.retain_stages,
            operations: self.retain_operations,
            sessions: self.retain_sessions,
            max_age_ms: max_age.map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX)),
            ..Retention::default()
        }
    }
}

#[derive(Args)]
struct ReplayArgs {
    /// An event-log file (plain or zstd), a rolling `eventlog_v2_<appId>` directory, or a
    /// directory holding several logs.
    path: PathBuf,
    /// Output format.
    #[arg(long, value_enum, default_value = "json")]
    format: ReplayFormat,
    /// Megabytes of the log that may be read ahead of the model: the files of a rolling log are
    /// decompressed and parsed in parallel (one thread per core), applied in order.
    #[arg(long, default_value_t = 256, env = "SPARKSCOPE_REPLAY_READ_AHEAD_MB")]
    read_ahead_mb: usize,
    #[command(flatten)]
    retention: RetentionArgs,
}

#[derive(Clone, Copy, ValueEnum)]
enum ReplayFormat {
    /// `{"applications":[…]}`, the JSON of `GET /api/v1/applications`.
    Json,
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    init_logging(cli.log_format);
    match cli.command {
        Command::Replay(args) => replay(args),
        Command::MetricsCatalog => {
            print!("{}", sparkscope::telemetry::catalog_markdown());
            Ok(())
        }
        Command::Cancel(args) => {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()?;
            rt.block_on(cancel(args))
        }
        Command::Serve(args) => {
            let rt = tokio::runtime::Builder::new_multi_thread()
                .enable_all()
                .thread_name("sparkscope")
                .build()?;
            rt.block_on(serve(*args))
        }
        Command::Server(args) => {
            let rt = tokio::runtime::Builder::new_multi_thread()
                .enable_all()
                .thread_name("sparkscope")
                .build()?;
            rt.block_on(server(*args))
        }
        Command::ListenerJar => {
            println!("{}", sparkscope::install::listener_jar()?.display());
            Ok(())
        }
    }
}

fn init_logging(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_env("SPARKSCOPE_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    // Colours only for a person at a terminal, never in files or collected logs.
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr())
        && std::env::var_os("NO_COLOR").is_none();
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(ansi);
    match format {
        LogFormat::Plain => builder.init(),
        LogFormat::Json => builder.json().init(),
    }
}

fn replay(args: ReplayArgs) -> anyhow::Result<()> {
    let started = Instant::now();
    let read = ReadConfig {
        read_ahead: args.read_ahead_mb.saturating_mul(1 << 20),
        ..ReadConfig::default()
    };
    let (apps, stats) = sparkscope::ingest::replay::replay_with(
        &args.path,
        &args.retention.retention(None, LiveLimits::default()),
        read,
    )?;
    let secs = started.elapsed().as_secs_f64();
    let out = match args.format {
        ReplayFormat::Json => {
            let applications = apps.iter().map(rest::application).collect();
            serde_json::to_string(&rest::Applications { applications })?
        }
    };
    println!("{out}");
    tracing::info!(
        lines = stats.lines,
        malformed = stats.parse_errors,
        unknown_events = stats.unknown_events,
        seconds = format!("{secs:.3}"),
        lines_per_second = format!("{:.0}", stats.lines as f64 / secs.max(1e-9)),
        "replayed"
    );
    Ok(())
}

async fn cancel(args: CancelArgs) -> anyhow::Result<()> {
    let t = &args.target;
    let mut body = serde_json::json!({
        "requestId": "cli",
        "sessionId": args.session,
        "userId": args.user,
        "reason": args.reason,
    });
    if let Some(tag) = &t.tag {
        body["tag"] = tag.clone().into();
    } else if let Some(op) = &t.operation {
        body["operationId"] = op.clone().into();
    } else if let Some(job) = t.job {
        body["jobId"] = job.into();
    }
    let url = format!("{}/api/v1/cancel", args.agent.trim_end_matches('/'));
    let resp = reqwest::Client::new()
        .post(&url)
        .bearer_auth(&args.admin_token)
        .json(&body)
        .timeout(Duration::from_secs(15))
        .send()
        .await
        .with_context(|| format!("cannot reach the agent at {url}"))?;
    let status = resp.status();
    let v: serde_json::Value = resp
        .json()
        .await
        .context("the agent's answer is not JSON")?;
    let msg = v["message"]
        .as_str()
        .or(v["error"].as_str())
        .unwrap_or("")
        .to_owned();
    if !status.is_success() {
        bail!("{msg} ({status})");
    }
    println!("{msg}");
    for id in v["interruptedOperationIds"]
        .as_array()
        .into_iter()
        .flatten()
    {
        println!("interrupted operation {}", id.as_str().unwrap_or_default());
    }
    for id in v["cancelledJobIds"].as_array().into_iter().flatten() {
        println!("cancelled job {id}");
    }
    Ok(())
}

async fn serve(args: ServeArgs) -> anyhow::Result<()> {
    let (addresses_file, parent) = (args.addresses_file.clone(), args.parent_pid);
    let agent = Agent::build(config(args)).await?;
    if let Some(path) = addresses_file {
        let a = agent.addrs();
        let json = serde_json::json!({
            "ingest": a.ingest.to_string(),
            "http": a.http.to_string(),
            "grpc": a.grpc.to_string(),
        });
        // Whole or not at all: the reader polls for the file.
        let tmp = path.with_extension("tmp");
        std::fs::write(&tmp, json.to_string())
            .and_then(|()| std::fs::rename(&tmp, &path))
            .with_context(|| format!("cannot write {}", path.display()))?;
    }
    let agent = agent.spawn();
    tokio::select! {
        () = shutdown_signal() => {}
        () = parent_gone(parent) => tracing::info!("parent process gone"),
    }
    tracing::info!("shutting down");
    if agent.shutdown().await == Drained::TimedOut {
        tracing::warn!("grace period over; exiting with connections still open");
    }
    Ok(())
}

async fn server(mut args: ServerArgs) -> anyhow::Result<()> {
    use sparkscope::local::{new_token, Credentials, SparkOptions};
    let serve = &mut args.serve;
    let listener = match &serve.listener_token {
        Some(t) => t.clone(),
        None => new_token()?,
    };
    serve.listener_token = Some(listener.clone());
    // The stream's token for notebooks on this machine, unless subscribers are identified
    // another way.
    let identified = serve.subscriber_tokens_file.is_some()
        || serve.jupyterhub_api_url.is_some()
        || serve.allow_anonymous_subscribers;
    let subscriber = match &serve.subscriber_token {
        Some(t) => Some(t.clone()),
        None if identified => None,
        None => Some(new_token()?),
    };
    serve.subscriber_token = subscriber.clone();
    let api = match (&serve.api_token, serve.allow_anonymous_api) {
        (Some(t), _) => Some(t.clone()),
        (None, true) => None,
        (None, false) => Some(new_token()?),
    };
    serve.api_token = api.clone();
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
    sparkscope::local::run(config(args.serve), spark, creds, shutdown_signal()).await
}

/// The agent's configuration from its flags.
fn config(args: ServeArgs) -> Config {
    Config {
        ingest_addr: args.ingest,
        http_addr: args.http,
        grpc_addr: args.grpc,
        ingest: IngestConfig {
            token: Secret::new(args.listener_token),
            max_line_bytes: args.max_line_bytes,
            hello_timeout: Duration::from_millis(args.listener_hello_timeout_ms),
            max_connections: args.max_listener_connections,
            max_pending: args.max_pending_listeners,
            tls: None,
        },
        allow_anonymous_listeners: args.allow_anonymous_listeners,
        stream: StreamConfig {
            auth: SubscriberAuthConfig {
                shared: Secret::new(args.subscriber_token),
                anonymous: args.allow_anonymous_subscribers,
                tokens_file: args.subscriber_tokens_file,
                jupyterhub_api: args.jupyterhub_api_url.filter(|u| !u.is_empty()),
                jupyterhub_cache: Duration::from_secs(args.jupyterhub_cache_seconds),
            },
            interval: Duration::from_millis(args.stream_interval_ms),
            slow_timeout: Duration::from_millis(args.slow_subscriber_timeout_ms),
            max_sessions: args.max_sessions_per_subscriber,
            max_subscribers: args.max_subscribers,
            ui_link_template: args.spark_ui_link_template.filter(|s| !s.is_empty()),
        },
        api_token: Secret::new(args.api_token),
        allow_anonymous_api: args.allow_anonymous_api,
        metrics_token: Secret::new(args.metrics_token),
        admin_token: Secret::new(args.admin_token),
        control: ControlConfig {
            spark_connect: args.spark_connect.filter(|s| !s.is_empty()),
            spark_connect_token: Secret::new(args.spark_connect_token),
            max_in_flight: args.max_cancels_in_flight,
        },
        tasks: TaskListConfig {
            spark_ui: args.spark_ui.clone().filter(|s| !s.is_empty()),
            max_tasks: args.task_list_max,
            max_in_flight: args.max_task_lists_in_flight,
            ..TaskListConfig::default()
        },
        reconcile: ReconcileConfig {
            spark_ui: args.spark_ui.filter(|s| !s.is_empty()),
            interval: (args.reconcile_interval_seconds > 0)
                .then(|| Duration::from_secs(args.reconcile_interval_seconds)),
            ..ReconcileConfig::default()
        },
        retention: Retention {
            task_samples: args.task_samples,
            ..args.retention.retention(
                Some(Duration::from_secs(args.retain_seconds)),
                args.live.limits(),
            )
        },
        metrics_max_users: args.metrics_max_users,
        shutdown_grace: Duration::from_secs(args.shutdown_grace_seconds),
        tls: args
            .tls_cert
            .zip(args.tls_key)
            .map(|(cert, key)| TlsConfig { cert, key }),
        ..Config::default()
    }
}

/// Resolves once `pid` is no longer this process's parent; never without a pid.
async fn parent_gone(pid: Option<u32>) {
    #[cfg(unix)]
    if let Some(pid) = pid {
        loop {
            if std::os::unix::process::parent_id() != pid {
                return;
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    }
    std::future::pending::<()>().await;
}

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {}
        _ = term => {}
    }
}
