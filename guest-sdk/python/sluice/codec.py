"""The record codecs of ``wit/CODECS.md``, compiled once per type.

``decoder(t)`` is a function ``(buf, start, end) -> value`` that reads one
record (or one element) from ``buf[start:end]`` without copying more than
the value needs; ``encoder(t)`` is a function ``value -> bytes``. Both are
built once per type (closures over the element codecs), so no record is
interpreted against its descriptor at run time. ``decode_rows`` and
``encode_rows`` convert whole partitions (``data`` plus ``ends``).
"""

import dataclasses
import json
import struct
from itertools import accumulate
from operator import itemgetter

from .types import FLOATS, INTEGERS

__all__ = ["Some", "DecodeError", "EncodeError", "decoder", "encoder", "decode_rows",
           "encode_rows", "encode_one", "explain"]

U32 = struct.Struct("<I")
_u32_unpack = U32.unpack_from
_u32_pack = U32.pack

_FIXED = {"i8": "<b", "i16": "<h", "i32": "<i", "i64": "<q",
          "u8": "<B", "u16": "<H", "u32": "<I", "u64": "<Q",
          "f32": "<f", "f64": "<d"}


class Some:
    """The present case of an option whose value is itself an option or
    ``None`` (``option<option<i64>>``, ``option<unit>``): ``Some(None)``.
    For other options ``None`` is none and any other value is some."""

    __slots__ = ("value",)

    def __init__(self, value):
        self.value = value

    def __eq__(self, other):
        return isinstance(other, Some) and self.value == other.value

    def __hash__(self):
        return hash(("Some", self.value))

    def __repr__(self):
        return "Some(%r)" % (self.value,)


class DecodeError(ValueError):
    pass


class EncodeError(ValueError):
    pass


_dec_cache = {}
_enc_cache = {}


def decoder(t):
    d = _dec_cache.get(t)
    if d is None:
        d = _dec_cache[t] = _make_decoder(t)
    return d


def encoder(t):
    e = _enc_cache.get(t)
    if e is None:
        e = _enc_cache[t] = _make_encoder(t)
    return e


def _fixed_decoder(kind):
    st = struct.Struct(_FIXED[kind])
    width = st.size
    unpack = st.unpack_from
    msg = "%s needs exactly %d byte%s, got %%d" % (kind, width, "" if width == 1 else "s")

    def d(b, s, e):
        if e - s != width:
            raise DecodeError(msg % (e - s))
        return unpack(b, s)[0]
    return d


def _length(b, s, e, what):
    if e - s < 4:
        raise DecodeError("%s: a length needs 4 bytes, %d left" % (what, e - s))
    n = _u32_unpack(b, s)[0]
    if s + 4 + n > e:
        raise DecodeError("%s: length %d runs past the end of the record" % (what, n))
    return n


def _make_decoder(t):
    k = t.kind
    if k == "string":
        def d(b, s, e):
            try:
                return b[s:e].decode()
            except UnicodeDecodeError as x:
                raise DecodeError("invalid UTF-8: %s" % x) from None
        return d
    if k == "bytes":
        return lambda b, s, e: b[s:e]
    if k == "bool":
        def d(b, s, e):
            if e - s != 1:
                raise DecodeError("bool needs exactly 1 byte, got %d" % (e - s))
            v = b[s]
            if v > 1:
                raise DecodeError("bool byte %d is not 0 or 1" % v)
            return v == 1
        return d
    if k == "unit":
        def d(b, s, e):
            if e != s:
                raise DecodeError("unit has no bytes, got %d" % (e - s))
            return None
        return d
    if k in _FIXED:
        return _fixed_decoder(k)
    if k == "json":
        cls = t.cls

        def d(b, s, e):
            try:
                v = json.loads(b[s:e].decode())
            except (UnicodeDecodeError, ValueError) as x:
                raise DecodeError("invalid JSON: %s" % x) from None
            if cls is not None:
                if not isinstance(v, dict):
                    raise DecodeError("JSON for %s is not an object" % cls.__name__)
                try:
                    return cls(**v)
                except TypeError as x:
                    raise DecodeError("JSON does not fit %s: %s" % (cls.__name__, x)) from None
            return v
        return d
    if k == "option":
        inner = decoder(t.args[0])
        wrap = t.args[0].kind in ("option", "unit")

        def d(b, s, e):
            if s >= e:
                raise DecodeError("option has no tag")
            tag = b[s]
            if tag == 0:
                if e != s + 1:
                    raise DecodeError("%d bytes left after an option's none" % (e - s - 1))
                return None
            if tag != 1:
                raise DecodeError("option tag %d is not 0 or 1" % tag)
            try:
                v = inner(b, s + 1, e)
            except DecodeError as x:
                raise DecodeError("option: %s" % x) from None
            return Some(v) if wrap else v
        return d
    if k == "list":
        elem_t = t.args[0]
        inner = decoder(elem_t)
        width = struct.calcsize(_FIXED[elem_t.kind]) if elem_t.kind in _FIXED else None

        fmt = ("I" + _FIXED[elem_t.kind][1]) if width is not None else None
        structs = {}

        def d(b, s, e):
            if e - s < 4:
                raise DecodeError("list needs a 4-byte count, got %d bytes" % (e - s))
            count = _u32_unpack(b, s)[0]
            p = s + 4
            if width is not None and e - p == count * (4 + width) and count <= 64:
                # Fixed-width elements: one unpack of all lengths and values.
                st = structs.get(count)
                if st is None:
                    st = structs[count] = struct.Struct("<" + fmt * count)
                flat = st.unpack_from(b, p)
                if flat[0::2].count(width) == count:
                    return list(flat[1::2])
            out = []
            append = out.append
            for i in range(count):
                if e - p < 4:
                    raise DecodeError("list element %d: no length (the list is shorter than its count %d)"
                                      % (i, count))
                n = _u32_unpack(b, p)[0]
                p += 4
                if p + n > e:
                    raise DecodeError("list element %d: length %d runs past the end" % (i, n))
                try:
                    append(inner(b, p, p + n))
                except DecodeError as x:
                    raise DecodeError("list element %d: %s" % (i, x)) from None
                p += n
            if p != e:
                raise DecodeError("%d bytes left after a list" % (e - p))
            return out
        return d
    if k == "tuple":
        decs = [decoder(a) for a in t.args]
        if len(decs) == 2:
            d0, d1 = decs

            def d(b, s, e):
                if e - s < 4:
                    raise DecodeError("tuple element 0: a length needs 4 bytes, %d left" % (e - s))
                n = _u32_unpack(b, s)[0]
                m = s + 4 + n
                if m > e:
                    raise DecodeError("tuple element 0: length %d runs past the end of the record" % n)
                try:
                    a = d0(b, s + 4, m)
                except DecodeError as x:
                    raise DecodeError("tuple element 0: %s" % x) from None
                try:
                    return (a, d1(b, m, e))
                except DecodeError as x:
                    raise DecodeError("tuple element 1: %s" % x) from None
            return d
        last = len(decs) - 1

        def d(b, s, e):
            out = []
            for i, di in enumerate(decs):
                if i < last:
                    n = _length(b, s, e, "tuple element %d" % i)
                    s += 4
                    m = s + n
                else:
                    m = e
                try:
                    out.append(di(b, s, m))
                except DecodeError as x:
                    raise DecodeError("tuple element %d: %s" % (i, x)) from None
                s = m
            return tuple(out)
        return d
    raise ValueError("no decoder for %r" % (t,))


def _json_default(o):
    if dataclasses.is_dataclass(o) and not isinstance(o, type):
        return dataclasses.asdict(o)
    raise TypeError("a %s is not JSON serializable" % o.__class__.__name__)


_dumps = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False, allow_nan=False,
                          default=_json_default).encode


def _make_encoder(t):
    k = t.kind
    if k == "string":
        def e(v):
            return v.encode()
        return e
    if k == "bytes":
        def e(v):
            c = v.__class__
            if c is bytes:
                return v
            if c is bytearray or c is memoryview:
                return bytes(v)
            raise EncodeError("a %s is not bytes" % c.__name__)
        return e
    if k == "bool":
        table = {True: b"\x01", False: b"\x00"}

        def e(v):
            if v is True or v is False:
                return table[v]
            raise EncodeError("a %s is not a bool" % v.__class__.__name__)
        return e
    if k == "unit":
        def e(v):
            if v is None:
                return b""
            raise EncodeError("a %s is not None (unit)" % v.__class__.__name__)
        return e
    if k in INTEGERS:
        pack = struct.Struct(_FIXED[k]).pack

        def e(v):
            if v.__class__ is float:
                raise EncodeError("a float is not an integer")
            return pack(v)
        return e
    if k in FLOATS:
        pack = struct.Struct(_FIXED[k]).pack
        return pack
    if k == "json":
        def e(v):
            return _dumps(v).encode()
        return e
    if k == "option":
        inner = encoder(t.args[0])

        def e(v):
            if v is None:
                return b"\x00"
            if v.__class__ is Some:
                v = v.value
            return b"\x01" + inner(v)
        return e
    if k == "list":
        inner = encoder(t.args[0])

        def e(v):
            if not isinstance(v, (list, tuple)):
                raise EncodeError("a %s is not a list" % v.__class__.__name__)
            parts = [_u32_pack(len(v))]
            for x in v:
                b = inner(x)
                parts.append(_u32_pack(len(b)))
                parts.append(b)
            return b"".join(parts)
        return e
    if k == "tuple":
        encs = [encoder(a) for a in t.args]
        n = len(encs)
        if n == 2:
            e0, e1 = encs

            def e(v):
                if len(v) != 2 or not isinstance(v, (tuple, list)):
                    raise EncodeError("not a pair")
                a = e0(v[0])
                return _u32_pack(len(a)) + a + e1(v[1])
            return e
        last = n - 1

        def e(v):
            if not isinstance(v, (tuple, list)) or len(v) != n:
                raise EncodeError("not a tuple of %d" % n)
            parts = []
            for i, ei in enumerate(encs):
                b = ei(v[i])
                if i < last:
                    parts.append(_u32_pack(len(b)))
                parts.append(b)
            return b"".join(parts)
        return e
    raise ValueError("no encoder for %r" % (t,))


def explain(t, v):
    """Why ``v`` does not fit ``t`` (for messages), or None if it does."""
    k = t.kind
    name = v.__class__.__name__
    try:
        if k == "tuple":
            if not isinstance(v, (tuple, list)):
                return "a %s where a tuple of %d is expected" % (name, len(t.args))
            if len(v) != len(t.args):
                return "a tuple of %d where a tuple of %d is expected" % (len(v), len(t.args))
            for i, (a, x) in enumerate(zip(t.args, v)):
                why = explain(a, x)
                if why:
                    return "tuple element %d: %s" % (i, why)
            return None
        if k == "list":
            if not isinstance(v, (list, tuple)):
                return "a %s where a list is expected" % name
            for i, x in enumerate(v):
                why = explain(t.args[0], x)
                if why:
                    return "list element %d: %s" % (i, why)
            return None
        if k == "option":
            if v is None:
                return None
            return explain(t.args[0], v.value if isinstance(v, Some) else v)
        if k in INTEGERS and isinstance(v, int):
            bits = int(k[1:])
            lo, hi = (-(1 << (bits - 1)), (1 << (bits - 1)) - 1) if k[0] == "i" else (0, (1 << bits) - 1)
            if not lo <= v <= hi:
                return "%r is out of the range of %s" % (v, k)
        encoder(t)(v)
        return None
    except (EncodeError, struct.error, AttributeError, TypeError, ValueError,
            OverflowError, UnicodeError) as x:
        spelled = {"string": "str", "i64": "int", "f64": "float", "unit": "None"}.get(k, k)
        if k == "json":
            return "a %s that is not JSON (%s)" % (name, x)
        return "a %s where %s is expected" % (name, spelled)


def encode_one(t, v):
    return encoder(t)(v)


def decode_rows(t, data, ends, lo=0, hi=None, text=None):
    """Records ``lo`` to ``hi`` of a partition, decoded; raises
    ``DecodeError`` whose message starts with ``record i:``. For ``string``
    records, ``text`` may be ``data`` decoded as ASCII (see ``ascii_text``)."""
    if hi is None:
        hi = len(ends)
    if hi <= lo:
        return []
    starts = ends[lo - 1:hi - 1] if lo else [0] + ends[:hi - 1]
    stop = ends[lo:hi] if lo or hi != len(ends) else ends
    if stop[-1] > len(data):
        raise DecodeError("record %d: ends at %d, past the %d bytes of the partition"
                          % (hi - 1, stop[-1], len(data)))
    if t.kind == "string":
        if text is None:
            piece = data[starts[0]:stop[-1]]
            if piece.isascii():
                text = piece.decode("ascii")
                base = starts[0]
                if base:
                    return [text[a - base:b - base] for a, b in zip(starts, stop)]
        if text is not None:
            return [text[a:b] for a, b in zip(starts, stop)]
        try:
            return [data[a:b].decode() for a, b in zip(starts, stop)]
        except UnicodeDecodeError:
            pass
    elif t.kind == "bytes":
        return [data[a:b] for a, b in zip(starts, stop)]
    d = decoder(t)
    try:
        return [d(data, a, b) for a, b in zip(starts, stop)]
    except (DecodeError, ValueError):
        pass
    for i, (a, b) in enumerate(zip(starts, stop)):
        if a > b:
            raise DecodeError("record %d: starts at %d after its end %d" % (lo + i, a, b))
        try:
            d(data, a, b)
        except (DecodeError, ValueError) as x:
            raise DecodeError("record %d: %s" % (lo + i, x)) from None
    raise DecodeError("a record does not decode")


def ascii_text(t, data):
    """``data`` as a ``str`` when the records are strings and all ASCII
    (then byte offsets are character offsets), else None."""
    if t.kind == "string" and data.isascii():
        return data.decode("ascii")
    return None


class EncodeFailure(Exception):
    """A value at ``index`` of a list being encoded does not fit the type."""

    def __init__(self, index, value, detail):
        super().__init__(detail)
        self.index = index
        self.value = value
        self.detail = detail


def encode_parts(t, values):
    """The encodings of ``values``; raises ``EncodeFailure`` for the first
    value that does not fit ``t``."""
    e = encoder(t)
    try:
        return [e(v) for v in values]
    except Exception:
        pass
    for i, v in enumerate(values):
        try:
            e(v)
        except Exception as x:
            raise EncodeFailure(i, v, explain(t, v) or str(x)) from None
    raise EncodeFailure(0, None, "a value does not encode")


_LATIN = [U32.pack(n).decode("latin-1") for n in range(256)]


def _str_int_pairs(kind):
    """A fast encoder of a chunk of ``(str, int)`` pairs for
    ``tuple<string,<integer kind>>``: the whole chunk becomes one latin-1
    string (ASCII keys are their own bytes), encoded once. Returns
    ``(data, lengths)`` or None when the chunk is anything else (the generic
    encoder then handles it, and reports what does not fit)."""
    pack = struct.Struct(_FIXED[kind]).pack
    tails = {}
    width = 4 + struct.calcsize(_FIXED[kind])
    prefix = _LATIN.__getitem__
    tuple_, str_, int_ = tuple, str, int
    first, second = itemgetter(0), itemgetter(1)
    add_width = width.__add__

    def columns(keys, values):
        """Keys and values in two lists (the values known to be ints)."""
        if set(map(type, keys)) != {str_} or not "".join(keys).isascii():
            return None
        n = len(keys)
        parts = [""] * (3 * n)
        try:
            parts[0::3] = list(map(prefix, map(len, keys)))
            for v in set(values).difference(tails):
                tails[v] = pack(v).decode("latin-1")
        except (struct.error, IndexError):
            return None
        parts[1::3] = keys
        parts[2::3] = list(map(tails.__getitem__, values))
        if len(tails) > 4096:
            tails.clear()
        return "".join(parts).encode("latin-1"), map(add_width, map(len, keys))

    def enc(chunk):
        if set(map(type, chunk)) != {tuple_} or set(map(len, chunk)) != {2}:
            return None
        values = list(map(second, chunk))
        if set(map(type, values)) != {int_}:
            return None
        return columns(list(map(first, chunk)), values)
    enc.columns = columns
    return enc


def fixed_width(t):
    """The byte width of a fixed-width number codec, else None."""
    f = _FIXED.get(t.kind)
    return struct.calcsize(f) if f else None


def constant_tail_encoder(t, c):
    """For ``tuple<string,<integer>>`` records made by ``lambda w: (w, c)``:
    encodes a chunk of keys ``w`` straight into pairs (one join with the
    value's bytes as the separator), or returns None for anything but ASCII
    ``str`` keys shorter than 256 bytes."""
    if not (t.kind == "tuple" and len(t.args) == 2 and t.args[0].kind == "string"
            and t.args[1].kind in INTEGERS):
        return None
    try:
        tail = struct.pack(_FIXED[t.args[1].kind], c).decode("latin-1")
    except struct.error:
        return None
    prefix = _LATIN.__getitem__
    add_width = (4 + len(tail)).__add__
    str_ = str

    def enc(keys):
        if not keys:
            return b"", []
        if set(map(type, keys)) != {str_} or not "".join(keys).isascii():
            return None
        n = len(keys)
        parts = [tail] * (3 * n)
        try:
            parts[0::3] = list(map(prefix, map(len, keys)))
        except IndexError:
            return None
        parts[1::3] = keys
        return "".join(parts).encode("latin-1"), map(add_width, map(len, keys))
    return enc


_fast_cache = {}


def fast_encoder(t):
    """A whole-chunk encoder for common record types, or None."""
    if t in _fast_cache:
        return _fast_cache[t]
    fast = None
    if t.kind == "tuple" and len(t.args) == 2 and t.args[0].kind == "string" \
            and t.args[1].kind in INTEGERS:
        fast = _str_int_pairs(t.args[1].kind)
    _fast_cache[t] = fast
    return fast


class RowsBuilder:
    """Accumulates encoded records; ``finish()`` gives ``(data, ends)``."""

    __slots__ = ("parts", "ends", "size")

    def __init__(self):
        self.parts = []
        self.ends = []
        self.size = 0

    def extend(self, parts):
        """Appends encoded records, one ``bytes`` each."""
        if not parts:
            return
        it = accumulate(map(len, parts), initial=self.size)
        next(it)
        ends = self.ends
        ends.extend(it)
        self.size = ends[-1]
        self.parts.extend(parts)

    def extend_joined(self, data, lengths):
        """Appends records already joined into ``data``, of these lengths."""
        it = accumulate(lengths, initial=self.size)
        next(it)
        ends = self.ends
        ends.extend(it)
        if ends:
            self.size = ends[-1]
        self.parts.append(data)

    def encode(self, t, values, fast=None):
        """Encodes and appends ``values``; raises ``EncodeFailure``."""
        if fast is not None:
            done = fast(values)
            if done is not None:
                self.extend_joined(*done)
                return
        self.extend(encode_parts(t, values))

    def add(self, part):
        self.parts.append(part)
        self.size += len(part)
        self.ends.append(self.size)

    def finish(self):
        data = b"".join(self.parts)
        self.parts = []
        return data, self.ends


def encode_rows(t, values):
    """``(data, ends)`` of ``values``; raises ``EncodeFailure``."""
    rb = RowsBuilder()
    rb.encode(t, values, fast_encoder(t))
    return rb.finish()
