//! The command line: its subcommands, each in its own file, and the logging they share. Only
//! the `sparkscope` binary uses what is here; the agent itself is the library's.

mod cancel;
mod install;
mod replay;
mod serve;
mod server;

use clap::{CommandFactory, FromArgMatches, Parser, Subcommand, ValueEnum};

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
    Serve(Box<serve::ServeArgs>),
    /// Read Spark event logs and print their applications and jobs.
    Replay(replay::ReplayArgs),
    /// Stop a Connect session's work through a running agent (operators; needs the admin token).
    Cancel(cancel::CancelArgs),
    /// Run a local Spark Connect server (the installed pyspark's Spark) with the listener
    /// attached, and the agent beside it; Ctrl-C stops both. Credentials are made for the run and
    /// written to ~/.sparkscope (SPARKSCOPE_HOME), where notebooks on this machine find them.
    Server(Box<server::ServerArgs>),
    /// Print the path of the listener jar installed with this binary (for --jars).
    ListenerJar,
    /// Print the catalog of Prometheus metrics (Markdown), as kept in docs/metrics.md.
    MetricsCatalog,
}

pub fn main() -> anyhow::Result<()> {
    sparkscope::tls::install_crypto_provider();
    let cli = match Cli::from_arg_matches(&empty_env_is_unset(Cli::command()).get_matches()) {
        Ok(cli) => cli,
        Err(e) => e.exit(),
    };
    init_logging(cli.log_format);
    match cli.command {
        Command::Replay(args) => replay::run(args),
        Command::MetricsCatalog => {
            print!("{}", sparkscope::telemetry::catalog_markdown());
            Ok(())
        }
        Command::Cancel(args) => {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()?;
            rt.block_on(cancel::run(args))
        }
        Command::Serve(args) => multi_thread()?.block_on(serve::run(*args)),
        Command::Server(args) => multi_thread()?.block_on(server::run(*args)),
        Command::ListenerJar => {
            println!("{}", install::listener_jar()?.display());
            Ok(())
        }
    }
}

/// An environment variable set to the empty string counts as unset, as it always has: an empty
/// token is no token (and the agent then says what it needs), not a token anyone can give.
fn empty_env_is_unset(cmd: clap::Command) -> clap::Command {
    let cmd = cmd.mut_args(|a| {
        let empty = a
            .get_env()
            .is_some_and(|name| std::env::var_os(name).is_some_and(|v| v.is_empty()));
        if empty {
            a.env(None::<&str>)
        } else {
            a
        }
    });
    cmd.mut_subcommands(empty_env_is_unset)
}

fn multi_thread() -> std::io::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("sparkscope")
        .build()
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_command_line_is_well_formed() {
        // Unique ids and long names across every part's flags, valid requirements.
        Cli::command().debug_assert();
    }

    #[test]
    fn serve_starts_with_the_agents_defaults() {
        let cli = Cli::try_parse_from(["sparkscope", "serve"]).expect("parses");
        let Command::Serve(args) = cli.command else {
            panic!("serve");
        };
        // The environment may set flags here; the defaults of everything else must match.
        let ours = format!("{:?}", args.config.retention);
        assert_eq!(
            ours,
            format!("{:?}", sparkscope::model::Retention::default())
        );
    }
}
