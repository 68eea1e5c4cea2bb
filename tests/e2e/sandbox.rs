//! The sandbox holds from inside the guest, and grants open exactly what
//! they name. Without grants, a plugin that tries to open a file, connect a
//! socket (to a port that is listening on loopback) or read the environment
//! gets an error back, for every record. With `--allow-dir`, `--allow-net`
//! and `--env`, the `misbehaving` fixture's aimed attempts (`fault=sandbox`
//! with `read`, `write`, `connect`, `listen`, `env`; report format in its
//! crate docs) reach the granted directory, address and variables, and
//! nothing else; what happened is checked on the host too (files written,
//! connections accepted).

use std::fs;
use std::io::ErrorKind;
use std::net::TcpListener;
use std::path::Path;
use std::time::Duration;

use crate::util::{
    self, Counts, Output, Server, Sluice, assert_counts_eq, parse_counts, parse_printed,
    read_saved_batches,
};

#[test]
fn guest_cannot_open_a_file_connect_a_socket_or_read_the_environment() {
    const LINES: usize = 300;
    let text: String = (0..LINES).map(|i| format!("record {i}\n")).collect();
    let tmp = tempfile::tempdir().unwrap();
    // The job's own source: its port listens on loopback for the whole run,
    // and it is the port the guest tries to connect to.
    let server = Server::serve_paced(text, 3, Duration::from_millis(300));
    let out = Sluice::run(
        &util::plugin(sluice_test_artifacts::MISBEHAVING),
        &tmp.path().join("data"),
    )
    .job_arg("fault", "sandbox")
    .job_arg("host", "127.0.0.1")
    .job_arg("port", server.port)
    .opt("--batch-interval", "200ms")
    .arg("--until-sources-end")
    .output();
    out.assert_success();
    server.finish();

    assert!(
        !out.stdout.contains("ALLOWED"),
        "the guest escaped its sandbox; {out:?}"
    );
    // Every record became `file:denied socket:denied env:denied`: three
    // keys per batch, all printed.
    let mut total = Counts::new();
    for batch in parse_printed(&out.stdout).unwrap_or_else(|e| panic!("{e:#}; {out:?}")) {
        assert!(
            !batch.truncated,
            "batch {}: more than three keys",
            batch.time_ms
        );
        let counts = parse_counts(batch.elements.iter().map(String::as_str))
            .unwrap_or_else(|e| panic!("batch {}: {e:#}", batch.time_ms));
        util::add_counts(&mut total, &counts);
    }
    let expected: Counts = ["file:denied", "socket:denied", "env:denied"]
        .into_iter()
        .map(|k| (k.to_string(), LINES as i64))
        .collect();
    assert_counts_eq(
        &expected,
        &total,
        "outcomes of the escapes over all records",
    );
}

/// The one record every probe job reads; `write` attempts write it.
const RECORD: &str = "probe";

/// Runs `misbehaving` with `fault=sandbox` over one record ([`RECORD`]),
/// with the sandbox flags `grants` (flag, value) and the aimed attempts
/// `attempts` (argument, comma-separated targets), and returns the report:
/// each token with its count (1 per attempt).
fn probe(grants: &[(&str, String)], attempts: &[(&str, String)]) -> (Output, Counts) {
    let tmp = tempfile::tempdir().unwrap();
    let input = tmp.path().join("input.txt");
    fs::write(&input, format!("{RECORD}\n")).unwrap();
    let out_prefix = tmp.path().join("out");
    let mut cmd = Sluice::run(
        &util::plugin(sluice_test_artifacts::MISBEHAVING),
        &tmp.path().join("data"),
    )
    .job_arg("fault", "sandbox")
    .job_arg("input", input.display())
    .job_arg("output", out_prefix.display())
    .opt("--batch-interval", "200ms")
    .opt("--workers", "1")
    .arg("--until-sources-end");
    for (flag, value) in grants {
        cmd = cmd.opt(flag, value);
    }
    for (key, targets) in attempts {
        cmd = cmd.job_arg(key, targets);
    }
    let out = cmd.output();
    out.assert_success();
    let mut total = Counts::new();
    for batch in read_saved_batches(&out_prefix, None).unwrap() {
        let counts = parse_counts(batch.lines())
            .unwrap_or_else(|e| panic!("{}: {e:#}; {out:?}", batch.dir.display()));
        util::add_counts(&mut total, &counts);
    }
    (out, total)
}

/// Each token once.
fn once(tokens: &[String]) -> Counts {
    tokens.iter().map(|t| (t.clone(), 1)).collect()
}

/// A listener on a free loopback port, for connections the test counts.
fn listener() -> (TcpListener, u16) {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind a loopback port");
    let port = listener.local_addr().unwrap().port();
    (listener, port)
}

/// The connections waiting in `listener`'s queue: the guest's connects that
/// reached the system (the kernel completes them without an `accept`).
fn accepted(listener: &TcpListener) -> usize {
    listener.set_nonblocking(true).unwrap();
    let mut n = 0;
    loop {
        match listener.accept() {
            Ok(_) => n += 1,
            Err(e) if e.kind() == ErrorKind::WouldBlock => return n,
            Err(e) => panic!("accept: {e}"),
        }
    }
}

fn path(p: &Path) -> String {
    p.to_str().expect("temporary paths are UTF-8").to_string()
}

#[test]
fn without_grants_every_aimed_attempt_is_denied_and_nothing_reaches_the_host() {
    let target = tempfile::tempdir().unwrap();
    let existing = target.path().join("existing");
    fs::write(&existing, "host file").unwrap();
    let created = target.path().join("created");
    let (listening, port) = listener();
    let (out, report) = probe(
        &[],
        &[
            ("read", format!("/etc/hostname,{}", path(&existing))),
            ("write", path(&created)),
            ("connect", format!("127.0.0.1:{port}")),
            ("listen", "127.0.0.1:0".to_string()),
            ("env", "HOME,PATH,*".to_string()),
        ],
    );
    let expected = once(&[
        "read[/etc/hostname]=denied:NotFound".to_string(),
        format!("read[{}]=denied:NotFound", path(&existing)),
        format!("write[{}]=denied:NotFound", path(&created)),
        format!("connect[127.0.0.1:{port}]=denied:PermissionDenied"),
        "listen[127.0.0.1:0]=denied:PermissionDenied".to_string(),
        "env[HOME]=denied:NotPresent".to_string(),
        "env[PATH]=denied:NotPresent".to_string(),
        "env[*]=denied:none".to_string(),
    ]);
    assert_counts_eq(&expected, &report, &format!("the report; {out:?}"));
    assert!(!created.exists(), "the guest created {}", created.display());
    assert_eq!(accepted(&listening), 0, "a connection reached the listener");
}

#[test]
fn allow_dir_grants_reads_and_writes_in_that_directory_only() {
    let granted = tempfile::tempdir().unwrap();
    let other = tempfile::tempdir().unwrap();
    fs::write(granted.path().join("x"), "secret 42\n").unwrap();
    fs::write(other.path().join("y"), "not for the guest").unwrap();
    let other_name = other.path().file_name().unwrap().to_str().unwrap();
    let escape = format!("/data/../{other_name}/y");
    let (out, report) = probe(
        &[("--allow-dir", format!("{}:/data", path(granted.path())))],
        &[
            (
                "read",
                format!(
                    "/data/x,/etc/hostname,{},{escape}",
                    path(&other.path().join("y"))
                ),
            ),
            (
                "write",
                format!("/data/new.txt,{}", path(&other.path().join("new.txt"))),
            ),
        ],
    );
    let expected = once(&[
        "read[/data/x]=ALLOWED:secret%2042%0A".to_string(),
        "read[/etc/hostname]=denied:NotFound".to_string(),
        format!("read[{}]=denied:NotFound", path(&other.path().join("y"))),
        // `..` out of the preopen: cap-std refuses it in the host.
        format!("read[{escape}]=denied:PermissionDenied"),
        "write[/data/new.txt]=ALLOWED".to_string(),
        format!(
            "write[{}]=denied:NotFound",
            path(&other.path().join("new.txt"))
        ),
    ]);
    assert_counts_eq(&expected, &report, &format!("the report; {out:?}"));
    assert_eq!(
        fs::read_to_string(granted.path().join("new.txt")).unwrap(),
        RECORD,
        "the file the guest wrote at /data/new.txt"
    );
    assert!(
        !other.path().join("new.txt").exists(),
        "the guest wrote into the ungranted directory"
    );
}

#[test]
fn a_read_only_dir_grant_allows_reads_and_denies_writes() {
    let granted = tempfile::tempdir().unwrap();
    fs::write(granted.path().join("x"), "read me").unwrap();
    let (out, report) = probe(
        &[("--allow-dir", format!("{}:/data:ro", path(granted.path())))],
        &[
            ("read", "/data/x".to_string()),
            ("write", "/data/new.txt,/data/x".to_string()),
        ],
    );
    let expected = once(&[
        "read[/data/x]=ALLOWED:read%20me".to_string(),
        "write[/data/new.txt]=denied:PermissionDenied".to_string(),
        "write[/data/x]=denied:PermissionDenied".to_string(),
    ]);
    assert_counts_eq(&expected, &report, &format!("the report; {out:?}"));
    assert!(!granted.path().join("new.txt").exists());
    assert_eq!(
        fs::read_to_string(granted.path().join("x")).unwrap(),
        "read me",
        "the read-only file was changed"
    );
}

#[test]
fn a_dir_grant_defaults_to_the_host_path_in_the_guest() {
    let granted = tempfile::tempdir().unwrap();
    fs::write(granted.path().join("x"), "same path").unwrap();
    let x = path(&granted.path().join("x"));
    let (out, report) = probe(
        &[("--allow-dir", path(granted.path()))],
        &[("read", x.clone())],
    );
    let expected = once(&[format!("read[{x}]=ALLOWED:same%20path")]);
    assert_counts_eq(&expected, &report, &format!("the report; {out:?}"));
}

#[test]
fn allow_net_grants_connections_to_that_address_only() {
    let (granted, p) = listener();
    let (other, q) = listener();
    let (out, report) = probe(
        &[("--allow-net", format!("127.0.0.1:{p}"))],
        &[
            (
                "connect",
                format!("127.0.0.1:{p},127.0.0.1:{q},localhost:{p}"),
            ),
            ("listen", format!("127.0.0.1:{q},0.0.0.0:0")),
        ],
    );
    // A grant by address allows no name lookup: `localhost` does not
    // resolve in the guest.
    let expected = once(&[
        format!("connect[127.0.0.1:{p}]=ALLOWED"),
        format!("connect[127.0.0.1:{q}]=denied:PermissionDenied"),
        format!("connect[localhost:{p}]=denied:Uncategorized"),
        format!("listen[127.0.0.1:{q}]=denied:PermissionDenied"),
        "listen[0.0.0.0:0]=denied:PermissionDenied".to_string(),
    ]);
    assert_counts_eq(&expected, &report, &format!("the report; {out:?}"));
    assert_eq!(accepted(&granted), 1, "connections to the granted port");
    assert_eq!(accepted(&other), 0, "connections to the other port");
}

#[test]
fn allow_net_by_name_resolves_at_the_start_and_lets_the_guest_look_it_up() {
    let (granted, p) = listener();
    let (other, q) = listener();
    let (out, report) = probe(
        &[("--allow-net", format!("localhost:{p}"))],
        &[(
            "connect",
            format!("localhost:{p},localhost:{q},127.0.0.1:{p}"),
        )],
    );
    let expected = once(&[
        format!("connect[localhost:{p}]=ALLOWED"),
        format!("connect[localhost:{q}]=denied:PermissionDenied"),
        format!("connect[127.0.0.1:{p}]=ALLOWED"),
    ]);
    assert_counts_eq(&expected, &report, &format!("the report; {out:?}"));
    assert_eq!(accepted(&granted), 2, "connections to the granted port");
    assert_eq!(accepted(&other), 0, "connections to the other port");
}

#[test]
fn env_grants_are_the_whole_environment_of_the_guest() {
    let (out, report) = probe(
        &[
            ("--env", "SLUICE_MODE=a b=c".to_string()),
            ("--env", "SLUICE_EMPTY=".to_string()),
        ],
        &[("env", "SLUICE_MODE,SLUICE_EMPTY,HOME,*".to_string())],
    );
    let expected = once(&[
        "env[SLUICE_MODE]=ALLOWED:a%20b=c".to_string(),
        "env[SLUICE_EMPTY]=ALLOWED:".to_string(),
        "env[HOME]=denied:NotPresent".to_string(),
        "env[*]=ALLOWED:SLUICE_MODE;SLUICE_EMPTY".to_string(),
    ]);
    assert_counts_eq(&expected, &report, &format!("the report; {out:?}"));
}

#[test]
fn a_dir_grant_that_is_not_a_directory_stops_the_job_at_the_start() {
    let tmp = tempfile::tempdir().unwrap();
    let missing = tmp.path().join("missing");
    let file = tmp.path().join("file");
    fs::write(&file, "x").unwrap();
    for (grant, why) in [
        (format!("{}:/data", path(&missing)), "no such directory"),
        (format!("{}:ro", path(&file)), "it is not a directory"),
    ] {
        let out = Sluice::run(
            &util::plugin(sluice_test_artifacts::MISBEHAVING),
            &tmp.path().join("data"),
        )
        .job_arg("fault", "sandbox")
        .job_arg("input", path(&file))
        .opt("--allow-dir", &grant)
        .arg("--until-sources-end")
        .output();
        out.assert_failure()
            .assert_stderr_contains(&[&format!("cannot grant --allow-dir {grant}: {why}")]);
    }
}
