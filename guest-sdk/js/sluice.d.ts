// TypeScript declarations of the Sluice JavaScript SDK (`import ... from 'sluice'`).
// Records are JS values: pairs are 2-element arrays `[k, v]`; i64/u64 are
// numbers when they are safe integers, else BigInt; options are `undefined`
// for none. See README.md.

/** A codec descriptor, e.g. "tuple<string,i64>" (wit/CODECS.md). */
export type Codec = string;

/** Declared types: codec descriptors. */
export declare const T: {
  readonly string: 'string'; readonly bytes: 'bytes'; readonly bool: 'bool'; readonly unit: 'unit';
  readonly i8: 'i8'; readonly i16: 'i16'; readonly i32: 'i32'; readonly i64: 'i64';
  readonly u8: 'u8'; readonly u16: 'u16'; readonly u32: 'u32'; readonly u64: 'u64';
  readonly f32: 'f32'; readonly f64: 'f64'; readonly json: 'json';
  tuple(...elems: Codec[]): Codec;
  pair(key: Codec, value: Codec): Codec;
  option(inner: Codec): Codec;
  list(inner: Codec): Codec;
};

/** A duration: milliseconds, or a string such as "500ms", "30s", "5m", "2h". */
export type Duration = number | string;

/** i64/u64 values: a number when it is a safe integer, else a bigint. */
export type Long = number | bigint;

/** Wraps an option's value when it is itself none-like (only for nested options). */
export declare class Some<A> { constructor(value: A); readonly value: A; }

/** A value that does not fit a codec, or bytes that do not decode. */
export declare class CodecError extends Error {}

/** Built-in reducers, run natively by the host (no plugin call). */
export interface BuiltinReducer { readonly __builtin: 'sum' | 'min' | 'max' | 'count' }
export declare const Reducers: {
  readonly sum: BuiltinReducer; readonly min: BuiltinReducer; readonly max: BuiltinReducer; readonly count: BuiltinReducer;
};

export interface TypeOptions { outputType?: Codec }

/** The `--arg KEY=VALUE` pairs. */
export declare class Args implements Iterable<[string, string]> {
  get(key: string): string | undefined;
  get(key: string, fallback: string): string;
  has(key: string): boolean;
  /** The value, or an error naming the missing argument. */
  require(key: string): string;
  int(key: string, fallback?: number): number;
  /** A duration argument, in ms. */
  duration(key: string, fallback?: number): number;
  toObject(): Record<string, string>;
  [Symbol.iterator](): Iterator<[string, string]>;
}

export declare class Accumulator {
  readonly name: string;
  /** Counted once when the task succeeds; dropped while the job is defined. */
  add(x: number | bigint): void;
}

export declare class Broadcast<V> {
  readonly name: string;
  /** The value (fetched from the host once per instance). */
  readonly value: V;
}

/** The state of one key in a mapWithState function (Spark's State). */
export declare class State<S> {
  exists(): boolean;
  get(): S;
  getOption(): S | undefined;
  update(state: S): void;
  remove(): void;
  isTimingOut(): boolean;
}

/** Spark's StateSpec. */
export declare class StateSpec<K, V, S, M> {
  static function<K, V, S, M>(f: (key: K, value: V | undefined, state: State<S>) => M): StateSpec<K, V, S, M>;
  timeout(idle: Duration): this;
  numPartitions(n: number): this;
  withStateType(type: Codec): this;
  withOutputType(type: Codec): this;
}

export interface WindowOptions<K, V> {
  numPartitions?: number;
  /** Which pairs an incremental window keeps: a function, or "nonzero". */
  filter?: ((pair: [K, V]) => boolean) | 'nonzero';
}

export declare class DStream<R> {
  /** The codec of the records. */
  readonly codec: Codec;
  /** Names the operator (its state is kept under the name; unique in a job). */
  name(uid: string): this;
  checkpoint(interval: Duration): this;

  map<U>(f: (r: R) => U, options?: TypeOptions): DStream<U>;
  flatMap<U>(f: (r: R) => Iterable<U>, options?: TypeOptions): DStream<U>;
  filter(f: (r: R) => boolean): DStream<R>;
  mapPartitions<U>(f: (records: R[]) => Iterable<U>, options?: TypeOptions): DStream<U>;
  repartition(numPartitions: number): DStream<R>;
  union(...others: DStream<R>[]): DStream<R>;
  count(): DStream<number>;
  reduce(f: ((a: R, b: R) => R) | BuiltinReducer): DStream<R>;
  countByValue(numPartitions?: number): DStream<[R, number]>;
  /** The whole batch in one call. */
  transform<U>(f: (records: R[], batchTimeMs: number) => Iterable<U>, options?: TypeOptions): DStream<U>;

  window(length: Duration, slide?: Duration): DStream<R>;
  countByWindow(length: Duration, slide?: Duration): DStream<number>;
  reduceByWindow(f: ((a: R, b: R) => R) | BuiltinReducer, length: Duration, slide?: Duration): DStream<R>;
  countByValueAndWindow(length: Duration, slide?: Duration, numPartitions?: number): DStream<[R, number]>;

  // Pair streams (R = [K, V]).
  reduceByKey<K, V>(this: DStream<[K, V]>, f: ((a: V, b: V) => V) | BuiltinReducer, numPartitions?: number): DStream<[K, V]>;
  groupByKey<K, V>(this: DStream<[K, V]>, numPartitions?: number): DStream<[K, V[]]>;
  mapValues<K, V, W>(this: DStream<[K, V]>, f: (v: V) => W, options?: TypeOptions): DStream<[K, W]>;
  flatMapValues<K, V, W>(this: DStream<[K, V]>, f: (v: V) => Iterable<W>, options?: TypeOptions): DStream<[K, W]>;
  reduceByKeyAndWindow<K, V>(this: DStream<[K, V]>, f: ((a: V, b: V) => V) | BuiltinReducer, invF: ((a: V, b: V) => V) | null | undefined,
    windowLength: Duration, slide?: Duration, options?: WindowOptions<K, V>): DStream<[K, V]>;
  reduceByKeyAndWindow<K, V>(this: DStream<[K, V]>, f: ((a: V, b: V) => V) | BuiltinReducer,
    windowLength: Duration, slide?: Duration, options?: WindowOptions<K, V>): DStream<[K, V]>;
  updateStateByKey<K, V, S>(this: DStream<[K, V]>, f: (values: V[], state: S | undefined) => S | undefined,
    options?: { stateType?: Codec; numPartitions?: number }): DStream<[K, S]>;
  /** updateStateByKey with the new values as runs: each `[count, value]` is `count` equal values in a row (count ≥ 1). */
  updateStateByKeyRuns<K, V, S>(this: DStream<[K, V]>, f: (runs: [number, V][], state: S | undefined) => S | undefined,
    options?: { stateType?: Codec; numPartitions?: number }): DStream<[K, S]>;
  mapWithState<K, V, S, M>(this: DStream<[K, V]>, spec: StateSpec<K, V, S, M>): MapWithStateDStream<K, S, M>;
  join<K, V, W>(this: DStream<[K, V]>, other: DStream<[K, W]>, numPartitions?: number): DStream<[K, [V, W]]>;
  leftOuterJoin<K, V, W>(this: DStream<[K, V]>, other: DStream<[K, W]>, numPartitions?: number): DStream<[K, [V, W | undefined]]>;
  rightOuterJoin<K, V, W>(this: DStream<[K, V]>, other: DStream<[K, W]>, numPartitions?: number): DStream<[K, [V | undefined, W]]>;
  fullOuterJoin<K, V, W>(this: DStream<[K, V]>, other: DStream<[K, W]>, numPartitions?: number): DStream<[K, [V | undefined, W | undefined]]>;
  cogroup<K, V, W>(this: DStream<[K, V]>, other: DStream<[K, W]>, numPartitions?: number): DStream<[K, [V[], W[]]]>;
  /** Joins with a reference dataset of key<TAB>value lines; the value type defaults to T.string. */
  joinDataset<K, V, W = string>(this: DStream<[K, V]>, location: string, valueType?: Codec): DStream<[K, [V, W]]>;
  leftOuterJoinDataset<K, V, W = string>(this: DStream<[K, V]>, location: string, valueType?: Codec): DStream<[K, [V, W | undefined]]>;

  // Outputs.
  print(n?: number): void;
  saveAsTextFiles(prefix: string, suffix?: string): void;
  saveToSqlite(path: string, table: string): void;
  /** Spark's foreachRDD + foreachPartition: once per partition of every batch. */
  foreachPartition(f: (batchTimeMs: number, partition: number, records: R[]) => void): void;
}

export declare class MapWithStateDStream<K, S, M> extends DStream<M> {
  /** The whole state after each batch, as [key, state]. */
  stateSnapshots(): DStream<[K, S]>;
}

/** Spark's StreamingContext: the sources and the job-wide settings. */
export declare class StreamingContext {
  constructor(name?: string);
  socketTextStream(host: string, port: number): DStream<string>;
  textFileStream(directory: string): DStream<string>;
  queueStream<R>(batches: R[][], options?: { type?: Codec }): DStream<R>;
  queueStreamFromLinesFile(path: string, linesPerBatch: number): DStream<string>;
  rateStream(recordsPerSecond: number): DStream<[number, number]>;
  union<R>(...streams: DStream<R>[]): DStream<R>;
  remember(duration: Duration): void;
  longAccumulator(name: string): Accumulator;
  doubleAccumulator(name: string): Accumulator;
  broadcast<V>(name: string, value: V, options?: { type?: Codec }): Broadcast<V>;
  broadcastFile(name: string, path: string): Broadcast<string>;
}

export declare function durationMs(d: Duration, what?: string): number;

/** What `app.js` exports. */
export interface App {
  /** The job's name (default: the plugin folder's name). */
  name?: string;
  define(ssc: StreamingContext, args: Args): void;
}
