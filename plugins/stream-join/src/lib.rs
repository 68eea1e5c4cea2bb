//! Ad impressions joined with clicks over windows (the guide's windowed
//! stream-stream join): every batch, the clicks of the last `clicks-window`
//! are matched with the impressions of the last `impressions-window` by
//! impression id, and the matched clicks counted per ad.
//!
//! Arguments (`--arg KEY=VALUE`):
//!
//! - `host` with `impressions-port` and `clicks-port` (two TCP servers), or
//!   instead `impressions-dir` and `clicks-dir` (text file streams).
//! - `impressions-window` (default `60s`), `clicks-window` (default `20s`):
//!   both windows slide with the batch interval.
//! - `output` (optional): also save every batch's `(ad,clicks)` lines with
//!   `save_as_text_files(output)`.
//!
//! Impression lines are `<impression-id> <ad-id>`, click lines
//! `<impression-id>`; lines that do not parse are skipped. See `README.md`.

use std::time::Duration;

use sluice_guest::prelude::*;

/// The job.
pub struct StreamJoin;

/// The two line streams: impressions, clicks.
fn sources(
    ctx: &StreamingContext,
    args: &Args,
) -> Result<(DStream<String>, DStream<String>), String> {
    match (
        args.get("impressions-dir"),
        args.get("clicks-dir"),
        args.get("host"),
    ) {
        (Some(impressions), Some(clicks), None) => Ok((
            ctx.text_file_stream(impressions),
            ctx.text_file_stream(clicks),
        )),
        (None, None, Some(host)) => Ok((
            ctx.socket_text_stream(host, args.parse::<u16>("impressions-port")?),
            ctx.socket_text_stream(host, args.parse::<u16>("clicks-port")?),
        )),
        _ => Err(
            "give either `host`, `impressions-port` and `clicks-port` (sockets) \
                  or `impressions-dir` and `clicks-dir` (text file streams)"
                .into(),
        ),
    }
}

/// `<impression-id> <ad-id>` as `(impression, ad)`.
fn impression(line: &str) -> Option<(String, String)> {
    let mut fields = line.split_whitespace();
    match (fields.next(), fields.next(), fields.next()) {
        (Some(id), Some(ad), None) => Some((id.to_string(), ad.to_string())),
        _ => None,
    }
}

/// `<impression-id>` as `(impression, ())`.
fn click(line: &str) -> Option<(String, ())> {
    let mut fields = line.split_whitespace();
    match (fields.next(), fields.next()) {
        (Some(id), None) => Some((id.to_string(), ())),
        _ => None,
    }
}

impl Job for StreamJoin {
    fn define(ctx: &mut StreamingContext, args: &Args) -> Result<(), String> {
        let impressions_window = args
            .duration_optional("impressions-window")?
            .unwrap_or(Duration::from_secs(60));
        let clicks_window = args
            .duration_optional("clicks-window")?
            .unwrap_or(Duration::from_secs(20));
        let (impression_lines, click_lines) = sources(ctx, args)?;
        let impressions = impression_lines
            .flat_map(|l: String| impression(&l))
            .window_length(impressions_window);
        let clicks = click_lines
            .flat_map(|l: String| click(&l))
            .window_length(clicks_window);
        let clicks_per_ad = impressions
            .join(&clicks)
            .map(|(_impression, (ad, ())): (String, (String, ()))| (ad, 1i64))
            .reduce_by_key(|a, b| a + b);
        clicks_per_ad.print();
        if let Some(output) = args.get("output") {
            clicks_per_ad.save_as_text_files(output, None);
        }
        Ok(())
    }
}

sluice_guest::export_job!(StreamJoin);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_that_do_not_parse_are_skipped() {
        assert_eq!(impression("i1 ad7"), Some(("i1".into(), "ad7".into())));
        assert_eq!(impression("i1"), None);
        assert_eq!(impression("i1 ad7 extra"), None);
        assert_eq!(click(" i1 "), Some(("i1".into(), ())));
        assert_eq!(click(""), None);
        assert_eq!(click("i1 i2"), None);
    }
}
