//! The `graywatch` binary: parses arguments and hands over to the library.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use graywatch::config::Settings;
use graywatch::startup::{Application, shutdown_signal};
use graywatch::telemetry::{self, LogFormat};
use graywatch::time::Clock;

/// Windows are built from 13 KiB histograms many times a second; glibc's allocator hands
/// such churn back to the kernel and faults it in again, mimalloc keeps it in its free lists.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

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
        /// Serve a non-loopback address without tokens (sets auth.allow_anonymous).
        #[arg(long, env = "GRAYWATCH_ALLOW_ANONYMOUS")]
        allow_anonymous: bool,
    },
    /// Validate a configuration file and print every problem found.
    CheckConfig {
        /// The TOML file to check.
        file: PathBuf,
    },
    /// Run the detectors over a recording (NDJSON events with `ts`) on its event time and
    /// print each alert transition as a JSON line.
    Replay {
        /// TOML configuration (its [detection], [dependencies] and [breakers] sections are
        /// used).
        #[arg(long, env = "GRAYWATCH_CONFIG")]
        config: Option<PathBuf>,
        /// Also print a JSON line per breaker change (`"breaker"` holds the view after it).
        #[arg(long)]
        breakers: bool,
        /// NDJSON file of events; `-` reads standard input; a `.gz` name is decompressed.
        path: PathBuf,
    },
    /// Send a test message through a configured notifier and report the outcome.
    TestNotifier {
        /// TOML configuration holding the notifier.
        #[arg(long, env = "GRAYWATCH_CONFIG")]
        config: PathBuf,
        /// The notifier's `name`.
        name: String,
    },
    /// Run the daemon on a throw-away database with built-in traffic that develops a gray
    /// failure (one slow instance) and heals; print when its alert fires and resolves.
    Demo {
        /// Address to listen on.
        #[arg(long, default_value = "127.0.0.1:9797")]
        listen: SocketAddr,
        /// When the gray failure starts.
        #[arg(long, default_value = "60s", value_parser = humantime::parse_duration)]
        fault_after: std::time::Duration,
        /// How long it lasts.
        #[arg(long, default_value = "2m", value_parser = humantime::parse_duration)]
        fault_for: std::time::Duration,
        /// Generate no traffic: only the daemon, for events you send.
        #[arg(long)]
        no_traffic: bool,
        /// Seed of the traffic generator.
        #[arg(long, default_value_t = 1)]
        seed: u64,
    },
    /// Run the synthetic scenario suite and print how detection did.
    Scenarios {
        /// Seeds to run each scenario with.
        #[arg(long, value_delimiter = ',', default_value = "1,2,3")]
        seeds: Vec<u64>,
        /// Output: a Markdown table, or one JSON object per run.
        #[arg(long, value_enum, default_value_t = ScenarioFormat::Markdown)]
        format: ScenarioFormat,
        /// Instead of scoring, write the named scenario's events as NDJSON to stdout
        /// (with the first seed), e.g. to feed `graywatch replay`.
        #[arg(long)]
        emit: Option<String>,
        /// Worker threads.
        #[arg(long, default_value_t = 2)]
        threads: usize,
    },
}

#[derive(Clone, Copy, clap::ValueEnum)]
enum ScenarioFormat {
    Markdown,
    Json,
}

fn main() -> ExitCode {
    match Cli::parse().command {
        Command::Serve {
            config,
            listen,
            database,
            log_format,
            allow_anonymous,
        } => {
            telemetry::init(log_format);
            let settings = match load_settings(config, listen, database, allow_anonymous) {
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
        Command::Demo {
            listen,
            fault_after,
            fault_for,
            no_traffic,
            seed,
        } => run_demo(graywatch::demo::DemoOptions {
            listen,
            fault_after,
            fault_for,
            traffic: !no_traffic,
            seed,
        }),
        Command::Replay {
            config,
            path,
            breakers,
        } => run_replay(config, &path, breakers),
        Command::TestNotifier { config, name } => run_test_notifier(&config, &name),
        Command::Scenarios {
            seeds,
            format,
            emit,
            threads,
        } => run_scenarios(&seeds, format, emit, threads),
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
    allow_anonymous: bool,
) -> anyhow::Result<Settings> {
    // The file is validated with the command line applied: `--listen` decides whether tokens
    // are needed.
    let label = config
        .as_ref()
        .map_or("command line".to_string(), |p| p.display().to_string());
    let mut settings = match config {
        Some(path) => {
            let p = path.display().to_string();
            let text = std::fs::read_to_string(&path)
                .map_err(|e| anyhow::anyhow!("cannot read {p}: {e}"))?;
            toml::from_str::<Settings>(&text).map_err(|e| anyhow::anyhow!("{p}: {e}"))?
        }
        None => Settings::default(),
    };
    if let Some(listen) = listen {
        settings.listen = listen;
    }
    if let Some(database) = database {
        settings.database = database;
    }
    if allow_anonymous {
        settings.auth.allow_anonymous = true;
    }
    Ok(settings.validated(&label)?)
}

async fn serve(settings: Settings) -> anyhow::Result<()> {
    let app = Application::build(settings, Clock::System).await?;
    app.run_until_stopped(shutdown_signal()).await
}

fn run_demo(options: graywatch::demo::DemoOptions) -> ExitCode {
    // The demo's own lines go to stdout, the daemon's logs to stderr.
    telemetry::init(LogFormat::Text);
    let runtime = tokio::runtime::Runtime::new().expect("cannot start the tokio runtime");
    let outcome = runtime.block_on(async {
        let (tx, mut rx) = tokio::sync::mpsc::channel(64);
        let printer = tokio::spawn(async move {
            while let Some(event) = rx.recv().await {
                println!("{event}");
            }
        });
        let result = graywatch::demo::run(options, shutdown_signal(), tx).await;
        let _ = printer.await;
        result
    });
    match outcome {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(1)
        }
    }
}

fn run_replay(config: Option<PathBuf>, path: &std::path::Path, breakers: bool) -> ExitCode {
    telemetry::init(LogFormat::Text);
    let settings = match config.map(|c| Settings::from_file(&c)).transpose() {
        Ok(s) => s.unwrap_or_default(),
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(1);
        }
    };
    let input: Box<dyn std::io::Read> = if path.as_os_str() == "-" {
        Box::new(std::io::stdin().lock())
    } else {
        match std::fs::File::open(path) {
            Ok(f) => Box::new(f),
            Err(e) => {
                eprintln!("error: cannot open {}: {e}", path.display());
                return ExitCode::from(1);
            }
        }
    };
    let input: Box<dyn std::io::Read> = if path.extension().is_some_and(|e| e == "gz") {
        Box::new(flate2::read::MultiGzDecoder::new(input))
    } else {
        input
    };
    let reader = std::io::BufReader::with_capacity(1 << 20, input);
    let mut out = std::io::BufWriter::new(std::io::stdout().lock());
    let mut diag = std::io::stderr().lock();
    let result = graywatch::replay::replay_with(
        reader,
        &mut out,
        &mut diag,
        settings.detection,
        settings.dependencies,
        settings.limits.series(),
        breakers.then_some(settings.breakers),
    );
    use std::io::Write;
    let _ = out.flush();
    match result {
        Ok(s) => {
            let span = match (s.first_ts_ms, s.last_ts_ms) {
                (Some(a), Some(b)) => format!(
                    "{} to {}",
                    graywatch::time::to_rfc3339(a),
                    graywatch::time::to_rfc3339(b)
                ),
                _ => "no events".into(),
            };
            eprintln!(
                "replayed {} events ({} malformed lines skipped, {} refused) spanning {span}; {} alerts fired, {} updated, {} resolved; {:.2} s, {:.0} events/s",
                s.events,
                s.malformed,
                s.refused,
                s.fired,
                s.updated,
                s.resolved,
                s.elapsed_s,
                s.events as f64 / s.elapsed_s.max(1e-9)
            );
            eprintln!("{}", s.ticks.describe());
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(1)
        }
    }
}

fn run_scenarios(
    seeds: &[u64],
    format: ScenarioFormat,
    emit: Option<String>,
    threads: usize,
) -> ExitCode {
    use graywatch::scenario;
    use std::io::Write;
    let settings = Settings::default();
    if let Some(name) = emit {
        let seed = seeds.first().copied().unwrap_or(1);
        let Some(s) = scenario::suite(seed).into_iter().find(|s| s.name == name) else {
            let names: Vec<String> = scenario::suite(seed).into_iter().map(|s| s.name).collect();
            eprintln!(
                "error: unknown scenario {name:?}; one of {}",
                names.join(", ")
            );
            return ExitCode::from(1);
        };
        let mut out = std::io::BufWriter::new(std::io::stdout().lock());
        let mut failed = None;
        s.generate(seed, |e| {
            if failed.is_none() {
                let line = serde_json::json!({
                    "dependency": e.dependency.as_str(),
                    "duration_ms": e.duration_us as f64 / 1000.0,
                    "outcome": e.outcome.as_str(),
                    "ts": e.ts_ms,
                    "instance": e.instance.as_ref().map(|l| l.as_str()),
                    "zone": e.zone.as_ref().map(|l| l.as_str()),
                    "source": e.source.as_ref().map(|l| l.as_str()),
                });
                if let Err(err) = writeln!(out, "{line}") {
                    failed = Some(err);
                }
            }
        });
        let _ = out.flush();
        return if failed.is_some() {
            ExitCode::from(1)
        } else {
            ExitCode::SUCCESS
        };
    }
    let results = scenario::run_suite(seeds, &settings.detection, &settings.dependencies, threads);
    match format {
        ScenarioFormat::Markdown => print!("{}", scenario::markdown_table(&results)),
        ScenarioFormat::Json => {
            for r in &results {
                println!("{}", serde_json::to_string(r).expect("serializable"));
            }
        }
    }
    if results.iter().all(scenario::passes) {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(2)
    }
}

fn run_test_notifier(config: &std::path::Path, name: &str) -> ExitCode {
    use graywatch::actions::notice::Notice;
    use graywatch::actions::notifier::{DeliveryError, Notifier};
    let settings = match Settings::from_file(config) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(1);
        }
    };
    let Some(cfg) = settings.notifiers.iter().find(|n| n.name == name) else {
        let names: Vec<&str> = settings.notifiers.iter().map(|n| n.name.as_str()).collect();
        eprintln!(
            "error: no notifier named {name:?} in {}; configured: {}",
            config.display(),
            names.join(", ")
        );
        return ExitCode::from(1);
    };
    let runtime = tokio::runtime::Runtime::new().expect("cannot start the tokio runtime");
    let outcome = runtime.block_on(async {
        let notifier = Notifier::new(cfg)?;
        let id = graywatch::actions::outbox::new_delivery_id();
        let notice = Notice::Test {
            notifier: name.to_string(),
            at: graywatch::time::to_rfc3339(chrono::Utc::now().timestamp_millis()),
        };
        notifier
            .deliver(&id, &notice)
            .await
            .map(|()| id)
            .map_err(anyhow::Error::from)
    });
    match outcome {
        Ok(id) => {
            println!("sent a test notification through {name} (delivery id {id})");
            ExitCode::SUCCESS
        }
        Err(e) => {
            let kind = match e.downcast_ref::<DeliveryError>() {
                Some(DeliveryError::Transient(_)) => " (transient: would be retried)",
                Some(DeliveryError::Permanent(_)) => " (permanent: would not be retried)",
                None => "",
            };
            eprintln!("error: test notification through {name} failed{kind}: {e:#}");
            ExitCode::from(1)
        }
    }
}
