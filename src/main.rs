//! The `cachecar` binary: parses the CLI, sets up logging, loads the config
//! and runs the app until SIGTERM/SIGINT. Everything else is in the library.

#![forbid(unsafe_code)]
#![deny(rust_2018_idioms)]

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context as _;
use cachecar::App;
use cachecar::config::{self, ConfigError, RuntimeConfig};
use cachecar::demo::{self, DemoApi};
use clap::{Parser, Subcommand, ValueEnum};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tracing_appender::non_blocking::WorkerGuard;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{EnvFilter, Layer, Registry};

/// mimalloc: under the miss path's churn (entries of similar sizes
/// allocated and evicted from several threads) glibc's per-thread arenas
/// held about twice the live bytes (docs/benchmarks.md, "Memory"). Built
/// with `no_thp`: asked for transparent huge pages, its arenas grew in
/// 2 MiB pages, 21 MiB resident at idle against 12 MiB without.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Exit code for an invalid config or command line (like `sysexits`' EX_USAGE
/// family, but the contract fixes 2).
const EXIT_CONFIG: u8 = 2;

/// A caching reverse proxy that runs beside an existing HTTP API.
#[derive(Parser, Debug)]
#[command(version, about, propagate_version = true)]
struct Cli {
    /// Log format.
    #[arg(long, global = true, value_enum, default_value_t = LogFormat::Pretty, env = "CACHECAR_LOG_FORMAT")]
    log_format: LogFormat,
    /// Log filter, RUST_LOG syntax (e.g. `info,cachecar::access=warn`).
    #[arg(long, global = true, env = "RUST_LOG", default_value = "info")]
    log_filter: String,
    /// Config file (for `run`, the default command, and `check`).
    #[arg(long, short, global = true, env = "CACHECAR_CONFIG")]
    config: Option<PathBuf>,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Run the proxy (the default).
    Run,
    /// Validate the config, print the route table and what each invalidation
    /// rule purges; exit 0 if valid, 2 with every error listed.
    Check,
    /// Run the demo API with cachecar in front of it; no other service needed.
    Demo {
        /// Where cachecar listens.
        #[arg(long, default_value = "127.0.0.1:8080")]
        listen: SocketAddr,
        /// Where the admin endpoints listen.
        #[arg(long, default_value = "127.0.0.1:9090")]
        admin_listen: SocketAddr,
        /// Simulated database latency of the demo API.
        #[arg(long, default_value = "200ms", value_parser = cachecar::config::parse_duration)]
        latency: Duration,
    },
    /// Exit 0 if `url` answers 200 within a second, else 1: a container
    /// health check that needs no curl in the image.
    Healthcheck {
        /// What to ask (plain http, e.g. the admin port's /readyz).
        #[arg(long, default_value = "http://127.0.0.1:9090/healthz")]
        url: String,
    },
    /// Run the demo API alone (the "existing app" in docker-compose).
    DemoApi {
        /// Where the demo API listens.
        #[arg(long, default_value = "127.0.0.1:8000")]
        listen: SocketAddr,
        /// Simulated database latency.
        #[arg(long, default_value = "200ms", value_parser = cachecar::config::parse_duration)]
        latency: Duration,
    },
}

#[derive(Clone, Copy, Debug, ValueEnum)]
enum LogFormat {
    /// Human-readable lines.
    Pretty,
    /// One JSON object per line.
    Json,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    if let Err(e) = EnvFilter::try_new(&cli.log_filter) {
        eprintln!("cachecar: invalid --log-filter / RUST_LOG: {e}");
        return ExitCode::from(EXIT_CONFIG);
    }
    let command = cli.command.as_ref().unwrap_or(&Command::Run);
    // `run` starts its logs itself, once the config is read.
    let _logs = match command {
        Command::Run => None,
        _ => match init_tracing(cli.log_format, &cli.log_filter) {
            Ok(guard) => Some(guard),
            Err(_) => return ExitCode::from(EXIT_CONFIG),
        },
    };
    match command {
        Command::Check => check(cli.config.as_deref()),
        Command::Run => run(&cli),
        Command::Demo {
            listen,
            admin_listen,
            latency,
        } => run_async(run_demo(*listen, *admin_listen, *latency)),
        Command::DemoApi { listen, latency } => run_async(run_demo_api(*listen, *latency)),
        Command::Healthcheck { url } => healthcheck(url),
    }
}

fn init_tracing(format: LogFormat, filter: &str) -> anyhow::Result<WorkerGuard> {
    init_tracing_with(format, filter, None)
}

/// Log lines that may wait for the writer thread; past this they are
/// dropped and counted (`cachecar_log_lines_dropped_total`), so a slow
/// reader of stderr never holds up a request.
const LOG_QUEUE_LINES: usize = 65_536;
/// The writer thread's buffer: lines are written in batches of up to this
/// much, one `write` for many lines.
const LOG_BUFFER_BYTES: usize = 64 * 1024;

/// The subscriber: logs to stderr under `filter`, and the spans of
/// `cachecar::otel` to `otel` when traces are exported. Lines are written
/// by a thread of their own, off the request path; keep the guard until
/// the end, which flushes what is queued.
fn init_tracing_with(
    format: LogFormat,
    filter: &str,
    otel: Option<OtelLayer>,
) -> anyhow::Result<WorkerGuard> {
    let filter = EnvFilter::try_new(filter)?;
    let (writer, guard) = tracing_appender::non_blocking::NonBlockingBuilder::default()
        .buffered_lines_limit(LOG_QUEUE_LINES)
        .lossy(true)
        .thread_name("cachecar-log")
        .finish(std::io::BufWriter::with_capacity(
            LOG_BUFFER_BYTES,
            std::io::stderr(),
        ));
    let dropped = writer.error_counter();
    cachecar::metrics::count_log_drops(move || dropped.dropped_lines() as u64);
    if matches!(format, LogFormat::Json) {
        cachecar::proxy::write_access_log_to(writer.clone());
    }
    let logs = tracing_subscriber::fmt::layer().with_writer(writer);
    let logs = match format {
        LogFormat::Pretty => logs.boxed(),
        LogFormat::Json => logs.json().flatten_event(true).boxed(),
    };
    tracing_subscriber::registry()
        .with(otel.map(|layer| layer.with_filter(cachecar::telemetry::only_ours())))
        .with(logs.with_filter(filter))
        .try_init()?;
    Ok(guard)
}

/// The trace layer, over the subscriber's registry.
type OtelLayer = Box<dyn Layer<Registry> + Send + Sync>;

/// `run`: the config is read before the logs start (its errors are
/// printed as they are), so that trace export, which needs the runtime,
/// is part of the subscriber from its first span.
fn run(cli: &Cli) -> ExitCode {
    let config = match load(cli.config.as_deref()) {
        Ok(config) => config,
        Err(code) => return code,
    };
    let (format, filter) = (cli.log_format, cli.log_filter.clone());
    run_async(async move {
        let traces = match config.traces.enabled {
            true => Some(cachecar::telemetry::start::<Registry>(&config.traces)?),
            false => None,
        };
        let (traces, otel) = match traces {
            Some((traces, layer)) => (Some(traces), Some(Box::new(layer) as OtelLayer)),
            None => (None, None),
        };
        let _logs = init_tracing_with(format, &filter, otel)
            .map_err(|e| anyhow::anyhow!("invalid --log-filter / RUST_LOG: {e}"))?;
        if traces.is_some() {
            let t = &config.traces;
            tracing::info!(endpoint = %t.endpoint, ratio = t.sample_ratio, "exporting traces");
        }
        let result = serve(config).await;
        if let Some(traces) = traces {
            // Blocking (it waits for the last export), and the exporter runs
            // on this runtime: off the runtime's own threads.
            let _ = tokio::task::spawn_blocking(move || traces.shutdown()).await;
        }
        result
    })
}

fn config_path(path: Option<&Path>) -> Result<&Path, ExitCode> {
    path.ok_or_else(|| {
        eprintln!("cachecar: no config file: pass --config FILE or set CACHECAR_CONFIG");
        ExitCode::from(EXIT_CONFIG)
    })
}

fn load(path: Option<&Path>) -> Result<RuntimeConfig, ExitCode> {
    let path = config_path(path)?;
    config::load_file(path, &config::process_env).map_err(|e| {
        eprintln!("cachecar: {e}");
        ExitCode::from(EXIT_CONFIG)
    })
}

fn check(path: Option<&Path>) -> ExitCode {
    let path = match config_path(path) {
        Ok(p) => p,
        Err(code) => return code,
    };
    match config::load_file(path, &config::process_env) {
        Ok(config) => {
            print!("{}", cachecar::config::report::render(&config));
            ExitCode::SUCCESS
        }
        Err(e @ ConfigError::Invalid { .. }) | Err(e @ ConfigError::Io { .. }) => {
            eprintln!("{e}");
            ExitCode::from(EXIT_CONFIG)
        }
    }
}

/// The async runtime: one worker thread per CPU the process may use
/// (affinity and cgroup quota count; `TOKIO_WORKER_THREADS` overrides).
/// With one, the single-threaded scheduler: a sidecar limited to a core or
/// less then pays for no cross-thread queues it cannot use.
fn runtime() -> std::io::Result<tokio::runtime::Runtime> {
    let workers = std::env::var("TOKIO_WORKER_THREADS")
        .ok()
        .and_then(|v| v.trim().parse::<usize>().ok())
        .filter(|&n| n > 0)
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()));
    if workers == 1 {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
    } else {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(workers)
            .enable_all()
            .build()
    }
}

fn run_async<F: std::future::Future<Output = anyhow::Result<()>>>(future: F) -> ExitCode {
    let runtime = match runtime() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("cachecar: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(future) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("cachecar: {e:#}");
            ExitCode::FAILURE
        }
    }
}

async fn serve(config: RuntimeConfig) -> anyhow::Result<()> {
    // Every handler before the listeners open: a signal sent as soon as the
    // port answers must not meet the default action (exit at once).
    let shutdown = CancellationToken::new();
    cachecar::shutdown::cancel_on_signal(shutdown.clone());
    let hangups = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup())
        .context("cannot listen for SIGHUP")?;
    let app = App::bind(config).await?;
    if let Some(reloader) = app.reloader() {
        reload_on_sighup(hangups, reloader);
    }
    app.run(shutdown).await;
    Ok(())
}

/// `cachecar healthcheck`: one GET over plain TCP, 1 s in all.
fn healthcheck(url: &str) -> ExitCode {
    use std::io::{Read, Write};
    let fail = |why: String| {
        eprintln!("cachecar healthcheck: {url}: {why}");
        ExitCode::FAILURE
    };
    let Ok(uri) = url.parse::<http::Uri>() else {
        return fail("not a URL".into());
    };
    if uri.scheme_str() != Some("http") {
        return fail("only http:// URLs".into());
    }
    let Some(host) = uri.host() else {
        return fail("no host".into());
    };
    let port = uri.port_u16().unwrap_or(80);
    let path = uri.path_and_query().map_or("/", |p| p.as_str());
    let timeout = Duration::from_secs(1);
    let addr = match std::net::ToSocketAddrs::to_socket_addrs(&(host, port)) {
        Ok(mut addrs) => match addrs.next() {
            Some(a) => a,
            None => return fail("no address".into()),
        },
        Err(e) => return fail(e.to_string()),
    };
    let exchange = || -> std::io::Result<String> {
        let mut stream = std::net::TcpStream::connect_timeout(&addr, timeout)?;
        stream.set_read_timeout(Some(timeout))?;
        stream.set_write_timeout(Some(timeout))?;
        write!(
            stream,
            "GET {path} HTTP/1.1\r\nHost: {host}:{port}\r\nConnection: close\r\n\r\n"
        )?;
        let mut head = [0u8; 64];
        let n = stream.read(&mut head)?;
        Ok(String::from_utf8_lossy(&head[..n]).into_owned())
    };
    match exchange() {
        Ok(head) if head.starts_with("HTTP/1.1 200") || head.starts_with("HTTP/1.0 200") => {
            ExitCode::SUCCESS
        }
        Ok(head) => fail(format!(
            "answered {:?}",
            head.lines().next().unwrap_or_default()
        )),
        Err(e) => fail(e.to_string()),
    }
}

/// Reloads the config on every SIGHUP.
fn reload_on_sighup(
    mut hangups: tokio::signal::unix::Signal,
    reloader: cachecar::reload::Reloader,
) {
    tokio::spawn(async move {
        while hangups.recv().await.is_some() {
            reloader.reload(cachecar::reload::Trigger::Signal).await;
        }
    });
}

async fn run_demo(listen: SocketAddr, admin: SocketAddr, latency: Duration) -> anyhow::Result<()> {
    let api_listener = TcpListener::bind("127.0.0.1:0")
        .await
        .context("cannot bind the demo API")?;
    let api_addr = api_listener.local_addr()?;
    let config = demo::demo_config(api_addr, listen, admin)?;
    let shutdown = CancellationToken::new();
    cachecar::shutdown::cancel_on_signal(shutdown.clone());
    let app = App::bind(config).await.context(
        "cannot start the proxy; is another cachecar demo running? (use --listen/--admin-listen)",
    )?;
    let api = tokio::spawn(DemoApi::new(latency).serve(api_listener, shutdown.clone()));
    println!(
        "{}",
        demo::instructions(api_addr, app.proxy_addr(), app.admin_addr())
    );
    app.run(shutdown).await;
    let _ = api.await;
    Ok(())
}

async fn run_demo_api(listen: SocketAddr, latency: Duration) -> anyhow::Result<()> {
    let shutdown = CancellationToken::new();
    cachecar::shutdown::cancel_on_signal(shutdown.clone());
    let listener = TcpListener::bind(listen)
        .await
        .with_context(|| format!("cannot listen on {listen}"))?;
    tracing::info!(%listen, ?latency, "demo API ready");
    DemoApi::new(latency).serve(listener, shutdown).await;
    Ok(())
}
