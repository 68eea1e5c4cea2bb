"""StreamingContext and DStream: PySpark's DStream API building a Sluice job graph."""

import datetime
import os
import sys
import typing

from . import codec, types
from .args import Args, ArgumentError, parse_duration_ms
from .runtime import (INSTANCE, DefineError, KeyReducer, MapWithState, Narrow, Output, Reducer,
                      State, TaskError, Transform, UpdateState, describe_exception, takes_time)
from .shared import STATE, Accumulator, Broadcast
from .types import (I64_T, STRING, UNIT, InferenceError, TypeDeclarationError, list_of, of_value,
                    option, pair)

__all__ = ["StreamingContext", "DStream", "JobError", "MapWithStateDStream", "StateSpec", "SUM", "MIN",
           "MAX", "COUNT", "NONZERO", "define"]

_PKG_DIR = os.path.dirname(os.path.abspath(__file__))


class JobError(Exception):
    """Raise it in ``define`` to refuse to start with a message and no
    traceback: ``raise JobError("give either `host` and `port` or `dir`")``
    fails with ``<job name>: <message>`` (as the Rust SDK's ``Err``)."""


class _Builtin:
    """A reducer the host runs natively (no call into the plugin)."""

    __slots__ = ("kind",)

    def __init__(self, kind):
        self.kind = kind

    def __repr__(self):
        return self.kind.upper()


SUM, MIN, MAX, COUNT = _Builtin("sum"), _Builtin("min"), _Builtin("max"), _Builtin("count")


class _Nonzero:
    def __repr__(self):
        return "NONZERO"


#: ``filterFunc=NONZERO`` in ``reduceByKeyAndWindow``: keep the keys whose
#: value is not zero (the host's built-in key filter, for SUM and COUNT).
NONZERO = _Nonzero()


def _where():
    """``file:line`` of the user's call (the first frame outside this package)."""
    f = sys._getframe(2)
    while f is not None and os.path.dirname(os.path.abspath(f.f_code.co_filename)) == _PKG_DIR:
        f = f.f_back
    if f is None:
        return "?"
    return "%s:%d" % (os.path.basename(f.f_code.co_filename), f.f_lineno)


class Node:
    __slots__ = ("name", "uid", "kind", "inputs", "codec", "checkpoint_ms")

    def __init__(self, name, kind, inputs, codec_):
        self.name = name
        self.uid = None
        self.kind = kind
        self.inputs = list(inputs)
        self.codec = codec_
        self.checkpoint_ms = None

    def __repr__(self):
        return "Node(%r, %r, inputs=%r, codec=%r, uid=%r)" % (self.name, self.kind, self.inputs,
                                                              self.codec, self.uid)


class Graph:
    """The job graph in plain Python (the glue converts it to the WIT types)."""

    def __init__(self, name):
        self.name = name
        self.nodes = []
        self.functions = []
        self.broadcasts = []     # (name, ("bytes", data) | ("file", path))
        self.remember_ms = None

    def add_function(self, entry):
        self.functions.append(entry)
        return len(self.functions) - 1

    def add_node(self, name, kind, inputs, t):
        self.nodes.append(Node(name, kind, inputs, t.codec if t is not None else ""))
        return len(self.nodes) - 1


def _millis(value, what, name):
    """Seconds (int/float, as PySpark), a ``timedelta`` or a string (``500ms``) -> ms > 0."""
    if isinstance(value, bool):
        raise DefineError("%s: %s: %r is not a duration" % (name, what, value))
    if isinstance(value, str):
        try:
            ms = parse_duration_ms(value)
        except ValueError as e:
            raise DefineError("%s: %s: %s" % (name, what, e)) from None
    elif isinstance(value, datetime.timedelta):
        ms = value / datetime.timedelta(milliseconds=1)
    elif isinstance(value, (int, float)):
        ms = value * 1000
    else:
        raise DefineError("%s: %s: %r is not a duration (seconds, or a string like '500ms')"
                          % (name, what, value))
    whole = round(ms)
    if abs(ms - whole) > 1e-6:
        raise DefineError("%s: %s: %r is not a whole number of milliseconds" % (name, what, value))
    if whole <= 0:
        raise DefineError("%s: %s: a duration must be positive, got %r" % (name, what, value))
    return int(whole)


def _partitions(n, name):
    if n is None:
        return None
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise DefineError("%s: the number of partitions must be at least 1, got %r" % (name, n))
    return n


def _declared(decl, name, keyword):
    try:
        return types.declared(decl)
    except TypeDeclarationError as e:
        raise DefineError("%s: %s=%r: %s" % (name, keyword, decl, e)) from None


def _return_annotation(f):
    try:
        hints = typing.get_type_hints(f)
    except Exception:
        try:
            hints = getattr(f, "__annotations__", None) or {}
        except Exception:
            return None
    return hints.get("return") if isinstance(hints, dict) else None


def _sample_text(sample):
    text = repr(sample)
    return text if len(text) <= 60 else text[:57] + "..."


def _infer(name, op, f, declared_, call, sample, how="value", keyword="output_type",
           example="(str, int)"):
    """The output type of ``f``: declared, annotated, or inferred by example."""
    if declared_ is not None:
        return _declared(declared_, name, keyword)
    ann = _return_annotation(f)
    if ann is not None:
        if how == "iterable":
            t = types.element_of_annotation(ann)
        else:
            t = types.annotation_type(ann)
            if t is not None and how == "state" and t.kind == "option":
                t = t.args[0]
        if t is not None:
            return t
    hint = "declare it: .%s(f, %s=%s)" % (op, keyword, example)
    what = "state" if keyword == "state_type" else "record"
    try:
        result = call()
        if how == "iterable":
            if result is None:
                raise InferenceError("it returned None, not an iterable")
            try:
                result = next(iter(result))
            except StopIteration:
                raise InferenceError("it returned no element") from None
        if how == "state" and result is None:
            raise InferenceError("it returned None (no state)")
        return of_value(result)
    except InferenceError as e:
        raise DefineError("cannot infer the %s type of `%s` (%s for the sample %s); %s"
                          % (what, name, e, _sample_text(sample), hint)) from None
    except Exception as e:
        raise DefineError("cannot infer the %s type of `%s` (calling it on the sample %s raised "
                          "%s: %s); %s" % (what, name, _sample_text(sample), type(e).__name__, e,
                                           hint)) from None


def _reducer(f, name, ctx, pair_t, by_key=True):
    """A reducer argument: a builtin or a function registered in the table."""
    if isinstance(f, _Builtin):
        return (f.kind,)
    if not callable(f):
        raise DefineError("%s: the reducer must be a function or one of SUM, MIN, MAX, COUNT, got %r"
                          % (name, f))
    entry = KeyReducer(name, f, pair_t) if by_key else Reducer(name, f, pair_t)
    return ("function", ctx._graph.add_function(entry))


def _check_builtin(reducer, value_t, name):
    if reducer[0] in ("sum", "min", "max") and not value_t.numeric:
        raise DefineError("%s: the built-in %s needs numeric values (i8..u64, f32, f64), and the "
                          "values are %s" % (name, reducer[0].upper(), value_t.codec))


class StreamingContext:
    """What ``define(ssc, args)`` receives: sources, shared values, settings.

    The batch interval, the checkpoint location and the workers are the
    host's (``sluice run --batch-interval 1s --checkpoint DIR``), not the job's.
    """

    def __init__(self, name="job"):
        self._graph = Graph(name)
        self._accumulators = {}

    # -- sources -----------------------------------------------------------

    def _source(self, op, where, kind, t):
        name = "%s at %s" % (op, where)
        return DStream(self, self._graph.add_node(name, ("source", kind), [], t), t)

    def socketTextStream(self, hostname, port, storageLevel=None):
        """Lines of UTF-8 text from a TCP server (``str`` records)."""
        where = _where()
        name = "socketTextStream at " + where
        try:
            port = int(port)
        except (TypeError, ValueError):
            raise DefineError("%s: the port %r is not a number" % (name, port)) from None
        if not 0 <= port <= 65535:
            raise DefineError("%s: the port %d is not between 0 and 65535" % (name, port))
        return self._source("socketTextStream", where, ("socket-text", str(hostname), port), STRING)

    def textFileStream(self, directory):
        """Lines of the files that appear in ``directory`` (``str`` records)."""
        return self._source("textFileStream", _where(), ("text-file", str(directory)), STRING)

    def queueStream(self, rdds, oneAtATime=True, default=None, value_type=None):
        """One batch per entry of ``rdds`` (a list of lists of records), encoded
        with the type of the first record (or ``value_type``)."""
        where = _where()
        name = "queueStream at " + where
        if not oneAtATime or default is not None:
            raise DefineError("%s: only oneAtATime=True with no default is supported" % name)
        batches = [list(b) for b in rdds]
        if value_type is not None:
            t = _declared(value_type, name, "value_type")
        else:
            first = next((b[0] for b in batches if b), None)
            if first is None:
                raise DefineError("%s: cannot infer the record type of an empty queue; declare it: "
                                  "ssc.queueStream(batches, value_type=str)" % name)
            try:
                t = of_value(first)
            except InferenceError as e:
                raise DefineError("%s: cannot infer the record type (%s); declare it: "
                                  "ssc.queueStream(batches, value_type=...)" % (name, e)) from None
        encoded = []
        for i, b in enumerate(batches):
            try:
                encoded.append(codec.encode_rows(t, b))
            except codec.EncodeFailure as f:
                raise DefineError("%s: batch %d, record %d: %s (the records are %s)"
                                  % (name, i, f.index, f.detail, t.codec)) from None
        return self._source("queueStream", where, ("queue-batches", encoded), t)

    def queueStreamFromLinesFile(self, path, linesPerBatch):
        """Lines of a text file read by the host, ``linesPerBatch`` per batch."""
        where = _where()
        if isinstance(linesPerBatch, bool) or not isinstance(linesPerBatch, int) or linesPerBatch < 1:
            raise DefineError("queueStreamFromLinesFile at %s: linesPerBatch must be at least 1, got %r"
                              % (where, linesPerBatch))
        return self._source("queueStreamFromLinesFile", where,
                            ("lines-file", str(path), linesPerBatch), STRING)

    def rateStream(self, recordsPerSecond):
        """``(timestamp_ms, counter)`` records at a fixed rate."""
        return self._source("rateStream", _where(), ("rate", int(recordsPerSecond)),
                            pair(I64_T, I64_T))

    def union(self, *dstreams):
        """The records of all the streams (``ssc.union(a, b, c)`` or a list)."""
        where = _where()
        name = "union at " + where
        if len(dstreams) == 1 and isinstance(dstreams[0], (list, tuple)):
            dstreams = tuple(dstreams[0])
        if not dstreams:
            raise DefineError("%s: needs at least one stream" % name)
        for s in dstreams:
            if not isinstance(s, DStream) or s._ctx is not self:
                raise DefineError("%s: %r is not a stream of this StreamingContext" % (name, s))
        t = dstreams[0]._t
        for s in dstreams[1:]:
            if s._t.codec != t.codec:
                raise DefineError("%s: the streams have different record types: %s and %s"
                                  % (name, t.codec, s._t.codec))
        return DStream(self, self._graph.add_node(name, ("union",), [s._id for s in dstreams], t), t)

    # -- settings and shared values -------------------------------------------

    def remember(self, duration):
        """Keep every stream's batches at least this long (seconds or ``"90s"``)."""
        ms = _millis(duration, "the duration", "remember at " + _where())
        g = self._graph
        g.remember_ms = ms if g.remember_ms is None else max(g.remember_ms, ms)

    def checkpoint(self, directory=None):
        """Accepted for PySpark compatibility and ignored: the checkpoint
        location is the host's (``sluice run --checkpoint DIR``)."""

    def start(self):
        """Accepted for PySpark compatibility: the host starts the job once
        ``define`` returns."""

    def awaitTermination(self, timeout=None):
        """Accepted for PySpark compatibility (returns at once)."""

    def accumulator(self, name, value=0):
        """A named integer (``0``) or float (``0.0``) sum kept by the host."""
        where = _where()
        if not isinstance(name, str):
            raise DefineError("accumulator at %s: the first argument is the accumulator's name "
                              "(Sluice accumulators are named: ssc.accumulator(\"records\", 0))" % where)
        if isinstance(value, bool) or not isinstance(value, (int, float)) or value != 0:
            raise DefineError("accumulator at %s: an accumulator starts at 0 or 0.0, got %r"
                              % (where, value))
        is_float = isinstance(value, float)
        old = self._accumulators.get(name)
        if old is not None and old.is_float != is_float:
            raise DefineError("accumulator at %s: %r is already a%s accumulator"
                              % (where, name, " float" if old.is_float else "n integer"))
        acc = self._accumulators[name] = Accumulator(name, is_float)
        return acc

    def _add_broadcast(self, name, value, where):
        if any(n == name for n, _ in self._graph.broadcasts):
            raise DefineError("broadcast at %s: the name %r is already a broadcast's" % (where, name))
        self._graph.broadcasts.append((name, value))

    def broadcast(self, name, value, value_type=None):
        """A named read-only value for every function: ``b.value``."""
        where = _where()
        if not isinstance(name, str):
            raise DefineError("broadcast at %s: the first argument is the broadcast's name "
                              "(ssc.broadcast(\"blacklist\", value))" % where)
        label = "broadcast %r at %s" % (name, where)
        try:
            t = _declared(value_type, label, "value_type") if value_type is not None else of_value(value)
        except InferenceError as e:
            raise DefineError("%s: cannot infer the type of the value (%s); declare it: "
                              "value_type=..." % (label, e)) from None
        try:
            data = codec.encode_one(t, value)
        except Exception:
            raise DefineError("%s: the value does not fit %s: %s"
                              % (label, t.codec, codec.explain(t, value))) from None
        self._add_broadcast(name, ("bytes", data), where)
        return Broadcast(name, t, value, False)

    def broadcastFile(self, name, path):
        """A broadcast holding the text of a file (local path or object store
        URL) read by the host at start: ``b.value`` is a ``str``."""
        where = _where()
        self._add_broadcast(name, ("file", str(path)), where)
        return Broadcast(name, STRING, None, True)


class DStream:
    """A stream of records of one type; PySpark's DStream methods."""

    __slots__ = ("_ctx", "_id", "_t")

    def __init__(self, ctx, node_id, t):
        self._ctx = ctx
        self._id = node_id
        self._t = t

    def __repr__(self):
        return "DStream(%s: %s)" % (self._ctx._graph.nodes[self._id].name, self._t.codec)

    @property
    def codec(self):
        """The codec of the records (``"tuple<string,i64>"``)."""
        return self._t.codec

    # -- helpers -----------------------------------------------------------------

    @property
    def _graph(self):
        return self._ctx._graph

    def _child(self, name, kind, t, inputs=None):
        node = self._graph.add_node(name, kind, [self._id] if inputs is None else inputs, t)
        return DStream(self._ctx, node, t)

    def _output(self, name, kind):
        self._graph.add_node(name, kind, [self._id], None)

    def _narrow(self, op, where, f, out_t, wrapped=None):
        name = "%s at %s" % (op, where)
        entry = Narrow(name, "map" if op in ("map", "mapValues", "countByValue") else
                       "flatMap" if op in ("flatMap", "flatMapValues") else op,
                       wrapped or f, self._t, out_t)
        fid = self._graph.add_function(entry)
        kind = {"map": "map", "flatMap": "flat-map", "filter": "filter",
                "mapPartitions": "map-partitions"}[entry.op]
        return self._child(name, (kind, fid), out_t)

    def _pair_types(self, name):
        if not self._t.is_pair:
            raise DefineError("%s: needs a stream of (key, value) pairs, and its records are %s"
                              % (name, self._t.codec))
        return self._t.args

    def _other(self, other, name):
        if not isinstance(other, DStream) or other._ctx is not self._ctx:
            raise DefineError("%s: the other stream comes from another StreamingContext" % name)

    def _callable(self, f, name, what="the function"):
        if not callable(f):
            raise DefineError("%s: %s must be callable, got %r" % (name, what, f))

    # -- naming and checkpoints ------------------------------------------------------

    def name(self, uid):
        """The operator's name: its state is kept under it (Flink's ``uid``)."""
        nodes = self._graph.nodes
        node = nodes[self._id]
        for other in nodes:
            if other is not node and other.uid == uid:
                raise DefineError("%s: the name %r is already the name of %s; names are unique in a job"
                                  % (node.name, uid, other.name))
        if node.uid is not None and node.uid != uid:
            raise DefineError("%s: named %r, but it is already named %r" % (node.name, uid, node.uid))
        node.uid = str(uid)
        return self

    def checkpoint(self, interval):
        """Checkpoint the job at least this often (seconds or ``"10s"``)."""
        node = self._graph.nodes[self._id]
        node.checkpoint_ms = _millis(interval, "the checkpoint interval", node.name)
        return self

    # -- narrow ---------------------------------------------------------------------

    def map(self, f, output_type=None):
        where = _where()
        name = "map at " + where
        self._callable(f, name)
        sample = self._t.sample()
        t = _infer(name, "map", f, output_type, lambda: f(sample), sample)
        return self._narrow("map", where, f, t)

    def flatMap(self, f, output_type=None):
        where = _where()
        name = "flatMap at " + where
        self._callable(f, name)
        sample = self._t.sample()
        t = _infer(name, "flatMap", f, output_type, lambda: f(sample), sample, how="iterable",
                   example="str")
        return self._narrow("flatMap", where, f, t)

    def filter(self, f):
        where = _where()
        self._callable(f, "filter at " + where)
        return self._narrow("filter", where, f, self._t)

    def mapPartitions(self, f, output_type=None):
        """``f(iterator of records) -> iterable of records``, once per partition."""
        where = _where()
        name = "mapPartitions at " + where
        self._callable(f, name)
        sample = self._t.sample()
        t = _infer(name, "mapPartitions", f, output_type, lambda: f(iter([sample])), [sample],
                   how="iterable")
        return self._narrow("mapPartitions", where, f, t)

    def mapValues(self, f, output_type=None):
        where = _where()
        name = "mapValues at " + where
        self._callable(f, name)
        k, v = self._pair_types(name)
        sample = v.sample()
        w = _infer(name, "mapValues", f, output_type, lambda: f(sample), sample, example="int")
        return self._narrow("mapValues", where, f, pair(k, w), wrapped=lambda kv: (kv[0], f(kv[1])))

    def flatMapValues(self, f, output_type=None):
        where = _where()
        name = "flatMapValues at " + where
        self._callable(f, name)
        k, v = self._pair_types(name)
        sample = v.sample()
        w = _infer(name, "flatMapValues", f, output_type, lambda: f(sample), sample, how="iterable",
                   example="int")

        def wrapped(kv):
            key = kv[0]
            return [(key, x) for x in f(kv[1])]
        return self._narrow("flatMapValues", where, f, pair(k, w), wrapped=wrapped)

    def repartition(self, numPartitions):
        name = "repartition at " + _where()
        n = _partitions(numPartitions, name)
        return self._child(name, ("repartition", n), self._t)

    def union(self, other):
        name = "union at " + _where()
        self._other(other, name)
        if other._t.codec != self._t.codec:
            raise DefineError("%s: the streams have different record types: %s and %s"
                              % (name, self._t.codec, other._t.codec))
        return self._child(name, ("union",), self._t, [self._id, other._id])

    def transform(self, func, output_type=None):
        """``func(records)`` or ``func(batch_time_ms, records)`` over a whole
        batch (every partition in one call), returning the new records."""
        where = _where()
        name = "transform at " + where
        self._callable(func, name)
        with_time = takes_time(func)
        sample = [self._t.sample()]
        call = (lambda: func(0, sample)) if with_time else (lambda: func(sample))
        t = _infer(name, "transform", func, output_type, call, sample, how="iterable")
        fid = self._graph.add_function(Transform(name, func, self._t, t, with_time))
        return self._child(name, ("transform", fid), t)

    # -- reductions ------------------------------------------------------------------

    def count(self):
        return self._child("count at " + _where(), ("count",), I64_T)

    def reduce(self, f):
        """All records of a batch reduced to one, with ``f(a, b)`` or a
        built-in (SUM, MIN, MAX numerically, COUNT -> int)."""
        name = "reduce at " + _where()
        reducer = _reducer(f, name, self._ctx, self._t, by_key=False)
        _check_builtin(reducer, self._t, name)
        return self._child(name, ("reduce", reducer), I64_T if reducer == ("count",) else self._t)

    def countByValue(self):
        where = _where()
        name = "countByValue at " + where
        pairs = self._narrow("countByValue", where, None, pair(self._t, UNIT),
                             wrapped=lambda r: (r, None))
        return pairs._child(name, ("reduce-by-key", ("count",), None), pair(self._t, I64_T))

    def reduceByKey(self, func, numPartitions=None):
        """Values of each key reduced with ``func(a, b)`` (associative and
        commutative: it also combines before the shuffle) or a built-in
        (SUM, MIN, MAX: numeric values; COUNT: any, -> int)."""
        name = "reduceByKey at " + _where()
        k, v = self._pair_types(name)
        parts = _partitions(numPartitions, name)
        reducer = _reducer(func, name, self._ctx, self._t)
        _check_builtin(reducer, v, name)
        t = pair(k, I64_T) if reducer == ("count",) else self._t
        return self._child(name, ("reduce-by-key", reducer, parts), t)

    def groupByKey(self, numPartitions=None):
        name = "groupByKey at " + _where()
        k, v = self._pair_types(name)
        return self._child(name, ("group-by-key", _partitions(numPartitions, name)),
                           pair(k, list_of(v)))

    # -- windows ---------------------------------------------------------------------

    def _window(self, name, length, slide):
        return (_millis(length, "the window's length", name),
                None if slide is None else _millis(slide, "the window's slide", name))

    def window(self, windowDuration, slideDuration=None):
        """The records of the batches in the last ``windowDuration`` (seconds,
        or a string like ``"500ms"``), every ``slideDuration``."""
        name = "window at " + _where()
        return self._child(name, ("window",) + self._window(name, windowDuration, slideDuration),
                           self._t)

    def countByWindow(self, windowDuration, slideDuration=None):
        name = "countByWindow at " + _where()
        w = self._window(name, windowDuration, slideDuration)
        counts = self._child(name, ("count",), I64_T)
        windowed = counts._child(name, ("window",) + w, I64_T)
        return windowed._child(name, ("reduce", ("sum",)), I64_T)

    def reduceByWindow(self, reduceFunc, invReduceFunc, windowDuration, slideDuration=None):
        """``reduce`` over a window. ``invReduceFunc`` is accepted for PySpark
        compatibility and not used (the window's partial results are reduced)."""
        name = "reduceByWindow at " + _where()
        w = self._window(name, windowDuration, slideDuration)
        reducer = _reducer(reduceFunc, name, self._ctx, self._t, by_key=False)
        _check_builtin(reducer, self._t, name)
        if reducer == ("count",):
            raise DefineError("%s: use countByWindow to count" % name)
        reduced = self._child(name, ("reduce", reducer), self._t)
        windowed = reduced._child(name, ("window",) + w, self._t)
        return windowed._child(name, ("reduce", reducer), self._t)

    def countByValueAndWindow(self, windowDuration, slideDuration=None, numPartitions=None):
        where = _where()
        name = "countByValueAndWindow at " + where
        w = self._window(name, windowDuration, slideDuration)
        parts = _partitions(numPartitions, name)
        pairs = self._narrow("countByValue", where, None, pair(self._t, UNIT),
                             wrapped=lambda r: (r, None))
        node = self._graph.nodes[pairs._id]
        node.name = self._graph.functions[-1].name = name
        return pairs._child(name, ("reduce-by-key-and-window", ("count",), None, ("nonzero",), w, parts),
                            pair(self._t, I64_T))

    def reduceByKeyAndWindow(self, func, invFunc, windowDuration, slideDuration=None,
                             numPartitions=None, filterFunc=None):
        """Values of each key over a window, reduced with ``func``; with
        ``invFunc`` (``(a, b) -> a`` with ``b`` removed) the window is kept
        incrementally, and ``filterFunc((k, v)) -> bool`` (or ``NONZERO``)
        says which keys its values keep. ``func`` may be a built-in (SUM,
        COUNT are always incremental; MIN, MAX never), then ``invFunc`` is None."""
        name = "reduceByKeyAndWindow at " + _where()
        k, v = self._pair_types(name)
        w = self._window(name, windowDuration, slideDuration)
        parts = _partitions(numPartitions, name)
        reducer = _reducer(func, name, self._ctx, self._t)
        _check_builtin(reducer, v, name)
        inverse = None
        if invFunc is not None:
            if reducer[0] != "function":
                raise DefineError("%s: a built-in reducer needs no inverse function (pass None)" % name)
            self._callable(invFunc, name, "the inverse function")
            inverse = self._graph.add_function(KeyReducer(name, invFunc, self._t))
        key_filter = None
        if filterFunc is NONZERO:
            key_filter = ("nonzero",)
        elif filterFunc is not None:
            self._callable(filterFunc, name, "filterFunc")
            key_filter = ("function", self._graph.add_function(
                Narrow(name, "filter", filterFunc, self._t, self._t)))
        t = pair(k, I64_T) if reducer == ("count",) else self._t
        return self._child(name, ("reduce-by-key-and-window", reducer, inverse, key_filter, w, parts), t)

    # -- state -----------------------------------------------------------------------

    def updateStateByKey(self, updateFunc, numPartitions=None, initialRDD=None, state_type=None):
        """``updateFunc(new_values, last_state) -> state`` (None removes the
        key), for every key with state or new values, every batch."""
        return self._update_state(updateFunc, numPartitions, initialRDD, state_type, runs=False)

    def updateStateByKeyRuns(self, updateFunc, numPartitions=None, initialRDD=None, state_type=None):
        """``updateStateByKey`` with the key's new values as runs, as the state
        calls send them: ``updateFunc(runs, last_state) -> state``, ``runs`` a
        list of ``(count, value)`` (count at least 1), each ``count`` equal
        values in a row. A word's million ``1``s are one run, not a list of a
        million."""
        return self._update_state(updateFunc, numPartitions, initialRDD, state_type, runs=True)

    def _update_state(self, updateFunc, numPartitions, initialRDD, state_type, runs):
        name = "updateStateByKey at " + _where()
        self._callable(updateFunc, name)
        k, v = self._pair_types(name)
        if initialRDD is not None:
            raise DefineError("%s: initialRDD is not supported" % name)
        parts = _partitions(numPartitions, name)
        sample = [(1, v.sample())] if runs else [v.sample()]
        method = "updateStateByKeyRuns" if runs else "updateStateByKey"
        s = _infer(name, method, updateFunc, state_type,
                   lambda: updateFunc(sample, None), (sample, None), how="state",
                   keyword="state_type", example="int")
        fid = self._graph.add_function(UpdateState(name, updateFunc, self._t, s, runs))
        return self._child(name, ("update-state-by-key", fid, s.codec, parts), pair(k, s))

    def mapWithState(self, spec, timeout=None, state_type=None, output_type=None):
        """Scala's ``mapWithState``: ``spec`` is a function ``(key, value, state)
        -> mapped record`` (or a ``StateSpec``); ``state`` has ``exists()``,
        ``get()``, ``update(s)``, ``remove()``, ``isTimingOut()``. A key with no
        data for ``timeout`` is called once with ``value=None`` and removed."""
        name = "mapWithState at " + _where()
        if isinstance(spec, StateSpec):
            f = spec.func
            timeout = spec._timeout if timeout is None else timeout
        else:
            f = spec
        self._callable(f, name)
        k, v = self._pair_types(name)
        timeout_ms = None if timeout is None else _millis(timeout, "the state's timeout", name)
        seen = []

        def sample_call():
            st = State(None, False, False)
            out = f(k.sample(), v.sample(), st)
            seen.append(st)
            return out
        m = _infer(name, "mapWithState", f, output_type, sample_call, (k.sample(), v.sample(), "State"))
        if state_type is not None:
            s = _declared(state_type, name, "state_type")
        else:
            if not seen:
                try:
                    sample_call()
                except Exception:
                    pass
            st = seen[0] if seen else None
            if st is None or not st._exists or st._value is None:
                raise DefineError("cannot infer the state type of `%s` (the sample call did not "
                                  "update the state); declare it: .mapWithState(f, state_type=int)"
                                  % name)
            try:
                s = of_value(st._value)
            except InferenceError as e:
                raise DefineError("cannot infer the state type of `%s` (%s); declare it: "
                                  ".mapWithState(f, state_type=...)" % (name, e)) from None
        fid = self._graph.add_function(MapWithState(name, f, self._t, s, m))
        stream = self._child(name, ("map-with-state", fid, s.codec, timeout_ms, None), m)
        return MapWithStateDStream(self._ctx, stream._id, m, pair(k, s))

    # -- joins -----------------------------------------------------------------------

    def _join(self, op, other, kind, numPartitions, wrap_left, wrap_right):
        name = "%s at %s" % (op, _where())
        self._other(other, name)
        k, v = self._pair_types(name)
        k2, w = other._pair_types(name)
        if k.codec != k2.codec:
            raise DefineError("%s: the keys of the two streams have different types: %s and %s"
                              % (name, k.codec, k2.codec))
        parts = _partitions(numPartitions, name)
        left = option(v) if wrap_left else v
        right = option(w) if wrap_right else w
        return self._child(name, ("join", kind, parts), pair(k, pair(left, right)),
                           [self._id, other._id])

    def join(self, other, numPartitions=None):
        return self._join("join", other, "inner", numPartitions, False, False)

    def leftOuterJoin(self, other, numPartitions=None):
        return self._join("leftOuterJoin", other, "left-outer", numPartitions, False, True)

    def rightOuterJoin(self, other, numPartitions=None):
        return self._join("rightOuterJoin", other, "right-outer", numPartitions, True, False)

    def fullOuterJoin(self, other, numPartitions=None):
        return self._join("fullOuterJoin", other, "full-outer", numPartitions, True, True)

    def cogroup(self, other, numPartitions=None):
        name = "cogroup at " + _where()
        self._other(other, name)
        k, v = self._pair_types(name)
        k2, w = other._pair_types(name)
        if k.codec != k2.codec:
            raise DefineError("%s: the keys of the two streams have different types: %s and %s"
                              % (name, k.codec, k2.codec))
        return self._child(name, ("cogroup", _partitions(numPartitions, name)),
                           pair(k, pair(list_of(v), list_of(w))), [self._id, other._id])

    def _dataset(self, op, location, kind, value_type):
        name = "%s at %s" % (op, _where())
        k, v = self._pair_types(name)
        w = _declared(value_type, name, "value_type")
        right = option(w) if kind == "left-outer" else w
        return self._child(name, ("join-dataset", str(location), kind), pair(k, pair(v, right)))

    def joinDataset(self, location, value_type=str):
        """Join with a reference dataset: a text file of ``key<TAB>value``
        lines (local path or object store URL) re-read when it changes."""
        return self._dataset("joinDataset", location, "inner", value_type)

    def leftOuterJoinDataset(self, location, value_type=str):
        return self._dataset("leftOuterJoinDataset", location, "left-outer", value_type)

    # -- outputs ---------------------------------------------------------------------

    def pprint(self, num=10):
        name = "pprint at " + _where()
        if isinstance(num, bool) or not isinstance(num, int) or not 0 <= num < 2 ** 32:
            raise DefineError("%s: num must be a non-negative integer, got %r" % (name, num))
        self._output(name, ("print", num))

    def saveAsTextFiles(self, prefix, suffix=None):
        self._output("saveAsTextFiles at " + _where(),
                     ("save-as-text-files", str(prefix), None if suffix is None else str(suffix)))

    def saveToSqlite(self, path, table):
        """Exactly-once output to a SQLite table (see the contract)."""
        self._output("saveToSqlite at " + _where(), ("save-to-sqlite", str(path), str(table)))

    def foreachRDD(self, func):
        """The guide's output pattern ``foreachRDD(lambda rdd:
        rdd.foreachPartition(f))`` (``f`` gets an iterator of a partition's
        records) or ``rdd.foreach(g)`` (``g`` gets each record). ``func`` is
        called once, in ``define``, on a stand-in RDD that records those
        calls (Sluice has no driver to call it every batch); anything else
        done with the RDD fails ``define``. ``func(time, rdd)`` works too."""
        where = _where()
        name = "foreachRDD at " + where
        self._callable(func, name)
        rdd = _OutputRDD(name)
        try:
            func(0, rdd) if takes_time(func) else func(rdd)
        except DefineError:
            raise
        except Exception as e:
            raise DefineError("%s: calling the function on a stand-in RDD raised %s: %s (only "
                              "rdd.foreachPartition(f) and rdd.foreach(f) are supported)"
                              % (name, type(e).__name__, e)) from None
        if not rdd.calls:
            raise DefineError("%s: the function called neither rdd.foreachPartition(f) nor "
                              "rdd.foreach(f), so it would output nothing" % name)
        for kind, f in rdd.calls:
            if kind == "partition":
                wrapped = (lambda f: lambda t, p, records: f(iter(records)))(f)
            else:
                wrapped = (lambda f: lambda t, p, records: [f(r) for r in records] and None)(f)
            fid = self._graph.add_function(Output(name, wrapped, self._t))
            self._output(name, ("foreach-partition", fid))

    def foreachPartition(self, f):
        """``f(batch_time_ms, partition, records)`` once per partition per batch
        (Spark's ``foreachRDD`` + ``foreachPartition``); raise to fail the batch."""
        name = "foreachPartition at " + _where()
        self._callable(f, name)
        fid = self._graph.add_function(Output(name, f, self._t))
        self._output(name, ("foreach-partition", fid))


class _OutputRDD:
    """What ``foreachRDD``'s function gets in ``define``: it records
    ``foreachPartition(f)`` and ``foreach(f)``."""

    def __init__(self, name):
        self._name = name
        self.calls = []

    def foreachPartition(self, f):
        self.calls.append(("partition", f))

    def foreach(self, f):
        self.calls.append(("record", f))

    def __getattr__(self, attr):
        raise DefineError("%s: rdd.%s is not available: in Sluice, foreachRDD supports "
                          "rdd.foreachPartition(f) and rdd.foreach(f) (or use "
                          "foreachPartition(f(batch_time_ms, partition, records)))" % (self._name, attr))


class MapWithStateDStream(DStream):
    """The records ``mapWithState`` maps to, and ``stateSnapshots()``."""

    __slots__ = ("_state_pair",)

    def __init__(self, ctx, node_id, t, state_pair):
        super().__init__(ctx, node_id, t)
        self._state_pair = state_pair

    def stateSnapshots(self):
        """Every key's state after each batch: ``(key, state)`` records."""
        name = "stateSnapshots at " + _where()
        return self._child(name, ("state-snapshots",), self._state_pair)


class StateSpec:
    """Scala's ``StateSpec.function(f).timeout(d)``."""

    def __init__(self, func):
        self.func = func
        self._timeout = None

    @classmethod
    def function(cls, func):
        return cls(func)

    def timeout(self, duration):
        self._timeout = duration
        return self


def define(job, pairs, default_name="job"):
    """Runs ``job.define(ssc, args)``; returns the graph and fills the table."""
    name = getattr(job, "APP_NAME", None) or default_name
    INSTANCE.table = []
    ssc = StreamingContext(name)
    STATE.defining = True
    try:
        job.define(ssc, Args(pairs))
    except DefineError as e:
        raise TaskError(str(e)) from None
    except (ArgumentError, JobError) as e:
        raise TaskError("%s: %s" % (name, e)) from None
    except BaseException as e:
        raise TaskError("%s: define failed: %s\n%s" % (name, e, describe_exception(e))) from None
    finally:
        STATE.defining = False
    INSTANCE.table = ssc._graph.functions
    INSTANCE.job = name
    return ssc._graph
