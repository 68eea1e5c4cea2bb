//! The sandbox holds from inside the guest: a plugin that tries to open a
//! file, connect a socket (to a port that is listening on loopback) or read
//! the environment gets an error back, for every record.

use std::time::Duration;

use crate::util::{self, Counts, Server, Sluice, assert_counts_eq, parse_counts, parse_printed};

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
