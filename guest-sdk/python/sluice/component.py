"""The glue componentize-py builds a plugin from: exports ``job`` for the
user's module ``app`` and installs the host's accumulators and broadcasts.

Only this module imports the generated bindings (``wit_world``); everything
else in the SDK is plain Python and runs natively in the unit tests.
"""

import sys

import app  # the user's job module (the plugin folder's app.py)
from componentize_py_types import Err
from wit_world import exports
from wit_world.imports import host as wit_host
from wit_world.imports import types as t

from . import context, runtime, shared

if not callable(getattr(app, "define", None)):
    raise ImportError("app.py has no function `define(ssc, args)`: a Sluice job defines its "
                      "streams in it")

try:
    from _sluice_build import NAME as _DEFAULT_NAME  # written by the build tool
except ImportError:  # pragma: no cover
    _DEFAULT_NAME = "job"


class _Host:
    @staticmethod
    def add(name, value):
        if isinstance(value, float):
            wit_host.add_to_accumulator(name, wit_host.AccumulatorValue_Float(value))
        else:
            wit_host.add_to_accumulator(name, wit_host.AccumulatorValue_Int(value))

    @staticmethod
    def broadcast_value(name):
        return wit_host.broadcast_value(name)


shared.install_host(_Host())

# Guest output goes to the host's log: write it line by line, not at exit.
for _stream in (sys.stdout, sys.stderr):
    try:
        _stream.reconfigure(line_buffering=True)
    except Exception:  # pragma: no cover
        pass

_JOIN = {"inner": t.JoinKind.INNER, "left-outer": t.JoinKind.LEFT_OUTER,
         "right-outer": t.JoinKind.RIGHT_OUTER, "full-outer": t.JoinKind.FULL_OUTER}


def _reducer(r):
    if r[0] == "function":
        return t.Reducer_Function(r[1])
    return {"sum": t.Reducer_Sum, "min": t.Reducer_Min, "max": t.Reducer_Max,
            "count": t.Reducer_Count}[r[0]]()


def _source(s):
    k = s[0]
    if k == "socket-text":
        return t.Source_SocketText(t.SocketTextSource(s[1], s[2]))
    if k == "text-file":
        return t.Source_TextFile(t.TextFileSource(s[1]))
    if k == "queue-batches":
        return t.Source_Queue(t.QueueSource_Batches([t.Rows(d, e) for d, e in s[1]]))
    if k == "lines-file":
        return t.Source_Queue(t.QueueSource_LinesFile(t.LinesFile(s[1], s[2])))
    if k == "rate":
        return t.Source_Rate(t.RateSource(s[1]))
    raise ValueError("unknown source %r" % (k,))


def _kind(kind):
    k = kind[0]
    if k == "source":
        return t.NodeKind_Source(_source(kind[1]))
    if k == "map":
        return t.NodeKind_Map(kind[1])
    if k == "flat-map":
        return t.NodeKind_FlatMap(kind[1])
    if k == "filter":
        return t.NodeKind_Filter(kind[1])
    if k == "map-partitions":
        return t.NodeKind_MapPartitions(kind[1])
    if k == "repartition":
        return t.NodeKind_Repartition(kind[1])
    if k == "union":
        return t.NodeKind_Union()
    if k == "count":
        return t.NodeKind_Count()
    if k == "reduce":
        return t.NodeKind_Reduce(_reducer(kind[1]))
    if k == "reduce-by-key":
        return t.NodeKind_ReduceByKey(t.ReduceByKey(_reducer(kind[1]), kind[2]))
    if k == "group-by-key":
        return t.NodeKind_GroupByKey(kind[1])
    if k == "window":
        return t.NodeKind_Window(t.Window(kind[1], kind[2]))
    if k == "reduce-by-key-and-window":
        _, reducer, inverse, key_filter, (length, slide), parts = kind
        if key_filter is None:
            kf = None
        elif key_filter[0] == "nonzero":
            kf = t.KeyFilter_Nonzero()
        else:
            kf = t.KeyFilter_Function(key_filter[1])
        return t.NodeKind_ReduceByKeyAndWindow(t.ReduceByKeyAndWindow(
            _reducer(reducer), inverse, kf, t.Window(length, slide), parts))
    if k == "update-state-by-key":
        return t.NodeKind_UpdateStateByKey(t.UpdateStateByKey(kind[1], kind[2], kind[3]))
    if k == "map-with-state":
        return t.NodeKind_MapWithState(t.MapWithState(kind[1], kind[2], kind[3], kind[4]))
    if k == "state-snapshots":
        return t.NodeKind_StateSnapshots()
    if k == "join":
        return t.NodeKind_Join(t.Join(_JOIN[kind[1]], kind[2]))
    if k == "cogroup":
        return t.NodeKind_Cogroup(kind[1])
    if k == "transform":
        return t.NodeKind_Transform(kind[1])
    if k == "join-dataset":
        return t.NodeKind_JoinDataset(t.JoinDataset(kind[1], _JOIN[kind[2]]))
    if k == "print":
        return t.NodeKind_Print(kind[1])
    if k == "save-as-text-files":
        return t.NodeKind_SaveAsTextFiles(t.SaveAsTextFiles(kind[1], kind[2]))
    if k == "foreach-partition":
        return t.NodeKind_ForeachPartition(kind[1])
    if k == "save-to-sqlite":
        return t.NodeKind_SaveToSqlite(t.SaveToSqlite(kind[1], kind[2]))
    raise ValueError("unknown node kind %r" % (k,))


def _graph(g):
    nodes = [t.Node(n.name, n.uid, _kind(n.kind), n.inputs, n.codec, n.checkpoint_ms) for n in g.nodes]
    broadcasts = [t.Broadcast(name, t.BroadcastValue_Bytes(v[1]) if v[0] == "bytes"
                              else t.BroadcastValue_File(v[1])) for name, v in g.broadcasts]
    return t.JobGraph(g.name, nodes, broadcasts, g.remember_ms)


def _stages(stages):
    return [("combine" if isinstance(s, t.Stage_Combine) else "apply", s.value) for s in stages]


def _err(e):
    if isinstance(e, runtime.TaskError):
        return Err(str(e))
    return Err("the Python SDK failed: %s\n%s" % (e, runtime.describe_exception(e)))


class Job(exports.Job):
    def define(self, args):
        try:
            return _graph(context.define(app, args, _DEFAULT_NAME))
        except BaseException as e:
            raise _err(e) from None

    def run_chain(self, stages, input):
        try:
            data, ends = runtime.run_chain(_stages(stages), input.data, input.ends)
            return t.Rows(data, ends)
        except BaseException as e:
            raise _err(e) from None

    def reduce_groups(self, reducer, groups):
        try:
            return t.Rows(*runtime.reduce_groups(reducer, groups.data, groups.ends))
        except BaseException as e:
            raise _err(e) from None

    def reduce_all(self, reducer, input):
        try:
            return t.Rows(*runtime.reduce_all(reducer, input.data, input.ends))
        except BaseException as e:
            raise _err(e) from None

    def foreach_partition(self, function, batch_time_ms, partition, input):
        try:
            runtime.foreach_partition(function, batch_time_ms, partition, input.data, input.ends)
        except BaseException as e:
            raise _err(e) from None

    def update_state(self, function, batch_time_ms, input):
        try:
            return t.Rows(*runtime.update_state(function, batch_time_ms, input.data, input.ends))
        except BaseException as e:
            raise _err(e) from None

    def map_with_state(self, function, batch_time_ms, input):
        try:
            return t.Rows(*runtime.map_with_state(function, batch_time_ms, input.data, input.ends))
        except BaseException as e:
            raise _err(e) from None

    def transform(self, function, batch_time_ms, input):
        try:
            return t.Rows(*runtime.transform(function, batch_time_ms, input.data, input.ends))
        except BaseException as e:
            raise _err(e) from None
