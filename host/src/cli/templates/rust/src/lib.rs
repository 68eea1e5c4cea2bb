//! {{name}}: the network word count of the Spark Streaming guide.

use sluice_guest::prelude::*;

struct WordCount;

impl Job for WordCount {
    fn define(ctx: &mut StreamingContext, args: &Args) -> Result<(), String> {
        let lines = ctx.socket_text_stream(args.require("host")?, args.parse::<u16>("port")?);
        // Each word as a (word, 1) pair borrowed from its line: no copy of
        // the word until the combine of reduce_by_key meets a new one.
        let pairs = lines.flat_map_str(|line, out| {
            for word in sluice_guest::text::split(line, ' ') {
                out.emit((word, 1i64));
            }
        });
        let counts = pairs.reduce_by_key(|a, b| a + b);
        counts.print();
        Ok(())
    }
}

sluice_guest::export_job!(WordCount);
