//! The `sluice` command line: `sluice run` runs a job plugin, `sluice demo`
//! runs the network word count against a text stream it serves itself,
//! `sluice serve` hosts jobs behind an HTTP API, and the client commands
//! (`deploy`, `jobs`, `status`, `logs`, `upgrade`, `rollback`, `stop`,
//! `start`, `remove`, in [`client`]) talk to it; `sluice new` and
//! `sluice build` make plugin projects ([`project`]). Parsing lives here (the
//! flags `run`, `demo` and `deploy` share are one `SpecArgs` and one
//! `GrantArgs`); everything else is the library's.

pub mod client;
mod demo;
mod project;
mod watch;

use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};

use crate::batching::WalSync;
use crate::control::{JobConfig, run_job};
use crate::data::KeyGroups;
use crate::sources::StopSignal;
use crate::storage::StorageOptions;
use crate::wasm::{DirGrant, EnvGrant, Grants, NetGrant};

/// Sluice: Spark-Streaming-style jobs as WebAssembly components.
#[derive(Debug, Parser)]
#[command(name = "sluice", version, about, after_help = client::EXIT_CODES_HELP)]
pub struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run a job plugin (a WebAssembly component) in micro-batches.
    Run(RunArgs),
    /// Run the network word count on Zipf text it serves on loopback (the
    /// generator of bench/corpus).
    Demo(demo::DemoArgs),
    /// Host jobs behind an HTTP API (with a bearer token) and keep them
    /// running: deployed jobs resume when it starts again.
    Serve(ServeArgs),
    #[command(flatten)]
    Client(client::ClientCommand),
    /// Create a plugin project: the network word count in Rust, Python or
    /// JavaScript, ready to build and run.
    New(project::NewArgs),
    /// Build a plugin project into DIR/target/<name>.wasm.
    Build(project::BuildArgs),
}

/// `sluice serve`.
#[derive(Debug, Args)]
struct ServeArgs {
    /// The address the API listens on; a non-loopback one needs --token-file.
    #[arg(long, default_value = crate::serve::DEFAULT_LISTEN)]
    listen: String,
    /// Where deployed jobs, their components, checkpoints and the token are
    /// kept [default: $XDG_DATA_HOME/sluice or ~/.local/share/sluice].
    #[arg(long)]
    data_dir: Option<PathBuf>,
    /// A file holding the API's bearer token [default: <data-dir>/token,
    /// created with a random token on first start].
    #[arg(long)]
    token_file: Option<PathBuf>,
}

#[derive(Debug, Args)]
struct RunArgs {
    /// The plugin: a component (a .wasm file), or a plugin project's folder
    /// (see `sluice new`), which is built first.
    plugin: PathBuf,
    /// Upgrade the running job whenever the plugin file changes (state and
    /// positions kept; an incompatible or failing version is refused or
    /// rolled back, and the job goes on).
    #[arg(long)]
    watch: bool,
    #[command(flatten)]
    job: JobArgs,
}

/// The flags `run`, `demo` and `deploy` share: the job's arguments, its
/// timing and its limits. A flag not given leaves [`JobConfig`]'s default
/// (for `deploy`, the host's), the one its doc names.
#[derive(Debug, Args)]
pub(crate) struct SpecArgs {
    /// An argument for the job's `define`, as KEY=VALUE (repeatable).
    #[arg(long = "arg", value_name = "KEY=VALUE", value_parser = parse_key_value)]
    pub(crate) args: Vec<(String, String)>,
    /// Time between batches (a multiple of the block interval) [default: 1s].
    #[arg(long, value_parser = humantime::parse_duration)]
    pub(crate) batch_interval: Option<Duration>,
    /// Time between blocks of a receiver; each block is one partition
    /// [default: 200ms, or the largest divisor of the batch interval below it].
    #[arg(long, value_parser = humantime::parse_duration)]
    pub(crate) block_interval: Option<Duration>,
    /// Worker threads, each with its own plugin instance [default: the
    /// number of cores of the machine that runs the job].
    #[arg(long)]
    pub(crate) workers: Option<usize>,
    /// Linear memory cap of each plugin instance (e.g. 64MiB) [default: 1GiB].
    #[arg(long, value_parser = parse_size)]
    pub(crate) memory_limit: Option<usize>,
    /// Time limit of one guest call [default: 60s].
    #[arg(long, value_parser = humantime::parse_duration)]
    pub(crate) call_timeout: Option<Duration>,
    /// Retries of a task whose guest trapped, each on a fresh instance
    /// [default: 4].
    #[arg(long)]
    pub(crate) task_retries: Option<u32>,
    /// Bytes received but not processed above which receivers stop reading
    /// [default: 16MiB].
    #[arg(long, value_parser = parse_size)]
    pub(crate) max_pending: Option<usize>,
    /// Key groups of keyed operators (1 to 32768), fixed for the life of a
    /// job: a key goes to group murmur2(key) mod N, as Kafka's partitioner
    /// [default: 128].
    #[arg(long)]
    pub(crate) key_groups: Option<KeyGroups>,
    /// Replace a worker's plugin instance with a fresh one after this many
    /// calls [default: never for that reason].
    #[arg(long, value_parser = clap::value_parser!(u64).range(1..))]
    pub(crate) recycle_after_calls: Option<u64>,
    /// Replace a worker's plugin instance once its linear memory grew this
    /// much above its size after `define` (at most half of --memory-limit)
    /// [default: 32MiB].
    #[arg(long, value_parser = parse_size)]
    pub(crate) recycle_above_growth: Option<usize>,
}

impl SpecArgs {
    /// Sets what was given on `config`, and the block interval.
    fn apply(self, config: &mut JobConfig) {
        config.args = self.args;
        if let Some(batch) = self.batch_interval {
            config.batch_interval = batch;
        }
        config.block_interval = self
            .block_interval
            .unwrap_or_else(|| default_block_interval(config.batch_interval));
        if let Some(workers) = self.workers {
            config.workers = workers;
        }
        if let Some(limit) = self.memory_limit {
            config.memory_limit = limit;
        }
        if let Some(timeout) = self.call_timeout {
            config.call_timeout = timeout;
        }
        if let Some(retries) = self.task_retries {
            config.task_retries = retries;
        }
        if let Some(pending) = self.max_pending {
            config.max_pending_bytes = pending;
        }
        if let Some(groups) = self.key_groups {
            config.key_groups = groups;
        }
        if self.recycle_after_calls.is_some() {
            config.recycle.after_calls = self.recycle_after_calls;
        }
        if let Some(growth) = self.recycle_above_growth {
            config.recycle.growth_above = growth;
        }
    }
}

/// The sandbox grants of `run`, `demo` and `deploy`.
#[derive(Debug, Args)]
pub(crate) struct GrantArgs {
    /// Let the plugin use this host directory (repeatable): preopened at
    /// GUEST_PATH (absolute; default: the host path), read-write, or
    /// read-only with `:ro`. Paths cannot contain `:`; they are the paths of
    /// the machine that runs the job (for `deploy`, where `serve` runs).
    #[arg(long = "allow-dir", value_name = "HOST_PATH[:GUEST_PATH][:ro]")]
    allow_dirs: Vec<DirGrant>,
    /// Let the plugin open TCP connections to this address (repeatable; an
    /// IPv6 address in brackets). A name is resolved at the start, to all its
    /// addresses, and lets the plugin look names up. Nothing else: no other
    /// address, no listening, no UDP.
    #[arg(long = "allow-net", value_name = "HOST:PORT")]
    allow_net: Vec<NetGrant>,
    /// An environment variable the plugin sees (repeatable); it sees none of
    /// the host's.
    #[arg(long = "env", value_name = "NAME=VALUE")]
    env: Vec<EnvGrant>,
}

impl GrantArgs {
    /// The grants, in the order given.
    pub(crate) fn grants(self) -> Grants {
        Grants {
            dirs: self.allow_dirs,
            net: self.allow_net,
            env: self.env,
        }
    }
}

/// Options shared by `run` and `demo`.
#[derive(Debug, Args)]
struct JobArgs {
    #[command(flatten)]
    spec: SpecArgs,
    /// Stop after this many batches.
    #[arg(long)]
    max_batches: Option<u64>,
    /// Stop once every source has ended and everything received is processed.
    #[arg(long)]
    until_sources_end: bool,
    /// Where Sluice keeps its files [default: ~/.cache/sluice for compiled plugins].
    #[arg(long)]
    data_dir: Option<PathBuf>,
    /// Append one JSON object per batch to this file.
    #[arg(long)]
    metrics_json: Option<PathBuf>,
    /// Checkpoint the job here (a directory, or an s3://, gs://, az://,
    /// file:// URL) and keep its write-ahead log; a location that holds a
    /// checkpoint of this job resumes it.
    #[arg(long, value_name = "LOCATION")]
    checkpoint: Option<String>,
    /// Time between checkpoints (a multiple of the batch interval)
    /// [default: the smallest multiple of the batch interval that is at least 10s].
    #[arg(long, value_parser = humantime::parse_duration, requires = "checkpoint")]
    checkpoint_interval: Option<Duration>,
    /// Checkpoints kept; the files only older ones used are deleted.
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u32).range(1..))]
    checkpoint_retain: u32,
    /// Delete every checkpoint and log record at the checkpoint location and
    /// start afresh.
    #[arg(long, requires = "checkpoint")]
    reset: bool,
    /// When the write-ahead log reaches the disk: `always` (each record,
    /// before anything uses it), `batch` (a batch's records before it runs),
    /// `never` (left to the operating system).
    #[arg(long, value_enum, default_value_t = WalSync::Always)]
    wal_sync: WalSync,
    /// An object store setting, as KEY=VALUE (repeatable), e.g.
    /// `aws_endpoint=http://127.0.0.1:9000`; on top of the environment
    /// (`AWS_*`, `GOOGLE_*`, `AZURE_*`).
    #[arg(long = "storage-option", value_name = "KEY=VALUE", value_parser = parse_key_value)]
    storage_options: Vec<(String, String)>,
    #[command(flatten)]
    grants: GrantArgs,
}

impl JobArgs {
    fn config(self, plugin: PathBuf) -> JobConfig {
        let mut config = JobConfig::new(plugin);
        self.spec.apply(&mut config);
        config.max_batches = self.max_batches;
        config.until_sources_end = self.until_sources_end;
        config.data_dir = self.data_dir;
        config.metrics_json = self.metrics_json;
        config.checkpoint = self.checkpoint;
        config.checkpoint_interval = self.checkpoint_interval;
        config.checkpoint_retain = self.checkpoint_retain as usize;
        config.reset = self.reset;
        config.wal_sync = self.wal_sync;
        config.storage_options = self
            .storage_options
            .into_iter()
            .fold(StorageOptions::new(), |options, (k, v)| options.with(k, v));
        config.grants = self.grants.grants();
        config
    }
}

/// The exit code of a failed command: a client command's own (see
/// [`client::exit`]), else 1.
pub fn exit_code(error: &anyhow::Error) -> u8 {
    error
        .downcast_ref::<client::ClientError>()
        .map_or(client::exit::ERROR, |e| e.code)
}

/// Runs the command line; the binary's `main` maps the result to an exit code.
pub fn main(cli: Cli) -> anyhow::Result<()> {
    let stop = StopSignal::new();
    match cli.command {
        // A client stops at Ctrl-C like any command line tool.
        Command::Client(command) => return Ok(client::run(command)?),
        Command::New(args) => return project::new(args),
        Command::Build(args) => return project::build_command(args),
        _ => {}
    }
    stop_on_signals(stop.clone());
    match cli.command {
        Command::Client(_) | Command::New(_) | Command::Build(_) => unreachable!("handled above"),
        Command::Serve(args) => Ok(crate::serve::serve(
            crate::serve::ServeConfig {
                listen: args.listen,
                data_dir: args.data_dir,
                token_file: args.token_file,
            },
            stop,
        )?),
        Command::Run(run) => {
            let plugin = if run.plugin.is_dir() {
                project::build(&run.plugin)?
            } else {
                run.plugin
            };
            let config = run.job.config(plugin);
            let summary = if run.watch {
                watch::run(config, stop)?
            } else {
                run_job(&config, stop)?
            };
            tracing::info!("done: {summary}");
            Ok(())
        }
        Command::Demo(args) => demo::run(args, stop),
    }
}

/// First Ctrl-C or SIGTERM: stop gracefully (stop receiving, finish what
/// was received, write a last checkpoint). Second: exit at once (a job with
/// a checkpoint recovers at its next start).
fn stop_on_signals(stop: StopSignal) {
    let result = std::thread::Builder::new()
        .name("sluice-signal".into())
        .spawn(move || {
            let Ok(runtime) = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            else {
                return;
            };
            runtime.block_on(async {
                let mut signals = Signals::new();
                signals.next().await;
                tracing::info!(
                    "stopping gracefully: no more input; finishing what was received (a second \
                     signal aborts)"
                );
                stop.stop();
                signals.next().await;
                tracing::warn!("stopping at once");
                std::process::exit(130);
            });
        });
    if let Err(e) = result {
        tracing::warn!("cannot watch for Ctrl-C: {e}");
    }
}

/// Ctrl-C, and SIGTERM on Unix.
struct Signals {
    #[cfg(unix)]
    term: Option<tokio::signal::unix::Signal>,
}

impl Signals {
    fn new() -> Signals {
        Signals {
            #[cfg(unix)]
            term: tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
                .map_err(|e| tracing::warn!("cannot watch for SIGTERM: {e}"))
                .ok(),
        }
    }

    async fn next(&mut self) {
        #[cfg(unix)]
        if let Some(term) = &mut self.term {
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {}
                _ = term.recv() => {}
            }
            return;
        }
        let _ = tokio::signal::ctrl_c().await;
    }
}

/// Spark's default block interval, 200 ms, when the batch interval is a
/// multiple of it; otherwise their greatest common divisor (100 ms for a 500 ms
/// batch), so that every block belongs to one batch.
pub(crate) fn default_block_interval(batch: Duration) -> Duration {
    const DEFAULT_MS: u64 = 200;
    let batch_ms = batch.as_millis() as u64;
    if batch_ms == 0 {
        return Duration::from_millis(DEFAULT_MS);
    }
    let (mut a, mut b) = (batch_ms, DEFAULT_MS);
    while b != 0 {
        (a, b) = (b, a % b);
    }
    Duration::from_millis(a)
}

fn parse_key_value(s: &str) -> Result<(String, String), String> {
    s.split_once('=')
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .ok_or_else(|| format!("`{s}` is not KEY=VALUE"))
}

/// Parses `1048576`, `64KiB`, `64MiB`, `1GiB`, `500MB`.
fn parse_size(s: &str) -> Result<usize, String> {
    let s = s.trim();
    let split = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let (number, unit) = s.split_at(split);
    let number: usize = number
        .parse()
        .map_err(|_| format!("`{s}` is not a size like 64MiB"))?;
    let scale: usize = match unit.trim() {
        "" | "B" => 1,
        "KiB" | "K" => 1 << 10,
        "MiB" | "M" => 1 << 20,
        "GiB" | "G" => 1 << 30,
        "KB" => 1_000,
        "MB" => 1_000_000,
        "GB" => 1_000_000_000,
        other => {
            return Err(format!(
                "unknown unit `{other}` in `{s}` (use KiB, MiB, GiB)"
            ));
        }
    };
    number
        .checked_mul(scale)
        .ok_or_else(|| format!("`{s}` is too large"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_parse() {
        assert_eq!(parse_size("64MiB"), Ok(64 << 20));
        assert_eq!(parse_size("1GiB"), Ok(1 << 30));
        assert_eq!(parse_size("1000"), Ok(1000));
        assert!(parse_size("1 parsec").is_err());
    }

    #[test]
    fn default_block_interval_divides_the_batch_interval() {
        let ms = Duration::from_millis;
        assert_eq!(default_block_interval(ms(1000)), ms(200));
        assert_eq!(default_block_interval(ms(500)), ms(100));
        assert_eq!(default_block_interval(ms(100)), ms(100));
        assert_eq!(default_block_interval(ms(250)), ms(50));
    }

    #[test]
    fn key_groups_default_to_128_and_refuse_zero_and_above_32768() {
        let parse = |extra: &[&str]| {
            let mut argv = vec!["sluice", "run", "job.wasm"];
            argv.extend_from_slice(extra);
            Cli::try_parse_from(argv).map(|cli| match cli.command {
                Command::Run(run) => run.job.config(run.plugin).key_groups.get(),
                _ => unreachable!("parsed `run`"),
            })
        };
        assert_eq!(parse(&[]).unwrap(), 128);
        assert_eq!(parse(&["--key-groups", "32768"]).unwrap(), 32768);
        assert!(parse(&["--key-groups", "0"]).is_err());
        assert!(parse(&["--key-groups", "32769"]).is_err());
    }

    #[test]
    fn run_without_flags_keeps_its_documented_defaults() {
        let cli = Cli::try_parse_from(["sluice", "run", "job.wasm"]).unwrap();
        let Command::Run(run) = cli.command else {
            unreachable!("parsed `run`")
        };
        let config = run.job.config(run.plugin);
        assert_eq!(config.batch_interval, Duration::from_secs(1));
        assert_eq!(config.block_interval, Duration::from_millis(200));
        assert_eq!(config.memory_limit, 1 << 30);
        assert_eq!(config.call_timeout, Duration::from_secs(60));
        assert_eq!(config.task_retries, 4);
        assert_eq!(config.max_pending_bytes, 16 << 20);
        assert_eq!(config.key_groups.get(), 128);
        assert_eq!(config.checkpoint_retain, 3);
        assert!(config.grants.dirs.is_empty() && config.args.is_empty());
    }

    #[test]
    fn run_and_deploy_read_the_shared_flags_alike() {
        let shared = [
            "--arg",
            "k=v",
            "--batch-interval",
            "500ms",
            "--workers",
            "3",
            "--memory-limit",
            "64MiB",
            "--call-timeout",
            "2s",
            "--task-retries",
            "1",
            "--max-pending",
            "1MiB",
            "--key-groups",
            "16",
            "--allow-net",
            "db:5432",
            "--env",
            "A=1",
        ];
        let mut argv = vec!["sluice", "run", "job.wasm"];
        argv.extend(shared);
        let Command::Run(run) = Cli::try_parse_from(argv).unwrap().command else {
            unreachable!("parsed `run`")
        };
        let config = run.job.config(run.plugin);
        assert_eq!(config.args, [("k".to_string(), "v".to_string())]);
        assert_eq!(
            (config.batch_interval, config.block_interval),
            (Duration::from_millis(500), Duration::from_millis(100))
        );
        assert_eq!((config.workers, config.memory_limit), (3, 64 << 20));
        assert_eq!(
            (config.call_timeout, config.task_retries),
            (Duration::from_secs(2), 1)
        );
        assert_eq!(
            (config.max_pending_bytes, config.key_groups.get()),
            (1 << 20, 16)
        );
        assert_eq!(config.grants.net.len(), 1);
        assert_eq!(config.grants.env.len(), 1);

        let mut argv = vec!["sluice", "deploy", "job.wasm", "--name", "wc"];
        argv.extend(shared);
        let Command::Client(client::ClientCommand::Deploy(deploy)) =
            Cli::try_parse_from(argv).unwrap().command
        else {
            unreachable!("parsed `deploy`")
        };
        let spec = serde_json::to_value(deploy.spec()).unwrap();
        assert_eq!(
            spec["args"],
            serde_json::json!([{"key": "k", "value": "v"}])
        );
        assert_eq!(spec["batch_interval_ms"], 500);
        assert_eq!(spec["block_interval_ms"], serde_json::Value::Null);
        assert_eq!(spec["workers"], 3);
        assert_eq!(spec["memory_limit"], 64 << 20);
        assert_eq!(spec["call_timeout_ms"], 2000);
        assert_eq!(spec["task_retries"], 1);
        assert_eq!(spec["max_pending"], 1 << 20);
        assert_eq!(spec["key_groups"], 16);
        assert_eq!(spec["grants"], serde_json::to_value(config.grants).unwrap());
    }

    #[test]
    fn sandbox_flags_become_the_grants_in_order() {
        let cli = Cli::try_parse_from([
            "sluice",
            "run",
            "job.wasm",
            "--allow-dir",
            "/srv/in:/in:ro",
            "--allow-net",
            "db:5432",
            "--allow-dir",
            "out",
            "--env",
            "A=1",
            "--allow-net",
            "[::1]:80",
        ])
        .unwrap();
        let Command::Run(run) = cli.command else {
            unreachable!("parsed `run`")
        };
        let grants = run.job.config(run.plugin).grants;
        let shown = |v: Vec<String>| v.join(" ");
        assert_eq!(
            shown(grants.dirs.iter().map(ToString::to_string).collect()),
            "/srv/in:/in:ro out"
        );
        assert_eq!(
            shown(grants.net.iter().map(ToString::to_string).collect()),
            "db:5432 [::1]:80"
        );
        assert_eq!(
            shown(grants.env.iter().map(ToString::to_string).collect()),
            "A=1"
        );
    }

    #[test]
    fn a_bad_sandbox_flag_is_refused_with_its_syntax() {
        let err = Cli::try_parse_from(["sluice", "run", "job.wasm", "--allow-dir", "/a:b:c:d"])
            .unwrap_err()
            .to_string();
        assert!(
            err.contains(
                "invalid value '/a:b:c:d' for '--allow-dir <HOST_PATH[:GUEST_PATH][:ro]>': \
                 `/a:b:c:d` has 3 `:`"
            ),
            "{err}"
        );
        let err = Cli::try_parse_from(["sluice", "run", "job.wasm", "--env", "HOME"])
            .unwrap_err()
            .to_string();
        assert!(err.contains("`HOME` is not NAME=VALUE"), "{err}");
    }

    #[test]
    fn args_are_key_value() {
        assert_eq!(parse_key_value("a=b=c"), Ok(("a".into(), "b=c".into())));
        assert!(parse_key_value("ab").is_err());
    }
}
