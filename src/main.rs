//! The `graywatch` binary: parses arguments and hands over to the library.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use graywatch::config::Settings;
use graywatch::startup::{Application, shutdown_signal};
use graywatch::telemetry::{self, LogFormat};
use graywatch::time::Clock;

#[derive(Parser)]
#[command(
    name = "graywatch",
    version,
    about = "Gray-failure monitoring for service dependencies."
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the daemon.
    Serve {
        /// TOML configuration file (optional: every key has a default).
        #[arg(long, env = "GRAYWATCH_CONFIG")]
        config: Option<PathBuf>,
        /// Address to listen on [default: 127.0.0.1:9797].
        #[arg(long, env = "GRAYWATCH_LISTEN")]
        listen: Option<SocketAddr>,
        /// Database URL [default: sqlite://graywatch.db].
        #[arg(long, env = "GRAYWATCH_DATABASE")]
        database: Option<String>,
        /// Log format.
        #[arg(long, env = "GRAYWATCH_LOG_FORMAT", value_enum, default_value_t = LogFormat::Text)]
        log_format: LogFormat,
    },
    /// Validate a configuration file and print every problem found.
    CheckConfig {
        /// The TOML file to check.
        file: PathBuf,
    },
}

fn main() -> ExitCode {
    match Cli::parse().command {
        Command::Serve {
            config,
            listen,
            database,
            log_format,
        } => {
            telemetry::init(log_format);
            let settings = match load_settings(config, listen, database) {
                Ok(s) => s,
                Err(e) => {
                    eprintln!("error: {e}");
                    return ExitCode::from(1);
                }
            };
            let runtime = tokio::runtime::Runtime::new().expect("cannot start the tokio runtime");
            match runtime.block_on(serve(settings)) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    tracing::error!(error = format!("{e:#}"), "graywatch stopped on an error.");
                    ExitCode::from(1)
                }
            }
        }
        Command::CheckConfig { file } => match Settings::from_file(&file) {
            Ok(_) => {
                println!("{}: ok", file.display());
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("{e}");
                ExitCode::from(1)
            }
        },
    }
}

fn load_settings(
    config: Option<PathBuf>,
    listen: Option<SocketAddr>,
    database: Option<String>,
) -> anyhow::Result<Settings> {
    let mut settings = match config {
        Some(path) => Settings::from_file(&path)?,
        None => Settings::default(),
    };
    if let Some(listen) = listen {
        settings.listen = listen;
    }
    if let Some(database) = database {
        settings.database = database;
    }
    Ok(settings.validated("command line")?)
}

async fn serve(settings: Settings) -> anyhow::Result<()> {
    let app = Application::build(settings, Clock::System).await?;
    app.run_until_stopped(shutdown_signal()).await
}
