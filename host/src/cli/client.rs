//! The CLI as a client of `sluice serve`'s API: `deploy`, `jobs`, `status`,
//! `logs`, `upgrade`, `rollback`, `stop`, `start`, `remove`. Each prints a table for a person,
//! or with `--json` the API's JSON for scripts, and exits with a code that
//! says what happened (see [`exit`]).
//!
//! The server is `--server URL`, else `SLUICE_SERVER`, else
//! `http://127.0.0.1:7077`; the token is `SLUICE_TOKEN`, else the one in the
//! default data directory (`<data-dir>/token`, where a local `serve` put it).
//!
//! HTTP is reqwest's async client on a current-thread runtime: it is in the
//! build already (object_store uses it), so the client adds no crate; the
//! API is plain HTTP (loopback, or behind a proxy that terminates TLS), so
//! no TLS feature is asked for.

use std::io::Write;
use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Subcommand};
use serde::de::DeserializeOwned;

use super::{GrantArgs, SpecArgs};
use crate::data::KeyGroups;
use crate::serve::api::{
    DeployRequest, ErrorBody, JobArg, JobSpec, JobStatus, JobSummary, PluginStored,
    RollbackRequest, StopRequest, UpgradeDone, UpgradeRequest,
};
use crate::serve::jobs::short;
use crate::serve::{DEFAULT_LISTEN, default_data_dir};

/// The exit codes of the client commands (and of `sluice` as a whole).
pub mod exit {
    /// Done.
    pub const OK: u8 = 0;
    /// Any other error (a file that cannot be read, a server error, …).
    pub const ERROR: u8 = 1;
    /// Bad usage (clap's code).
    pub const USAGE: u8 = 2;
    /// Refused: the request was wrong or conflicts (HTTP 400, 404, 409,
    /// 413),
    /// e.g. an incompatible upgrade, a taken name, an unknown job.
    pub const REFUSED: u8 = 3;
    /// Failed: the job or its new version failed (HTTP 422), e.g. a job that
    /// did not start, an upgrade rolled back.
    pub const FAILED: u8 = 4;
    /// The server could not be reached (connection refused, DNS, timeout).
    pub const UNREACHABLE: u8 = 5;
    /// The server refused the token (HTTP 401).
    pub const UNAUTHORIZED: u8 = 6;
}

/// The exit codes, as `sluice --help` shows them.
pub const EXIT_CODES_HELP: &str = "Exit codes of the client commands (deploy, jobs, status, logs, \
upgrade, rollback, stop, start, remove):
  0  done
  1  another error
  2  bad usage
  3  refused: a bad request, an unknown job or version, a taken name, an incompatible upgrade
  4  failed: the job did not start, or the new version failed and was rolled back
  5  the server could not be reached
  6  the server refused the token";

/// An error of a client command, with its exit code.
#[derive(Debug, thiserror::Error)]
#[error("{message}")]
pub struct ClientError {
    /// One of [`exit`].
    pub code: u8,
    /// What went wrong.
    pub message: String,
}

impl ClientError {
    fn new(code: u8, message: impl Into<String>) -> ClientError {
        ClientError {
            code,
            message: message.into(),
        }
    }
}

/// Where the server is.
#[derive(Debug, Args)]
pub struct Connection {
    /// The host's API.
    #[arg(long, env = "SLUICE_SERVER", default_value_t = format!("http://{DEFAULT_LISTEN}"))]
    server: String,
}

/// Print the API's JSON instead of a table.
#[derive(Debug, Args)]
pub struct Output {
    /// Print the API's JSON (for scripts) instead of a table.
    #[arg(long)]
    json: bool,
}

/// The client commands.
#[derive(Debug, Subcommand)]
pub enum ClientCommand {
    /// Upload a plugin to `sluice serve` and start it as a job; returns once
    /// it runs, printing its version (the component's SHA-256).
    Deploy(Box<DeployArgs>),
    /// List the host's jobs.
    Jobs {
        #[command(flatten)]
        connection: Connection,
        #[command(flatten)]
        output: Output,
    },
    /// A job's state, version, last batches, errors, accumulators and
    /// version history.
    Status {
        /// The job.
        name: String,
        #[command(flatten)]
        connection: Connection,
        #[command(flatten)]
        output: Output,
    },
    /// A job's log: the host's lines about it and its guests' output.
    Logs {
        /// The job.
        name: String,
        /// Keep printing new lines until the job ends (or Ctrl-C).
        #[arg(long, short)]
        follow: bool,
        #[command(flatten)]
        connection: Connection,
    },
    /// Replace a running job's plugin, state kept; returns once the new
    /// version runs, or with why it was refused or rolled back.
    Upgrade {
        /// The job.
        name: String,
        /// The new plugin.
        plugin: PathBuf,
        /// Drop the state of this stateful operator (removed, or its codecs
        /// changed) (repeatable).
        #[arg(long = "reset-state", value_name = "OPERATOR")]
        reset_state: Vec<String>,
        #[command(flatten)]
        connection: Connection,
        #[command(flatten)]
        output: Output,
    },
    /// Return a running job to its previous version, or to the one `--to`
    /// names.
    Rollback {
        /// The job.
        name: String,
        /// A version's digest, or its first 12 characters or more.
        #[arg(long, value_name = "DIGEST")]
        to: Option<String>,
        /// Drop the state of this stateful operator (the earlier version
        /// lacks it, or has it with other codecs) (repeatable).
        #[arg(long = "reset-state", value_name = "OPERATOR")]
        reset_state: Vec<String>,
        #[command(flatten)]
        connection: Connection,
        #[command(flatten)]
        output: Output,
    },
    /// Start a stopped or failed job again, from its checkpoint, with its
    /// current version; returns once it runs.
    Start {
        /// The job.
        name: String,
        #[command(flatten)]
        connection: Connection,
        #[command(flatten)]
        output: Output,
    },
    /// Forget a stopped or failed job: its record, and its checkpoints when
    /// they are in the default location.
    Remove {
        /// The job.
        name: String,
        #[command(flatten)]
        connection: Connection,
    },
    /// Stop a job (gracefully: what was received is processed, a last
    /// checkpoint written); returns once it stopped.
    Stop {
        /// The job.
        name: String,
        /// Stop now; a job with a checkpoint replays what it had received at
        /// its next start.
        #[arg(long)]
        now: bool,
        #[command(flatten)]
        connection: Connection,
        #[command(flatten)]
        output: Output,
    },
}

/// `sluice deploy`.
#[derive(Debug, Args)]
pub struct DeployArgs {
    /// The plugin: a component built for wasm32-wasip2 against sluice-guest.
    plugin: PathBuf,
    /// The job's name: lower-case letters, digits, `-` and `_`, at most 64.
    #[arg(long)]
    name: String,
    #[command(flatten)]
    spec: SpecArgs,
    /// Where the job checkpoints (a directory or an object store URL)
    /// [default: `<data-dir>/jobs/NAME/checkpoint` on the host].
    #[arg(long, value_name = "LOCATION")]
    checkpoint: Option<String>,
    /// Time between checkpoints (a multiple of the batch interval).
    #[arg(long, value_parser = humantime::parse_duration)]
    checkpoint_interval: Option<Duration>,
    #[command(flatten)]
    grants: GrantArgs,
    #[command(flatten)]
    connection: Connection,
    #[command(flatten)]
    output: Output,
}

impl DeployArgs {
    /// The deploy request's spec: what was given, the rest left to the host.
    pub(super) fn spec(self) -> JobSpec {
        let ms = |d: Duration| d.as_millis() as u64;
        let spec = self.spec;
        JobSpec {
            args: spec
                .args
                .into_iter()
                .map(|(key, value)| JobArg { key, value })
                .collect(),
            batch_interval_ms: spec.batch_interval.map(ms),
            block_interval_ms: spec.block_interval.map(ms),
            checkpoint: self.checkpoint,
            checkpoint_interval_ms: self.checkpoint_interval.map(ms),
            workers: spec.workers,
            memory_limit: spec.memory_limit.map(|m| m as u64),
            call_timeout_ms: spec.call_timeout.map(ms),
            task_retries: spec.task_retries,
            key_groups: spec.key_groups.map(KeyGroups::get),
            max_pending: spec.max_pending.map(|m| m as u64),
            recycle_after_calls: spec.recycle_after_calls,
            recycle_above_growth: spec.recycle_above_growth.map(|m| m as u64),
            grants: self.grants.grants(),
        }
    }
}

/// Runs a client command.
pub fn run(command: ClientCommand) -> Result<(), ClientError> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| ClientError::new(exit::ERROR, format!("cannot start a runtime: {e}")))?;
    runtime.block_on(run_async(command))
}

async fn run_async(command: ClientCommand) -> Result<(), ClientError> {
    match command {
        ClientCommand::Deploy(args) => {
            let DeployArgs {
                plugin,
                name,
                connection,
                output,
                ..
            } = &*args;
            let client = Client::new(connection)?;
            let digest = client.upload(plugin).await?;
            let as_json = output.json;
            let request = DeployRequest {
                name: name.clone(),
                digest,
                spec: args.spec(),
            };
            let url = client.url(&["jobs"])?;
            let answer = client
                .call(client.http.post(url).json_body(&request)?)
                .await?;
            print_one(
                answer,
                as_json,
                &["NAME", "VERSION", "STATE", "CHECKPOINT"],
                |status: JobStatus| {
                    let version = short(&status.version).into();
                    vec![status.name, version, status.state, status.checkpoint]
                },
            )
        }
        ClientCommand::Jobs { connection, output } => {
            let client = Client::new(&connection)?;
            let (jobs, json): (Vec<JobSummary>, _) =
                client.call(client.http.get(client.url(&["jobs"])?)).await?;
            if output.json {
                return print_json(&json);
            }
            let rows: Vec<Vec<String>> = jobs
                .iter()
                .map(|j| {
                    vec![
                        j.name.clone(),
                        short(&j.version).into(),
                        state_and_reason(&j.state, j.reason.as_deref()),
                        j.batches.to_string(),
                        j.records.to_string(),
                    ]
                })
                .collect();
            print_table(&["NAME", "VERSION", "STATE", "BATCHES", "RECORDS"], &rows);
            Ok(())
        }
        ClientCommand::Status {
            name,
            connection,
            output,
        } => {
            let client = Client::new(&connection)?;
            let (status, json): (JobStatus, _) = client
                .call(client.http.get(client.url(&["jobs", &name])?))
                .await?;
            if output.json {
                return print_json(&json);
            }
            print_status(&status);
            Ok(())
        }
        ClientCommand::Logs {
            name,
            follow,
            connection,
        } => {
            let client = Client::new(&connection)?;
            let mut url = client.url(&["jobs", &name, "logs"])?;
            url.set_query(Some(&format!("follow={follow}")));
            let mut response = client.send(client.http.get(url)).await?;
            let mut stdout = std::io::stdout().lock();
            loop {
                match response.chunk().await {
                    Ok(Some(bytes)) => {
                        if stdout
                            .write_all(&bytes)
                            .and_then(|()| stdout.flush())
                            .is_err()
                        {
                            // Closed stdout (e.g. `| head`): done.
                            return Ok(());
                        }
                    }
                    Ok(None) => return Ok(()),
                    Err(e) => {
                        return Err(ClientError::new(
                            exit::UNREACHABLE,
                            format!("the log stream from {} broke: {}", client.base, chain(&e)),
                        ));
                    }
                }
            }
        }
        ClientCommand::Upgrade {
            name,
            plugin,
            reset_state,
            connection,
            output,
        } => {
            let client = Client::new(&connection)?;
            let digest = client.upload(&plugin).await?;
            let request = UpgradeRequest {
                digest,
                reset_state,
            };
            let answer = client.post_job(&name, "upgrade", Some(&request)).await?;
            print_upgrade(answer, output.json)
        }
        ClientCommand::Rollback {
            name,
            to,
            reset_state,
            connection,
            output,
        } => {
            let client = Client::new(&connection)?;
            let request = RollbackRequest { to, reset_state };
            let answer = client.post_job(&name, "rollback", Some(&request)).await?;
            print_upgrade(answer, output.json)
        }
        ClientCommand::Start {
            name,
            connection,
            output,
        } => {
            let client = Client::new(&connection)?;
            let answer = client.post_job(&name, "start", None::<&()>).await?;
            print_state(answer, output.json)
        }
        ClientCommand::Remove { name, connection } => {
            let client = Client::new(&connection)?;
            client
                .send(client.http.delete(client.url(&["jobs", &name])?))
                .await?;
            println!("removed {name}");
            Ok(())
        }
        ClientCommand::Stop {
            name,
            now,
            connection,
            output,
        } => {
            let client = Client::new(&connection)?;
            let request = StopRequest { now };
            let answer = client.post_job(&name, "stop", Some(&request)).await?;
            print_state(answer, output.json)
        }
    }
}

/// A state, with its reason when there is one (`failed: …`).
fn state_and_reason(state: &str, reason: Option<&str>) -> String {
    match reason {
        Some(reason) => format!("{state}: {reason}"),
        None => state.to_string(),
    }
}

/// The JSON answer with `--json`, else `header` over the one row `row`
/// makes of it.
fn print_one<T>(
    (answer, json): (T, serde_json::Value),
    as_json: bool,
    header: &[&str],
    row: impl FnOnce(T) -> Vec<String>,
) -> Result<(), ClientError> {
    if as_json {
        return print_json(&json);
    }
    print_table(header, &[row(answer)]);
    Ok(())
}

/// A job's name, version and state: the answer to `start` and `stop`.
fn print_state(answer: (JobStatus, serde_json::Value), as_json: bool) -> Result<(), ClientError> {
    print_one(answer, as_json, &["NAME", "VERSION", "STATE"], |status| {
        vec![
            status.name.clone(),
            short(&status.version).into(),
            state_and_reason(&status.state, status.reason.as_deref()),
        ]
    })
}

/// A JSON request body.
trait JsonBody: Sized {
    fn json_body<T: serde::Serialize>(self, body: &T) -> Result<Self, ClientError>;
}

impl JsonBody for reqwest::RequestBuilder {
    fn json_body<T: serde::Serialize>(self, body: &T) -> Result<Self, ClientError> {
        let bytes = serde_json::to_vec(body).map_err(|e| {
            ClientError::new(exit::ERROR, format!("cannot encode the request: {e}"))
        })?;
        Ok(self
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .body(bytes))
    }
}

struct Client {
    http: reqwest::Client,
    base: String,
    token: Option<String>,
    /// Where the token came from, for a 401's message.
    token_source: String,
}

impl Client {
    fn new(connection: &Connection) -> Result<Client, ClientError> {
        let http = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(5))
            .build()
            .map_err(|e| ClientError::new(exit::ERROR, format!("cannot start HTTP: {e}")))?;
        let (token, token_source) = match std::env::var("SLUICE_TOKEN") {
            Ok(token) if !token.trim().is_empty() => {
                (Some(token.trim().to_string()), "SLUICE_TOKEN".to_string())
            }
            _ => {
                let path = default_data_dir().join("token");
                let token = std::fs::read_to_string(&path)
                    .ok()
                    .and_then(|t| t.lines().next().map(|l| l.trim().to_string()))
                    .filter(|t| !t.is_empty());
                let source = match &token {
                    Some(_) => path.display().to_string(),
                    None => format!(
                        "none: SLUICE_TOKEN is not set and {} is not readable",
                        path.display()
                    ),
                };
                (token, source)
            }
        };
        Ok(Client {
            http,
            base: connection.server.trim_end_matches('/').to_string(),
            token,
            token_source,
        })
    }

    /// The URL of `/v1/<segments>` on the server, each segment (a job's
    /// name among them) percent-encoded.
    fn url(&self, segments: &[&str]) -> Result<reqwest::Url, ClientError> {
        let not_a_base = |reason: String| {
            ClientError::new(
                exit::USAGE,
                format!("--server {} is not an http:// URL: {reason}", self.base),
            )
        };
        let mut url = reqwest::Url::parse(&self.base).map_err(|e| not_a_base(e.to_string()))?;
        if !matches!(url.scheme(), "http" | "https") {
            return Err(not_a_base(format!("its scheme is `{}`", url.scheme())));
        }
        url.path_segments_mut()
            .map_err(|()| not_a_base("it cannot have a path".into()))?
            .pop_if_empty()
            .push("v1")
            .extend(segments);
        Ok(url)
    }

    /// `POST /v1/jobs/<name>/<action>` with a JSON body, if any; the
    /// decoded answer and its JSON.
    async fn post_job<T: DeserializeOwned>(
        &self,
        name: &str,
        action: &str,
        body: Option<&impl serde::Serialize>,
    ) -> Result<(T, serde_json::Value), ClientError> {
        let mut request = self.http.post(self.url(&["jobs", name, action])?);
        if let Some(body) = body {
            request = request.json_body(body)?;
        }
        self.call(request).await
    }

    /// Sends a request; an error status becomes a [`ClientError`] with its
    /// exit code and the server's message.
    async fn send(
        &self,
        mut request: reqwest::RequestBuilder,
    ) -> Result<reqwest::Response, ClientError> {
        if let Some(token) = &self.token {
            request = request.bearer_auth(token);
        }
        let response = request.send().await.map_err(|e| {
            let code = if e.is_connect() || e.is_timeout() {
                exit::UNREACHABLE
            } else {
                exit::ERROR
            };
            ClientError::new(
                code,
                format!(
                    "cannot reach the host at {} (is `sluice serve` running there? --server or \
                     SLUICE_SERVER name another): {}",
                    self.base,
                    chain(&e)
                ),
            )
        })?;
        let status = response.status();
        if status.is_success() {
            return Ok(response);
        }
        let text = response.text().await.unwrap_or_default();
        let body: Option<ErrorBody> = serde_json::from_str(&text).ok();
        let mut message = body
            .as_ref()
            .map_or_else(|| format!("{status}: {text}"), |b| b.error.clone());
        if let Some(diff) = body.as_ref().and_then(|b| b.diff.as_ref()) {
            message = format!("{message}\n{diff}");
        }
        let code = match status.as_u16() {
            401 => {
                message = format!("{message} (token: {})", self.token_source);
                exit::UNAUTHORIZED
            }
            400 | 404 | 409 | 413 => exit::REFUSED,
            422 => exit::FAILED,
            _ => exit::ERROR,
        };
        Err(ClientError::new(code, message))
    }

    /// Sends a request and decodes its JSON answer; also returns the JSON.
    async fn call<T: DeserializeOwned>(
        &self,
        request: reqwest::RequestBuilder,
    ) -> Result<(T, serde_json::Value), ClientError> {
        let response = self.send(request).await?;
        let bytes = response.bytes().await.map_err(|e| {
            ClientError::new(
                exit::UNREACHABLE,
                format!("the answer from {} broke off: {}", self.base, chain(&e)),
            )
        })?;
        let json: serde_json::Value = serde_json::from_slice(&bytes).map_err(|e| {
            ClientError::new(exit::ERROR, format!("the host's answer is not JSON: {e}"))
        })?;
        let value = serde_json::from_value(json.clone()).map_err(|e| {
            ClientError::new(
                exit::ERROR,
                format!("the host's answer is not what this client expects: {e}"),
            )
        })?;
        Ok((value, json))
    }

    /// Uploads a component; returns its digest.
    async fn upload(&self, plugin: &std::path::Path) -> Result<String, ClientError> {
        let bytes = std::fs::read(plugin).map_err(|e| {
            ClientError::new(
                exit::ERROR,
                format!("cannot read {}: {e}", plugin.display()),
            )
        })?;
        let request = self
            .http
            .put(self.url(&["plugins"])?)
            .header(reqwest::header::CONTENT_TYPE, "application/wasm")
            .body(bytes);
        let (stored, _): (PluginStored, _) = self.call(request).await?;
        Ok(stored.digest)
    }
}

/// An error and its sources, in one line.
fn chain(error: &dyn std::error::Error) -> String {
    let mut message = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        let text = cause.to_string();
        if !message.contains(&text) {
            message = format!("{message}: {text}");
        }
        source = cause.source();
    }
    message
}

fn print_json(json: &serde_json::Value) -> Result<(), ClientError> {
    let text = serde_json::to_string_pretty(json)
        .map_err(|e| ClientError::new(exit::ERROR, e.to_string()))?;
    println!("{text}");
    Ok(())
}

/// The answer to `upgrade` and `rollback`.
fn print_upgrade(
    answer: (UpgradeDone, serde_json::Value),
    as_json: bool,
) -> Result<(), ClientError> {
    print_one(
        answer,
        as_json,
        &["NAME", "FROM", "TO", "SWITCHED AT", "PAUSE"],
        |done| {
            vec![
                done.name.clone(),
                short(&done.from).into(),
                short(&done.to).into(),
                format_ms(done.switched_at_ms),
                format!("{:.1} ms", done.pause_ms),
            ]
        },
    )
}

/// A time in ms since the Unix epoch, as RFC 3339 (UTC, ms).
fn format_ms(ms: u64) -> String {
    humantime::format_rfc3339_millis(std::time::UNIX_EPOCH + Duration::from_millis(ms)).to_string()
}

fn print_status(status: &JobStatus) {
    let state = state_and_reason(&status.state, status.reason.as_deref());
    println!("job         {}", status.name);
    println!("state       {state}");
    println!("version     {}", short(&status.version));
    println!("checkpoint  {}", status.checkpoint);
    let Some(live) = &status.live else {
        println!("(it has not run in this host)");
        return;
    };
    println!("started     {}", format_ms(live.started_ms));
    println!("batches     {} ({} records)", live.batches, live.records);
    if live.errors.is_empty() {
        println!("errors      none");
    } else {
        println!("errors");
        for error in &live.errors {
            println!("  {error}");
        }
    }
    if !live.last_batches.is_empty() {
        println!("\nlast batches");
        let rows: Vec<Vec<String>> = live
            .last_batches
            .iter()
            .map(|b| {
                vec![
                    format_ms(b.batch_time_ms),
                    b.records.to_string(),
                    format!("{:.1}", b.scheduling_delay_ms),
                    format!("{:.1}", b.processing_ms),
                    format!("{:.1}", b.total_delay_ms),
                ]
            })
            .collect();
        print_table(
            &[
                "BATCH",
                "RECORDS",
                "SCHEDULING MS",
                "PROCESSING MS",
                "TOTAL MS",
            ],
            &rows,
        );
    }
    if !live.accumulators.is_empty() {
        println!("\naccumulators");
        let rows: Vec<Vec<String>> = live
            .accumulators
            .iter()
            .map(|(name, value)| vec![name.clone(), value.to_string()])
            .collect();
        print_table(&["NAME", "TOTAL"], &rows);
    }
    println!("\nversions");
    let running = matches!(status.state.as_str(), "running" | "upgrading");
    let rows: Vec<Vec<String>> = status
        .versions
        .iter()
        .map(|v| {
            vec![
                if v.digest == status.version { "*" } else { "" }.into(),
                short(&v.digest).into(),
                format_ms(v.first_ran_ms),
                if v.digest == status.version && running {
                    "now".into()
                } else {
                    format_ms(v.last_ran_ms)
                },
            ]
        })
        .collect();
    print_table(&["", "VERSION", "FIRST RAN", "LAST RAN"], &rows);
    if !live.history.is_empty() {
        println!("\nhistory");
        let rows: Vec<Vec<String>> = live
            .history
            .iter()
            .map(|e| {
                vec![
                    format_ms(e.at_ms),
                    e.kind.clone(),
                    short(&e.digest).into(),
                    e.detail.clone(),
                ]
            })
            .collect();
        print_table(&["AT", "EVENT", "VERSION", "DETAIL"], &rows);
    }
}

/// Prints rows under a header, columns padded to their widest cell.
fn print_table(header: &[&str], rows: &[Vec<String>]) {
    let mut widths: Vec<usize> = header.iter().map(|h| h.chars().count()).collect();
    for row in rows {
        for (width, cell) in widths.iter_mut().zip(row) {
            *width = (*width).max(cell.chars().count());
        }
    }
    let line = |cells: Vec<&str>| {
        let mut out = String::new();
        for (i, (cell, width)) in cells.iter().zip(&widths).enumerate() {
            if i + 1 == cells.len() {
                out.push_str(cell);
            } else {
                out.push_str(&format!("{cell:<width$}  "));
            }
        }
        println!("{}", out.trim_end());
    };
    line(header.to_vec());
    for row in rows {
        line(row.iter().map(String::as_str).collect());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn client(base: &str) -> Client {
        Client {
            http: reqwest::Client::new(),
            base: base.trim_end_matches('/').to_string(),
            token: None,
            token_source: String::new(),
        }
    }

    #[test]
    fn a_job_name_is_one_percent_encoded_segment_under_the_servers_path() {
        let url = client("http://127.0.0.1:7077")
            .url(&["jobs", "wc", "logs"])
            .unwrap();
        assert_eq!(url.as_str(), "http://127.0.0.1:7077/v1/jobs/wc/logs");
        let url = client("http://proxy:8080/sluice/")
            .url(&["jobs", "a/b?c d"])
            .unwrap();
        assert_eq!(
            url.as_str(),
            "http://proxy:8080/sluice/v1/jobs/a%2Fb%3Fc%20d"
        );
        let error = client("127.0.0.1:7077").url(&["jobs"]).unwrap_err();
        assert_eq!(error.code, exit::USAGE, "{error}");
        assert!(
            error.message.starts_with("--server 127.0.0.1:7077 "),
            "{error}"
        );
        let error = client("localhost:7077").url(&["jobs"]).unwrap_err();
        assert_eq!(error.code, exit::USAGE, "{error}");
        assert!(
            error.message.ends_with("its scheme is `localhost`"),
            "{error}"
        );
    }
}
