// The Sluice JavaScript SDK: Spark Streaming's DStream API for jobs that run
// as WebAssembly components (see README.md). A job is an `app.js` exporting
// `define(ssc, args)`; `guest-sdk/js/build` turns it into a component.
export { T, Some, CodecError } from './src/codec.js';
export { Args, Accumulator, Broadcast, DStream, Reducers, State, StateSpec, StreamingContext, durationMs } from './src/graph.js';
