"""The plugin's exports in pure Python (the glue module calls these).

``define`` builds the graph and fills this instance's function table; the
other calls look functions up by id and work on partitions given as
``(data, ends)``. Every failure, in user code or in the SDK, becomes a
:class:`TaskError` whose message names the operator; the glue turns it into
the ``err`` of the call (never a trap).
"""

import copy
import functools
import inspect
from collections import Counter
from itertools import chain as _chain
from operator import itemgetter
import os
import struct
import sys
import traceback

from . import codec
from .codec import DecodeError, EncodeFailure, RowsBuilder, decode_rows, encode_parts
from .types import SCALARS, Type, list_of, option, pair, python_spelling

__all__ = ["TaskError", "run_chain", "reduce_groups", "reduce_all", "foreach_partition",
           "update_state", "map_with_state", "transform"]

CHUNK = 1024
_flatten = _chain.from_iterable
_PKG_DIR = os.path.dirname(os.path.abspath(__file__))
_u32_unpack = struct.Struct("<I").unpack_from


class TaskError(Exception):
    """A call's error message, ready for the host."""


class DefineError(Exception):
    """A mistake in the job's definition; the message names the operator."""


# ---------------------------------------------------------------------------
# Function table entries


class Entry:
    """A registered function: ``name`` (node name), ``what`` (its role)."""

    what = "a function"
    barrier = False

    def __init__(self, name):
        self.name = name


class Narrow(Entry):
    """map, flatMap, filter, mapPartitions (and mapValues, flatMapValues)."""

    what = "a narrow operator's function"

    def __init__(self, name, op, f, in_t, out_t):
        super().__init__(name)
        self.op = op
        self.f = f
        self.in_t = in_t
        self.out_t = out_t
        self.barrier = op == "mapPartitions"
        # ``lambda w: (w, 1)``: the constant (an int), for the fast paths.
        self.constant = constant_pair(f) if op == "map" and f is not None else None

    def step(self):
        f = self.f
        if self.op == "map":
            return lambda chunk: list(map(f, chunk))
        if self.op == "flatMap":
            return lambda chunk: list(_flatten(map(f, chunk)))
        if self.op == "filter":
            return lambda chunk: list(filter(f, chunk))
        return _MapPartitions(f)


class _MapPartitions:
    __slots__ = ("f", "buffer")

    def __init__(self, f):
        self.f = f
        self.buffer = []

    def collect(self, chunk):
        self.buffer.extend(chunk)

    def finish(self):
        records, self.buffer = self.buffer, []
        out = self.f(iter(records))
        return [] if out is None else list(out)


_SAFE = ("string", "bytes", "bool", "unit", "i8", "i16", "i32", "i64", "u8", "u16", "u32", "u64")


def keyed_by_value(t):
    """Whether Python equality of decoded keys of type ``t`` is equality of
    their encodings (so a dict can key by the value itself)."""
    if t.kind in _SAFE:
        return True
    return t.kind == "tuple" and all(keyed_by_value(a) for a in t.args)


_reference_adds = (lambda a, b: a + b,)


def _reference_add(a, b):
    return a + b


_CO_NESTED = 0x10


def is_addition(f):
    """Whether ``f`` is ``operator.add`` or a function whose code is exactly
    ``a + b`` of its two arguments (``lambda a, b: a + b``); the combine then
    adds inline instead of calling it (the same operation, without a call)."""
    import operator
    if f is operator.add:
        return True
    code = getattr(f, "__code__", None)
    if code is None or getattr(f, "__closure__", None) or getattr(f, "__defaults__", None) \
            or getattr(f, "__kwdefaults__", None):
        return False
    for ref in (_reference_adds[0].__code__, _reference_add.__code__):
        if (code.co_code == ref.co_code and code.co_argcount == 2 and code.co_nlocals == 2
                and code.co_kwonlyargcount == 0 and not code.co_freevars and not code.co_cellvars
                and (code.co_flags & ~_CO_NESTED) == (ref.co_flags & ~_CO_NESTED)
                and [c for c in code.co_consts if c is not None] == []
                and [c for c in ref.co_consts if c is not None] == []
                and code.co_names == ref.co_names == ()):
            return True
    return False


_pair_references = {}


def _pair_reference(c):
    ref = _pair_references.get(c)
    if ref is None:
        ref = _pair_references[c] = eval("lambda w: (w, %d)" % c).__code__
    return ref


def constant_pair(f):
    """The int ``c`` when ``f``'s code is exactly ``lambda w: (w, c)``, else
    None (the chain then counts keys instead of building pairs to add)."""
    code = getattr(f, "__code__", None)
    if (code is None or getattr(f, "__closure__", None) or getattr(f, "__defaults__", None)
            or getattr(f, "__kwdefaults__", None) or code.co_argcount != 1 or code.co_nlocals != 1
            or code.co_kwonlyargcount or code.co_freevars or code.co_cellvars or code.co_names):
        return None
    consts = [(type(x), x) for x in code.co_consts if x is not None]
    for c in [x for t, x in consts if t is int] + [1, 0]:
        ref = _pair_reference(c)
        if (code.co_code == ref.co_code
                and (code.co_flags & ~_CO_NESTED) == (ref.co_flags & ~_CO_NESTED)
                and consts == [(type(x), x) for x in ref.co_consts if x is not None]):
            return c
    return None


class _CountCombine:
    """``map(lambda w: (w, c))`` then a combine that adds: counts the keys
    (in C, first-seen order kept) and emits ``(w, n * c)``, the same pairs
    the two steps give."""

    __slots__ = ("counter", "c")

    def __init__(self, c):
        self.counter = Counter()
        self.c = c

    def collect(self, chunk):
        self.counter.update(chunk)

    def finish(self):
        counter, self.counter = self.counter, Counter()
        c = self.c
        if c == 1:
            return list(counter.items())
        return [(k, n * c) for k, n in counter.items()]

    def encode_into(self, out, fast):
        """When this is the chain's last step: encodes the counts straight
        from the counter's keys and values (no pairs); False if it cannot."""
        columns = getattr(fast, "columns", None)
        if columns is None:
            return False
        counter = self.counter
        values = list(counter.values())
        if self.c != 1:
            values = [n * self.c for n in values]
        done = columns(list(counter), values)
        if done is None:
            return False
        self.counter = Counter()
        out.extend_joined(*done)
        return True


class KeyReducer(Entry):
    """A reduceByKey-style reducer ``(v, v) -> v`` over ``tuple<k,v>``."""

    what = "a reduceByKey reducer"
    barrier = True

    def __init__(self, name, f, pair_t):
        super().__init__(name)
        self.f = f
        self.in_t = self.out_t = pair_t
        self.by_value = keyed_by_value(pair_t.args[0])
        self.adds = is_addition(f)
        self.key_encoder = codec.encoder(pair_t.args[0])

    def step(self):
        return _Combine(self)


_NO = object()
_first, _second = itemgetter(0), itemgetter(1)


class _Combine:
    """Map-side combine: one record per key leaves, in first-seen order."""

    __slots__ = ("entry", "d")

    def __init__(self, entry):
        self.entry = entry
        self.d = {}

    def collect(self, chunk):
        d = self.d
        f = self.entry.f
        if self.entry.by_value:
            get = d.get
            if self.entry.adds:
                if chunk and set(map(len, chunk)) == {2}:
                    values = set(map(_second, chunk))
                    if len(values) == 1:
                        c = values.pop()
                        if type(c) is int:
                            # Every value is the same int: count the keys in C;
                            # n additions of c are n * c.
                            for k, n in Counter(map(_first, chunk)).items():
                                a = get(k, _NO)
                                d[k] = n * c if a is _NO else a + n * c
                            return
                for k, v in chunk:
                    a = get(k, _NO)
                    d[k] = v if a is _NO else a + v
            else:
                for k, v in chunk:
                    a = get(k, _NO)
                    d[k] = v if a is _NO else f(a, v)
        else:
            enc = self.entry.key_encoder
            for k, v in chunk:
                kb = enc(k)
                slot = d.get(kb)
                if slot is None:
                    d[kb] = [k, v]
                else:
                    slot[1] = f(slot[1], v)

    def finish(self):
        d, self.d = self.d, {}
        if self.entry.by_value:
            return list(d.items())
        return [(k, v) for k, v in d.values()]


class Reducer(Entry):
    """reduce / reduceByWindow's ``(a, a) -> a``, through ``reduce-all``."""

    what = "a reduce reducer"

    def __init__(self, name, f, t):
        super().__init__(name)
        self.f = f
        self.t = t


class Output(Entry):
    what = "a foreachPartition function"

    def __init__(self, name, f, t):
        super().__init__(name)
        self.f = f
        self.t = t


def runs_of(t):
    """A key's new values of type ``t`` as the state calls send them: runs,
    ``list<tuple<u32,v>>``, each a count and a value ("State calls" in
    ``wit/sluice.wit``)."""
    return list_of(pair(Type("u32"), t))


def _immutable(t):
    """Whether a decoded value of type ``t`` cannot change in place: a
    scalar, a tuple of such, or an option of such (decoded as the value or
    ``None``, unless it wraps an option or unit in a ``Some``)."""
    if t.kind == "tuple":
        return all(_immutable(a) for a in t.args)
    if t.kind == "option":
        return t.args[0].kind not in ("option", "unit") and _immutable(t.args[0])
    return t.kind in SCALARS and t.kind != "json"


# Most values a list holds: ``PY_SSIZE_T_MAX`` over a pointer's size
# (2^29 - 1 in a wasm32 guest).
MAX_VALUES = sys.maxsize // struct.calcsize("P")


def _check_counts(runs):
    total = 0
    for i, (count, _) in enumerate(runs):
        if count == 0:
            raise DecodeError("run %d: a count of 0" % i)
        total += count
    return total


def _check_total(runs):
    total = _check_counts(runs)
    if total > MAX_VALUES:
        raise DecodeError("%d values are more than a list holds" % total)


def expander(t):
    """The function from a key's decoded runs of values of type ``t`` to its
    values in order, each run's value ``count`` times. A value that can change
    in place (a list, a dict, a dataclass, an option's ``Some``) is copied for
    each repetition, so that no two values are one object. A count of 0 is a
    ``DecodeError``: the contract's counts are at least 1; so are more values
    than a list holds (``MAX_VALUES``), before any is made."""
    if _immutable(t):
        def expand(runs):
            _check_total(runs)
            if len(runs) == 1:
                count, value = runs[0]
                return [value] * count
            values = []
            for count, value in runs:
                values.extend([value] * count)
            return values
    else:
        def expand(runs):
            _check_total(runs)
            values = []
            for count, value in runs:
                values.append(value)
                values.extend(copy.deepcopy(value) for _ in range(count - 1))
            return values
    return expand


def _checked_runs(runs):
    _check_counts(runs)
    return runs


class UpdateState(Entry):
    what = "an updateStateByKey function"

    def __init__(self, name, f, pair_t, state_t, runs=False):
        super().__init__(name)
        self.f = f
        self.values_t = runs_of(pair_t.args[1])
        # updateStateByKeyRuns: the function gets the runs as they are.
        self.expand = _checked_runs if runs else expander(pair_t.args[1])
        self.state_t = option(state_t)


class State:
    """The state of one key in a ``mapWithState`` function (Scala's ``State``)."""

    __slots__ = ("_value", "_exists", "_timing_out", "_misuse")

    def __init__(self, value=None, exists=False, timing_out=False):
        self._value = value
        self._exists = exists
        self._timing_out = timing_out
        self._misuse = None

    def exists(self):
        return self._exists

    def get(self):
        """The state; raises ``KeyError`` when there is none (as Scala's ``get``)."""
        if not self._exists:
            raise KeyError("the key has no state (check state.exists() or use getOption())")
        return self._value

    def getOption(self):
        return self._value if self._exists else None

    def update(self, value):
        if self._timing_out:
            self._misuse = "cannot update the state of a key that is timing out"
        else:
            self._value = value
            self._exists = True

    def remove(self):
        if self._timing_out:
            self._misuse = "cannot remove the state of a key that is timing out"
        else:
            self._value = None
            self._exists = False

    def isTimingOut(self):
        return self._timing_out

    def __repr__(self):
        return "State(%r)" % (self._value,) if self._exists else "State(<none>)"


class MapWithState(Entry):
    what = "a mapWithState function"

    def __init__(self, name, f, pair_t, state_t, mapped_t):
        super().__init__(name)
        self.f = f
        self.in_t = Type("tuple", (pair_t.args[0], option(state_t), option(runs_of(pair_t.args[1]))))
        self.expand = expander(pair_t.args[1])
        self.out_t = pair(option(state_t), list_of(mapped_t))
        self.state_t = state_t


class Transform(Entry):
    what = "a transform function"

    def __init__(self, name, f, in_t, out_t, with_time):
        super().__init__(name)
        self.f = f
        self.in_t = in_t
        self.out_t = out_t
        self.with_time = with_time


# ---------------------------------------------------------------------------
# The instance's table and the running node


class _Instance:
    table = []
    job = ""
    running = None   # the name of the node whose code runs, for errors


INSTANCE = _Instance()


def _entry(fid):
    table = INSTANCE.table
    if not 0 <= fid < len(table):
        raise TaskError("function %d does not exist: this instance's define registered %d functions"
                        % (fid, len(table)))
    return table[fid]


def _misuse(fid, entry, called_as):
    return TaskError("function %d (%s) is %s, not %s" % (fid, entry.name, entry.what, called_as))


def _user_frames(tb):
    frames = [f for f in traceback.extract_tb(tb)
              if not os.path.abspath(f.filename).startswith(_PKG_DIR + os.sep)]
    return frames[-4:]


def describe_exception(e):
    """``Type: message`` and the last lines of the traceback (user frames)."""
    text = "".join(traceback.format_exception_only(type(e), e)).strip()
    frames = _user_frames(e.__traceback__)
    if not frames:
        return text
    lines = ["Traceback (most recent call last, your code only):"]
    for f in frames:
        lines.append('  File "%s", line %d, in %s' % (os.path.basename(f.filename), f.lineno, f.name))
        if f.line:
            lines.append("    " + f.line.strip())
    lines.append(text)
    return "\n".join(lines)


def guarded(call, *args):
    """Runs an export; any exception becomes a ``TaskError`` naming the node."""
    INSTANCE.running = None
    try:
        return call(*args)
    except TaskError:
        raise
    except RecursionError as e:
        raise TaskError("%s: %s" % (INSTANCE.running or "the plugin", e)) from None
    except BaseException as e:
        where = INSTANCE.running or "the plugin, outside any operator"
        message = str(e) if not isinstance(e, KeyError) or not e.args else str(e.args[0])
        raise TaskError("%s: %s\n%s" % (where, message, describe_exception(e))) from None
    finally:
        INSTANCE.running = None


def _decode_all(t, data, ends, name, context=""):
    try:
        return decode_rows(t, data, ends)
    except DecodeError as e:
        raise TaskError("%s: %scannot decode input %s" % (name, context, _decode_detail(e, t))) from None


def _decode_detail(e, t):
    msg = str(e)
    if msg.startswith("record "):
        head, _, rest = msg.partition(": ")
        return "%s as %s: %s" % (head, t.codec, rest)
    return "records as %s: %s" % (t.codec, msg)


def encode_failure(name, t, failure):
    v = failure.value
    shown = repr(v)
    if len(shown) > 80:
        shown = shown[:77] + "..."
    return TaskError("%s returned a %s (%s) where the stream's records are %s: %s; if the type "
                     "was inferred wrongly, declare it on the operator, e.g. output_type=%s"
                     % (name, v.__class__.__name__, shown, t.codec, failure.detail,
                        python_spelling(t)))


# ---------------------------------------------------------------------------
# Exports


def run_chain(stages, data, ends):
    """``stages``: a list of ``("apply" | "combine", function id)``."""
    return guarded(_run_chain, stages, data, ends)


def _chain_entry(kind, fid):
    entry = _entry(fid)
    if kind == "apply":
        if not isinstance(entry, Narrow):
            raise _misuse(fid, entry, "a narrow operator's function (stage apply)")
    elif kind == "combine":
        if not isinstance(entry, KeyReducer):
            raise _misuse(fid, entry, "a reduceByKey reducer (stage combine)")
    else:
        raise TaskError("unknown stage kind %r" % (kind,))
    return entry


def _run_chain(stages, data, ends):
    if not stages:
        return data, ends
    entries = [_chain_entry(kind, fid) for kind, fid in stages]
    for prev, nxt in zip(entries, entries[1:]):
        if prev.out_t.codec != nxt.in_t.codec:
            raise TaskError("%s: the previous stage of the chain does not produce %s records; the "
                            "host chained functions of streams that do not follow each other"
                            % (nxt.name, nxt.in_t.codec))
    steps = [e.step() for e in entries]
    names = [e.name for e in entries]
    barriers = [e.barrier for e in entries]
    out_t = entries[-1].out_t
    tail = None
    for i in range(len(entries) - 2, -1, -1):
        e, nxt = entries[i], entries[i + 1]
        if (isinstance(e, Narrow) and e.constant is not None and isinstance(nxt, KeyReducer)
                and nxt.adds and nxt.by_value):
            # map(lambda w: (w, c)) + combine(a + b): count the keys.
            steps[i:i + 2] = [_CountCombine(e.constant)]
            names[i:i + 2] = [nxt.name]
            barriers[i:i + 2] = [True]
    last = entries[-1]
    if isinstance(last, Narrow) and last.constant is not None and len(steps) == len(entries):
        tail = codec.constant_tail_encoder(out_t, last.constant)
        if tail is not None:
            steps[-1] = _identity
    n = len(steps)
    out = RowsBuilder()
    blame = names[-1]
    for e in reversed(entries):
        if not (isinstance(e, Narrow) and e.op == "filter"):
            blame = e.name
            break
    inst = INSTANCE

    def push(chunk, i):
        while i < n:
            inst.running = names[i]
            if barriers[i]:
                steps[i].collect(chunk)
                return
            chunk = steps[i](chunk)
            if not chunk:
                return
            i += 1
        inst.running = blame
        try:
            if tail is not None:
                done = tail(chunk)
                if done is not None:
                    out.extend_joined(*done)
                    return
                chunk = list(map(last.f, chunk))
            out.encode(out_t, chunk, fast)
        except EncodeFailure as f:
            raise encode_failure(blame, out_t, f) from None

    fast = codec.fast_encoder(out_t)
    in_t = entries[0].in_t
    text = codec.ascii_text(in_t, data)
    total = len(ends)
    for lo in range(0, total, CHUNK):
        inst.running = names[0]
        try:
            chunk = decode_rows(in_t, data, ends, lo, lo + CHUNK, text)
        except DecodeError as e:
            raise TaskError("%s: cannot decode input %s" % (names[0], _decode_detail(e, in_t))) from None
        push(chunk, 0)
    for i in range(n):
        if barriers[i]:
            inst.running = names[i]
            if i == n - 1 and isinstance(steps[i], _CountCombine) and steps[i].encode_into(out, fast):
                continue
            result = steps[i].finish()
            for lo in range(0, len(result), CHUNK):
                push(result[lo:lo + CHUNK], i + 1)
    return out.finish()


def _identity(chunk):
    return chunk


def reduce_groups(fid, data, ends):
    return guarded(_reduce_groups, fid, data, ends)


def _reduce_groups(fid, data, ends):
    entry = _entry(fid)
    if not isinstance(entry, KeyReducer):
        raise _misuse(fid, entry, "a reduceByKey reducer (reduce-groups)")
    INSTANCE.running = name = entry.name
    pair_t = entry.in_t
    values_t = list_of(pair_t.args[1])
    dec = codec.decoder(values_t)
    enc = codec.encoder(pair_t.args[1])
    f = entry.f
    fold = functools.reduce
    # Integers added: sum() is the same left fold (exact), without the calls.
    adds_ints = entry.adds and pair_t.args[1].kind in codec.INTEGERS
    total = sum
    parts = []
    start = 0
    n = len(data)
    width = codec.fixed_width(pair_t.args[1])
    single = 8 + width if width else -1
    for i, end in enumerate(ends):
        s = start
        start = end
        try:
            if end > n or end - s < 4:
                raise DecodeError("tuple element 0: a length needs 4 bytes, %d left" % max(0, end - s))
            m = s + 4 + _u32_unpack(data, s)[0]
            if m > end:
                raise DecodeError("tuple element 0: the key's length runs past the end of the record")
            if end - m == single and _u32_unpack(data, m)[0] == 1 \
                    and _u32_unpack(data, m + 4)[0] == width:
                # One fixed-width value: it is the result, bytes as they are.
                parts.append(data[s:m] + data[m + 8:end])
                continue
            try:
                values = dec(data, m, end)
            except DecodeError as x:
                raise DecodeError("tuple element 1: %s" % x) from None
        except DecodeError as x:
            raise TaskError("%s: cannot decode input record %d as tuple<%s,%s>: %s"
                            % (name, i, pair_t.args[0].codec, values_t.codec, x)) from None
        if not values:
            continue
        acc = total(values) if adds_ints else fold(f, values)
        try:
            parts.append(data[s:m] + enc(acc))
        except Exception:
            raise encode_failure(name, pair_t.args[1], EncodeFailure(
                i, acc, codec.explain(pair_t.args[1], acc) or "does not encode")) from None
    rb = RowsBuilder()
    rb.extend(parts)
    return rb.finish()


def reduce_all(fid, data, ends):
    return guarded(_reduce_all, fid, data, ends)


def _reduce_all(fid, data, ends):
    entry = _entry(fid)
    if not isinstance(entry, Reducer):
        raise _misuse(fid, entry, "a reduce reducer (reduce-all)")
    INSTANCE.running = entry.name
    values = _decode_all(entry.t, data, ends, entry.name)
    if not values:
        return b"", []
    acc = functools.reduce(entry.f, values)
    return _encode_all(entry.name, entry.t, [acc])


def _encode_all(name, t, values):
    try:
        parts = encode_parts(t, values)
    except EncodeFailure as f:
        raise encode_failure(name, t, f) from None
    rb = RowsBuilder()
    rb.extend(parts)
    return rb.finish()


def foreach_partition(fid, batch_time_ms, partition, data, ends):
    return guarded(_foreach_partition, fid, batch_time_ms, partition, data, ends)


def _foreach_partition(fid, batch_time_ms, partition, data, ends):
    entry = _entry(fid)
    if not isinstance(entry, Output):
        raise _misuse(fid, entry, "a foreachPartition function")
    INSTANCE.running = entry.name
    records = _decode_all(entry.t, data, ends, entry.name)
    entry.f(batch_time_ms, partition, records)


def update_state(fid, batch_time_ms, data, ends):
    return guarded(_update_state, fid, batch_time_ms, data, ends)


def _update_state(fid, batch_time_ms, data, ends):
    entry = _entry(fid)
    if not isinstance(entry, UpdateState):
        raise _misuse(fid, entry, "an updateStateByKey function (update-state)")
    name = INSTANCE.running = entry.name
    dec_values = codec.decoder(entry.values_t)
    dec_state = codec.decoder(entry.state_t)
    enc_state = codec.encoder(entry.state_t)
    f = entry.f
    expand = entry.expand
    parts = []
    start = 0
    n = len(data)
    for i, end in enumerate(ends):
        s = start
        start = end
        try:
            if end > n or end - s < 4:
                raise DecodeError("tuple element 0: a length needs 4 bytes")
            p = s + 4 + _u32_unpack(data, s)[0]
            if p + 4 > end:
                raise DecodeError("tuple element 0: the key's length runs past the end of the record")
            q = p + 4 + _u32_unpack(data, p)[0]
            if q > end:
                raise DecodeError("tuple element 1: length runs past the end of the record")
            try:
                values = expand(dec_values(data, p + 4, q))
            except DecodeError as x:
                raise DecodeError("tuple element 1: %s" % x) from None
            try:
                state = dec_state(data, q, end)
            except DecodeError as x:
                raise DecodeError("tuple element 2: %s" % x) from None
        except DecodeError as x:
            raise TaskError("%s: batch %d ms: cannot decode input record %d as tuple<k,%s,%s>: %s"
                            % (name, batch_time_ms, i, entry.values_t.codec, entry.state_t.codec, x)) from None
        new = f(values, state)
        try:
            parts.append(enc_state(new))
        except Exception:
            raise encode_failure(name, entry.state_t, EncodeFailure(
                i, new, codec.explain(entry.state_t, new) or "does not encode")) from None
    rb = RowsBuilder()
    rb.extend(parts)
    return rb.finish()


def map_with_state(fid, batch_time_ms, data, ends):
    return guarded(_map_with_state, fid, batch_time_ms, data, ends)


def _map_with_state(fid, batch_time_ms, data, ends):
    entry = _entry(fid)
    if not isinstance(entry, MapWithState):
        raise _misuse(fid, entry, "a mapWithState function (map-with-state)")
    name = INSTANCE.running = entry.name
    records = _decode_all(entry.in_t, data, ends, name, "batch %d ms: " % batch_time_ms)
    f = entry.f
    expand = entry.expand
    some = codec.Some
    wrapped = entry.state_t.kind in ("option", "unit")
    out = []
    for i, (key, state, runs) in enumerate(records):
        try:
            values = None if runs is None else expand(runs)
        except DecodeError as x:
            raise TaskError("%s: batch %d ms: cannot decode input record %d as %s: tuple element 2: %s"
                            % (name, batch_time_ms, i, entry.in_t.codec, x)) from None
        exists = state is not None
        if wrapped and exists:
            state = state.value
        st = State(state, exists, values is None)
        if values is None:
            mapped = [f(key, None, st)]
        else:
            mapped = [f(key, v, st) for v in values]
        if st._misuse:
            raise TaskError("%s: batch %d ms, input record %d: %s" % (name, batch_time_ms, i, st._misuse))
        new = st._value if st._exists else None
        if wrapped and st._exists:
            new = some(new)
        out.append((new, mapped))
    return _encode_all(name, entry.out_t, out)


def transform(fid, batch_time_ms, data, ends):
    return guarded(_transform, fid, batch_time_ms, data, ends)


def _transform(fid, batch_time_ms, data, ends):
    entry = _entry(fid)
    if not isinstance(entry, Transform):
        raise _misuse(fid, entry, "a transform function (transform)")
    INSTANCE.running = entry.name
    records = _decode_all(entry.in_t, data, ends, entry.name)
    result = entry.f(batch_time_ms, records) if entry.with_time else entry.f(records)
    result = [] if result is None else list(result)
    return _encode_all(entry.name, entry.out_t, result)


def takes_time(f):
    """Whether a transform function takes ``(time, records)``."""
    try:
        params = [p for p in inspect.signature(f).parameters.values()
                  if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD) and p.default is p.empty]
    except (TypeError, ValueError):
        return False
    return len(params) >= 2
