//! The Python and JavaScript example plugins over a real TCP socket, checked
//! against counts computed here (the conformance suite, `tests/conformance`,
//! checks every operator family in every language), and `sluice new` +
//! `sluice run DIR`: from nothing to a running job in two commands, per
//! language.

use std::path::Path;
use std::time::Duration;

use crate::util::{
    self, Counts, Server, Sluice, assert_counts_eq, count_words, lines_of, parse_counts,
    parse_printed, read_saved_batches,
};

const LINES: usize = 20_000;

/// Serves the corpus to `plugin` (a network word count with the arguments of
/// `plugins/network-word-count`) and returns the counts it saved, summed.
/// Runs of one test share `data` (and so the compiled component).
fn socket_counts(plugin: &str, data: &Path, extra: &[(&str, &str)]) -> Counts {
    let corpus = util::corpus(LINES);
    let tmp = tempfile::tempdir().unwrap();
    let prefix = tmp.path().join("out");
    let server = Server::serve_paced(corpus, 10, Duration::from_millis(100));
    let mut cmd = Sluice::run(&util::plugin(plugin), data)
        .job_arg("host", "127.0.0.1")
        .job_arg("port", server.port)
        .job_arg("output", prefix.display())
        .opt("--batch-interval", "500ms")
        .arg("--until-sources-end");
    for (k, v) in extra {
        cmd = cmd.job_arg(k, v);
    }
    let out = cmd.output();
    out.assert_success();
    server.finish();

    let mut saved = Counts::new();
    for batch in read_saved_batches(&prefix, None).unwrap() {
        let counts = parse_counts(batch.lines())
            .unwrap_or_else(|e| panic!("{}: {e:#}", batch.dir.display()));
        util::add_counts(&mut saved, &counts);
    }
    saved
}

fn expected() -> Counts {
    let text = std::str::from_utf8(util::corpus(LINES)).unwrap();
    count_words(lines_of(text))
}

/// The network word count of `plugin` counts every word once, with its
/// closure reducer and with the built-in sum.
fn network_word_count_is_exact(plugin: &str, lang: &str) {
    let expected = expected();
    let data = tempfile::tempdir().unwrap();
    for reducer in ["closure", "builtin"] {
        let saved = socket_counts(plugin, data.path(), &[("reducer", reducer)]);
        assert_counts_eq(&expected, &saved, &format!("{lang}, reducer={reducer}"));
    }
}

#[test]
fn python_network_word_count_counts_every_word_once_with_a_closure_and_with_the_builtin_sum() {
    network_word_count_is_exact(sluice_test_artifacts::NETWORK_WORD_COUNT_PY, "Python");
}

#[test]
fn javascript_network_word_count_counts_every_word_once_with_a_closure_and_with_the_builtin_sum() {
    network_word_count_is_exact(sluice_test_artifacts::NETWORK_WORD_COUNT_JS, "JavaScript");
}

#[test]
fn python_stateful_network_word_count_keeps_running_counts() {
    let expected = expected();
    let corpus = util::corpus(LINES);
    let tmp = tempfile::tempdir().unwrap();
    let prefix = tmp.path().join("out");
    let server = Server::serve_paced(corpus, 10, Duration::from_millis(100));
    let out = Sluice::run(
        &util::plugin(sluice_test_artifacts::STATEFUL_NETWORK_WORD_COUNT_PY),
        &tmp.path().join("data"),
    )
    .job_arg("host", "127.0.0.1")
    .job_arg("port", server.port)
    .job_arg("output", prefix.display())
    .opt("--batch-interval", "500ms")
    .arg("--until-sources-end")
    .output();
    out.assert_success();
    server.finish();
    // Running counts: the last batch holds every word's total.
    let batches = read_saved_batches(&prefix, None).unwrap();
    let last = batches.last().expect("saved batches");
    let counts = parse_counts(last.lines()).unwrap();
    assert_counts_eq(&expected, &counts, "the last batch's running counts");
}

/// `sluice new --lang LANG NAME`, then `sluice run NAME` against a socket:
/// the generated word count prints exact counts.
fn new_project_runs(lang: &str, name: &str) {
    let tmp = tempfile::tempdir().unwrap();
    let project = tmp.path().join(name);
    let out = Sluice::new(["new", "--lang", lang]).arg(&project).output();
    out.assert_success();
    assert!(
        project.join("README.md").is_file(),
        "the project has a README; {out:?}"
    );
    let readme = std::fs::read_to_string(project.join("README.md")).unwrap();
    assert_eq!(
        readme.lines().count(),
        5,
        "a README of five lines: {readme}"
    );

    let lines = ["to be or not to be", "that is the question", "to be"];
    let text = lines.join("\n") + "\n";
    let server = Server::serve_paced(text.into_bytes(), 1, Duration::ZERO);
    let out = Sluice::run(&project, &tmp.path().join("data"))
        .job_arg("host", "127.0.0.1")
        .job_arg("port", server.port)
        .arg("--until-sources-end")
        // A Rust project shares the compiled dependencies of the plugins.
        .env("CARGO_TARGET_DIR", plugins_cargo_target())
        .output();
    out.assert_success();
    server.finish();
    let mut printed = Counts::new();
    for batch in parse_printed(&out.stdout).unwrap() {
        util::add_counts(
            &mut printed,
            &parse_counts(batch.elements.iter().map(String::as_str)).unwrap(),
        );
    }
    assert_counts_eq(
        &count_words(lines),
        &printed,
        &format!("`sluice new --lang {lang}`"),
    );
    assert!(
        project
            .join("target")
            .join(format!("{name}.wasm"))
            .is_file(),
        "the build wrote target/{name}.wasm"
    );
}

/// Where `scripts/build-plugins` builds the Rust plugins.
fn plugins_cargo_target() -> std::path::PathBuf {
    util::repo_root().join("target").join("plugins-cargo")
}

#[test]
fn a_new_python_project_runs_in_two_commands() {
    new_project_runs("python", "wc-py");
}

#[test]
fn a_new_javascript_project_runs_in_two_commands() {
    new_project_runs("js", "wc-js");
}

#[test]
fn a_new_rust_project_runs_in_two_commands() {
    new_project_runs("rust", "wc-rs");
}

#[test]
fn a_folder_that_is_not_a_project_is_refused_with_what_it_lacks() {
    let tmp = tempfile::tempdir().unwrap();
    let out = Sluice::new(["build"]).arg(tmp.path()).output();
    out.assert_failure();
    out.assert_stderr_contains(&["is not a plugin project", "app.py", "app.js", "Cargo.toml"]);
}

#[test]
fn sluice_new_refuses_a_bad_name_a_folder_in_use_and_a_missing_sdk_with_the_cause() {
    let tmp = tempfile::tempdir().unwrap();
    let out = Sluice::new(["new", "--lang", "python"])
        .arg(tmp.path().join("Word Count"))
        .output();
    out.assert_failure();
    out.assert_stderr_contains(&["\"Word Count\" cannot name a plugin", "lower-case letters"]);

    let used = tmp.path().join("wc");
    std::fs::create_dir(&used).unwrap();
    std::fs::write(used.join("notes.txt"), "mine").unwrap();
    let out = Sluice::new(["new", "--lang", "js"]).arg(&used).output();
    out.assert_failure();
    out.assert_stderr_contains(&["already exists and is not an empty folder"]);
    assert_eq!(
        std::fs::read_to_string(used.join("notes.txt")).unwrap(),
        "mine",
        "nothing in the folder was touched"
    );
    assert!(!used.join("app.js").exists());

    let out = Sluice::new(["new", "--lang", "rust"])
        .arg(tmp.path().join("fresh"))
        .env("SLUICE_SDK", tmp.path().join("no-such-sdk"))
        .output();
    out.assert_failure();
    out.assert_stderr_contains(&["the Sluice SDKs are not at", "no-such-sdk", "SLUICE_SDK"]);
    assert!(
        !tmp.path().join("fresh").exists(),
        "no project is half-written"
    );
}
