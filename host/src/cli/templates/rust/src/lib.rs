//! {{name}}: the network word count of the Spark Streaming guide.

use sluice_guest::prelude::*;

struct WordCount;

impl Job for WordCount {
    fn define(ctx: &mut StreamingContext, args: &Args) -> Result<(), String> {
        let lines = ctx.socket_text_stream(args.require("host")?, args.parse::<u16>("port")?);
        let words = lines.flat_map(|line: String| line.split(' ').map(String::from).collect::<Vec<_>>());
        let counts = words.map(|word| (word, 1i64)).reduce_by_key(|a, b| a + b);
        counts.print();
        Ok(())
    }
}

sluice_guest::export_job!(WordCount);
