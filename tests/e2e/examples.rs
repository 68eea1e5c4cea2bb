//! The example plugins of the stateful half, run by the real binary against
//! real sockets, each checked against an independent computation:
//! `stateful-word-count` (running counts), `windowed-word-count` (counts per
//! window, with bursts of words that occur nowhere else, so that the output
//! itself tells which batch each burst landed in), `blacklist-filter`
//! (broadcast values and an accumulator) and `stream-join` (two windowed
//! streams joined).

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::io::Write;
use std::net::{Shutdown, TcpListener};
use std::thread;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::util::{
    self, Counts, Server, Sluice, assert_counts_eq, count_words, lines_of, parse_counts,
    parse_printed, read_metrics, read_saved_batches,
};

const BATCH_MS: u64 = 500;

fn run(plugin: &str, dir: &std::path::Path) -> Sluice {
    Sluice::run(&util::plugin(plugin), &dir.join("data"))
        .opt("--batch-interval", format!("{BATCH_MS}ms"))
        .opt("--block-interval", "100ms")
        .arg("--until-sources-end")
}

#[test]
fn stateful_word_count_ends_with_the_exact_counts_of_the_whole_input() {
    let corpus = util::corpus(20_000);
    let lines = lines_of(std::str::from_utf8(corpus).unwrap());
    let expected = count_words(lines.iter().copied());
    let dir = tempfile::tempdir().unwrap();
    let prefix = dir.path().join("out").join("counts");
    let server = Server::serve_paced(corpus, 20, Duration::from_millis(100));
    run(sluice_test_artifacts::STATEFUL_WORD_COUNT, dir.path())
        .job_arg("host", "127.0.0.1")
        .job_arg("port", server.port)
        .job_arg("output", prefix.display())
        .output()
        .assert_success();
    server.finish();
    let batches = read_saved_batches(&prefix, None).unwrap();
    assert!(batches.len() >= 3, "the input spans several batches");
    // Running counts: every batch holds every word seen so far, and a count
    // never decreases.
    let mut previous = Counts::new();
    for batch in &batches {
        let counts = parse_counts(batch.lines()).unwrap();
        for (word, n) in &previous {
            assert!(
                counts.get(word).is_some_and(|m| m >= n),
                "batch {}: {word:?} went from {n} to {:?}",
                batch.time_ms,
                counts.get(word)
            );
        }
        previous = counts;
    }
    assert_counts_eq(&expected, &previous, "the last batch's running counts");
}

/// A server that sends each burst (a block of lines) in the middle of a
/// batch interval, at least one batch after the previous (six before the
/// last, so that some windows between them are empty), then closes.
fn serve_bursts(bursts: Vec<String>) -> (u16, thread::JoinHandle<()>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let handle = thread::spawn(move || {
        let (mut stream, _) = listener.accept().unwrap();
        let last = bursts.len().saturating_sub(1);
        for (i, burst) in bursts.into_iter().enumerate() {
            if i == last {
                thread::sleep(Duration::from_millis(5 * BATCH_MS));
            }
            // Sleep to the middle of the next batch interval: far from the
            // batch boundaries, so the whole burst lands in one batch.
            let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap();
            let now_ms = now.as_millis() as u64;
            let target = (now_ms / BATCH_MS + 1) * BATCH_MS + BATCH_MS / 2;
            thread::sleep(Duration::from_millis(target - now_ms));
            stream.write_all(burst.as_bytes()).unwrap();
            stream.flush().unwrap();
            thread::sleep(Duration::from_millis(BATCH_MS));
        }
        stream.shutdown(Shutdown::Write).unwrap();
    });
    (port, handle)
}

#[test]
fn windowed_word_count_counts_each_burst_in_exactly_the_windows_that_cover_it() {
    // Words of burst i: `b<i>w<j>`, word j occurring j + 1 times.
    let bursts: Vec<Vec<(String, i64)>> = (0..4)
        .map(|i| (0..5).map(|j| (format!("b{i}w{j}"), j + 1)).collect())
        .collect();
    let text = |burst: &Vec<(String, i64)>| {
        let mut words = Vec::new();
        for (w, n) in burst {
            words.extend(std::iter::repeat_n(w.as_str(), *n as usize));
        }
        // Three words per line, in an order that mixes the words.
        words.sort_by_key(|w| w.bytes().rev().collect::<Vec<_>>());
        let mut out = String::new();
        for line in words.chunks(3) {
            out.push_str(&line.join(" "));
            out.push('\n');
        }
        out
    };
    let (window, slide) = (2000u64, 1000u64);
    let dir = tempfile::tempdir().unwrap();
    let prefix = dir.path().join("out").join("windows");
    let (port, server) = serve_bursts(bursts.iter().map(text).collect());
    let out = run(sluice_test_artifacts::WINDOWED_WORD_COUNT, dir.path())
        .job_arg("host", "127.0.0.1")
        .job_arg("port", port)
        .job_arg("window", format!("{window}ms"))
        .job_arg("slide", format!("{slide}ms"))
        .job_arg("output", prefix.display())
        .output();
    out.assert_success();
    server.join().unwrap();

    let windows = read_saved_batches(&prefix, None).unwrap();
    let times: Vec<u64> = windows.iter().map(|w| w.time_ms).collect();
    for t in &times {
        assert_eq!(
            t % slide,
            0,
            "window at {t} ms is not at a multiple of the slide"
        );
    }
    for pair in times.windows(2) {
        assert_eq!(
            pair[1] - pair[0],
            slide,
            "a window is written every slide, empty or not"
        );
    }
    // `print` shows every window too, the empty ones with their header.
    let printed = parse_printed(&out.stdout).unwrap();
    assert_eq!(
        printed.iter().map(|p| p.time_ms).collect::<Vec<_>>(),
        times,
        "a header is printed for every window"
    );
    assert!(
        printed.iter().any(|p| p.elements.is_empty()),
        "an empty window is printed (its header alone)"
    );
    let counts: Vec<(u64, Counts)> = windows
        .iter()
        .map(|w| (w.time_ms, parse_counts(w.lines()).unwrap()))
        .collect();
    let mut first_windows = BTreeSet::new();
    for (i, burst) in bursts.iter().enumerate() {
        let expected: Counts = burst.iter().cloned().collect();
        // The windows holding any word of the burst.
        let holding: Vec<&(u64, Counts)> = counts
            .iter()
            .filter(|(_, c)| expected.keys().any(|w| c.contains_key(w)))
            .collect();
        // A batch at time B is in the windows T with T - window < B <= T:
        // window / slide consecutive ones, but none is written after the
        // one holding the last input.
        let last_time = *times.last().unwrap();
        let first = holding
            .first()
            .map(|(t, _)| *t)
            .unwrap_or_else(|| panic!("burst {i} is in no window; {out:?}"));
        let covering: Vec<u64> = (first..first + window)
            .step_by(slide as usize)
            .filter(|t| *t <= last_time)
            .collect();
        assert_eq!(
            holding.iter().map(|(t, _)| *t).collect::<Vec<_>>(),
            covering,
            "burst {i}: the windows holding it; {out:?}"
        );
        if i + 1 < bursts.len() {
            assert_eq!(
                covering.len() as u64,
                window / slide,
                "burst {i} is not the last"
            );
        }
        for (t, c) in &holding {
            let got: Counts = c
                .iter()
                .filter(|(w, _)| expected.contains_key(*w))
                .map(|(w, n)| (w.clone(), *n))
                .collect();
            assert_counts_eq(
                &expected,
                &got,
                &format!("burst {i} in the window at {t} ms"),
            );
        }
        first_windows.insert(holding[0].0);
    }
    assert_eq!(
        first_windows.len(),
        bursts.len(),
        "each burst landed in its own batch"
    );
    // No word that is not in a burst; and the window after the last input
    // is the last written (none is written after it).
    let last_input_window = counts
        .iter()
        .rev()
        .find(|(_, c)| !c.is_empty())
        .map(|(t, _)| *t)
        .unwrap();
    assert_eq!(
        *times.last().unwrap(),
        last_input_window,
        "no window is written after the one holding the last input"
    );
}

#[test]
fn blacklist_filter_drops_listed_words_and_counts_them_in_an_accumulator() {
    let corpus = util::corpus(20_000);
    let lines = lines_of(std::str::from_utf8(corpus).unwrap());
    let all = count_words(lines.iter().copied());
    // The three most frequent words, two given inline, one in a file.
    let mut by_count: Vec<(&String, &i64)> = all.iter().collect();
    by_count.sort_by(|a, b| b.1.cmp(a.1).then(a.0.cmp(b.0)));
    let listed: Vec<String> = by_count[..2].iter().map(|(w, _)| (*w).clone()).collect();
    let in_file = by_count[2].0.clone();
    let blacklisted: BTreeSet<&String> = listed.iter().chain([&in_file]).collect();
    let dropped: i64 = blacklisted.iter().map(|w| all[*w]).sum();
    let expected: Counts = all
        .iter()
        .filter(|(w, _)| !blacklisted.contains(w))
        .map(|(w, n)| (w.clone(), *n))
        .collect();

    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("blacklist.txt");
    std::fs::write(&file, format!("{in_file}\n")).unwrap();
    let prefix = dir.path().join("out").join("counts");
    let metrics = dir.path().join("metrics.jsonl");
    let server = Server::serve_paced(corpus, 10, Duration::from_millis(100));
    let out = run(sluice_test_artifacts::BLACKLIST_FILTER, dir.path())
        .job_arg("host", "127.0.0.1")
        .job_arg("port", server.port)
        .job_arg("blacklist", listed.join(","))
        .job_arg("blacklist-file", file.display())
        .job_arg("output", prefix.display())
        .opt("--metrics-json", &metrics)
        .output();
    out.assert_success();
    server.finish();

    let mut total = Counts::new();
    for batch in read_saved_batches(&prefix, None).unwrap() {
        util::add_counts(&mut total, &parse_counts(batch.lines()).unwrap());
    }
    assert_counts_eq(&expected, &total, "the counts of the words not on the list");
    // Each batch's additions counted once, summed over the batches.
    let metrics = read_metrics(&metrics).unwrap();
    let totals = &metrics.last().unwrap().accumulator_totals;
    assert_eq!(
        totals.get("dropped-words").copied(),
        Some(dropped as f64),
        "{totals:?}"
    );
    assert!(
        out.stderr.contains(&format!("dropped-words={dropped}")),
        "the summary names the accumulator's total; {out:?}"
    );
}

#[test]
fn stream_join_counts_the_clicks_of_each_ad_over_both_windows() {
    // 300 impressions of 7 ads; clicks on every third impression, some
    // twice, plus clicks on unknown impressions and lines that do not parse.
    let impressions: Vec<(String, String)> = (0..300)
        .map(|i| (format!("imp{i}"), format!("ad{}", i % 7)))
        .collect();
    let mut clicks: Vec<String> = (0..300)
        .step_by(3)
        .map(|i| format!("imp{i}"))
        .chain((0..300).step_by(30).map(|i| format!("imp{i}")))
        .chain(["nowhere1".to_string(), "nowhere2".to_string()])
        .collect();
    clicks.sort();
    let mut expected: HashMap<String, i64> = HashMap::new();
    let ads: BTreeMap<&str, &str> = impressions
        .iter()
        .map(|(i, a)| (i.as_str(), a.as_str()))
        .collect();
    for click in &clicks {
        if let Some(ad) = ads.get(click.as_str()) {
            *expected.entry(ad.to_string()).or_default() += 1;
        }
    }
    let mut impression_text: String = impressions
        .iter()
        .map(|(i, a)| format!("{i} {a}\n"))
        .collect();
    impression_text.push_str("a line that does not parse\n");
    let mut click_text: String = clicks.iter().map(|c| format!("{c}\n")).collect();
    click_text.push_str("two words\n");

    let dir = tempfile::tempdir().unwrap();
    let prefix = dir.path().join("out").join("clicks");
    let impressions_server = Server::serve_paced(impression_text, 6, Duration::from_millis(150));
    let clicks_server = Server::serve_paced(click_text, 6, Duration::from_millis(150));
    run(sluice_test_artifacts::STREAM_JOIN, dir.path())
        .job_arg("host", "127.0.0.1")
        .job_arg("impressions-port", impressions_server.port)
        .job_arg("clicks-port", clicks_server.port)
        .job_arg("output", prefix.display())
        .output()
        .assert_success();
    impressions_server.finish();
    clicks_server.finish();
    // The run is shorter than both windows (60 s, 20 s): the last batch
    // joins everything received.
    let batches = read_saved_batches(&prefix, None).unwrap();
    let last = parse_counts(batches.last().unwrap().lines()).unwrap();
    assert_counts_eq(&expected, &last, "clicks per ad in the last batch");
}

#[test]
fn a_window_that_is_not_a_multiple_of_the_batch_interval_is_refused_naming_it() {
    let dir = tempfile::tempdir().unwrap();
    run(sluice_test_artifacts::WINDOWED_WORD_COUNT, dir.path())
        .job_arg("host", "127.0.0.1")
        .job_arg("port", 9)
        .job_arg("window", "1250ms")
        .job_arg("slide", "1s")
        .output()
        .assert_failure()
        .assert_stderr_contains(&["window-counts", "1s 250ms", "500ms"]);
}
