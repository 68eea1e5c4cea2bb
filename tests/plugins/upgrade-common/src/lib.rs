//! Test fixture: the stateful word count that the `upgrade-*` test plugins
//! share, so that their graphs are the same but for what each changes.
//!
//! Arguments (`--arg KEY=VALUE`): `host` and `port` (a socket text stream);
//! `output` (optional): every batch saves the full running counts with
//! `save_as_text_files(output)`, as `(word,count)` lines.
//!
//! The job: split lines on single spaces, turn each word into `word(w)` (the
//! plugin's choice), count with `update_state_by_key` named
//! `running-counts`, whose state is an `i64` (or, with [`define_text`], the
//! count as decimal text: another state codec).

use sluice_guest::prelude::*;

/// The lines of the socket the arguments name.
fn lines(ctx: &StreamingContext, args: &Args) -> Result<DStream<String>, String> {
    let host = args.get("host").ok_or("give `host` and `port`")?;
    Ok(ctx.socket_text_stream(host, args.parse::<u16>("port")?))
}

/// The words of the lines, each as `word` makes it, paired with 1.
fn words(
    ctx: &StreamingContext,
    args: &Args,
    word: fn(&str) -> String,
) -> Result<DStream<(String, i64)>, String> {
    Ok(lines(ctx, args)?
        .flat_map(move |l: String| l.split(' ').map(word).collect::<Vec<_>>())
        .map(|w| (w, 1i64)))
}

/// The running counts of the words, state `i64`.
pub fn define(
    ctx: &mut StreamingContext,
    args: &Args,
    word: fn(&str) -> String,
) -> Result<(), String> {
    let running = words(ctx, args, word)?
        .update_state_by_key(|new: Vec<i64>, count: Option<i64>| {
            Some(count.unwrap_or(0) + new.iter().sum::<i64>())
        })
        .name("running-counts");
    if let Some(output) = args.get("output") {
        running.save_as_text_files(output, None);
    }
    Ok(())
}

/// The running counts of the words, the state the count as decimal text.
pub fn define_text(
    ctx: &mut StreamingContext,
    args: &Args,
    word: fn(&str) -> String,
) -> Result<(), String> {
    let running = words(ctx, args, word)?
        .update_state_by_key(|new: Vec<i64>, count: Option<String>| {
            let before: i64 = count.and_then(|c| c.parse().ok()).unwrap_or(0);
            Some((before + new.iter().sum::<i64>()).to_string())
        })
        .name("running-counts");
    if let Some(output) = args.get("output") {
        running.save_as_text_files(output, None);
    }
    Ok(())
}
