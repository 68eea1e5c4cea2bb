"""Record types: codec descriptors, Python declarations, inference by example.

A stream's record type is a :class:`Type`: one codec of ``wit/CODECS.md``
(``string``, ``i64``, ``tuple<string,i64>``, ...) and, for ``json``, the
dataclass its records decode into. Users never build one directly; they
declare types with Python types (``str``, ``(str, int)``, ``list[int]``,
``Optional[float]``, ``dict``, a dataclass), with the markers of this module
(``I32``, ``U8``, ``F32``, ``Json``, ...) or with codec strings
(``"tuple<string,i32>"``).
"""

import dataclasses
import typing

__all__ = [
    "I8", "I16", "I32", "I64", "U8", "U16", "U32", "U64", "F32", "F64",
    "Json", "Type", "TypeDeclarationError", "declared", "of_value", "parse",
]

INTEGERS = ("i8", "i16", "i32", "i64", "u8", "u16", "u32", "u64")
FLOATS = ("f32", "f64")
NUMERIC = INTEGERS + FLOATS
SCALARS = ("string", "bytes", "bool", "unit", "json") + NUMERIC
MAX_DESCRIPTOR = 16384
MAX_DEPTH = 32


class TypeDeclarationError(ValueError):
    """A declaration or a codec string that does not describe a record type."""


class Type:
    """A record type: a codec, and for ``json`` the class its records decode into."""

    __slots__ = ("kind", "args", "cls", "codec", "_key")

    def __init__(self, kind, args=(), cls=None):
        self.kind = kind
        self.args = tuple(args)
        self.cls = cls
        if kind == "tuple":
            self.codec = "tuple<" + ",".join(a.codec for a in self.args) + ">"
        elif kind in ("option", "list"):
            self.codec = kind + "<" + self.args[0].codec + ">"
        else:
            self.codec = kind
        self._key = (self.codec, cls)

    def __eq__(self, other):
        return isinstance(other, Type) and self._key == other._key

    def __hash__(self):
        return hash(self._key)

    def __repr__(self):
        if self.cls is not None:
            return "Type(json as %s)" % self.cls.__name__
        return "Type(%s)" % self.codec

    @property
    def is_pair(self):
        return self.kind == "tuple" and len(self.args) == 2

    @property
    def numeric(self):
        return self.kind in NUMERIC

    def sample(self):
        """The value inference by example calls a function on."""
        k = self.kind
        if k == "string":
            return "0"
        if k == "bytes":
            return b"0"
        if k == "bool":
            return True
        if k == "unit":
            return None
        if k in INTEGERS:
            return 1
        if k in FLOATS:
            return 1.0
        if k == "tuple":
            return tuple(a.sample() for a in self.args)
        if k == "list":
            return [self.args[0].sample()]
        if k == "option":
            inner = self.args[0]
            value = inner.sample()
            if inner.kind in ("option", "unit"):
                from .codec import Some
                return Some(value)
            return value
        # json
        if self.cls is not None:
            try:
                hints = typing.get_type_hints(self.cls)
                fields = {}
                for f in dataclasses.fields(self.cls):
                    fields[f.name] = declared(hints.get(f.name, dict)).sample()
                return self.cls(**fields)
            except Exception:
                pass
        return {}


class _Marker:
    """A codec given by name: ``sluice.types.I32`` and the others."""

    __slots__ = ("type",)

    def __init__(self, codec):
        self.type = Type(codec)

    def __repr__(self):
        return self.type.codec.upper() if self.type.codec != "json" else "Json"


I8, I16, I32, I64 = (_Marker(c) for c in ("i8", "i16", "i32", "i64"))
U8, U16, U32, U64 = (_Marker(c) for c in ("u8", "u16", "u32", "u64"))
F32, F64 = _Marker("f32"), _Marker("f64")
Json = _Marker("json")

STRING, BYTES, BOOL, UNIT = Type("string"), Type("bytes"), Type("bool"), Type("unit")
I64_T, F64_T, JSON = Type("i64"), Type("f64"), Type("json")


def pair(k, v):
    return Type("tuple", (k, v))


def list_of(t):
    return Type("list", (t,))


def option(t):
    return Type("option", (t,))


def parse(descriptor):
    """Parses a codec descriptor (``"tuple<string,list<i64>>"``)."""
    if len(descriptor) > MAX_DESCRIPTOR:
        raise TypeDeclarationError("a codec descriptor is at most %d bytes long" % MAX_DESCRIPTOR)
    pos = 0

    def fail(why):
        raise TypeDeclarationError("%r is not a codec (%s at offset %d)" % (descriptor, why, pos))

    def one(depth):
        nonlocal pos
        if depth > MAX_DEPTH:
            fail("nested more than %d levels" % MAX_DEPTH)
        end = pos
        while end < len(descriptor) and descriptor[end].isalnum():
            end += 1
        word = descriptor[pos:end]
        pos = end
        if word in SCALARS:
            return Type(word)
        if word not in ("tuple", "option", "list"):
            fail("unknown codec %r" % word)
        if descriptor[pos:pos + 1] != "<":
            fail("expected '<'")
        pos += 1
        args = [one(depth + 1)]
        while descriptor[pos:pos + 1] == ",":
            pos += 1
            args.append(one(depth + 1))
        if descriptor[pos:pos + 1] != ">":
            fail("expected '>' or ','")
        pos += 1
        if word == "tuple" and len(args) < 2:
            fail("a tuple has at least two elements")
        if word != "tuple" and len(args) != 1:
            fail("%s has one element type" % word)
        return Type(word, args)

    t = one(1)
    if pos != len(descriptor):
        fail("trailing text")
    return t


_ITERABLES = None


def _iterable_origins():
    global _ITERABLES
    if _ITERABLES is None:
        import collections.abc as abc
        _ITERABLES = (list, abc.Iterable, abc.Iterator, abc.Generator, abc.Sequence,
                      abc.Collection, abc.MutableSequence)
    return _ITERABLES


def declared(decl):
    """The type a declaration names.

    ``str bytes int float bool None type(None)``, ``(A, B)``, ``tuple[A, B]``,
    ``[A]``, ``list[A]``, ``Optional[A]``, ``dict``, a dataclass, the markers
    ``I8`` .. ``U64``, ``F32``, ``F64``, ``Json``, or a codec string.
    """
    if isinstance(decl, Type):
        return decl
    if isinstance(decl, _Marker):
        return decl.type
    if isinstance(decl, str):
        return parse(decl)
    if decl is str:
        return STRING
    if decl in (bytes, bytearray):
        return BYTES
    if decl is bool:
        return BOOL
    if decl is int:
        return I64_T
    if decl is float:
        return F64_T
    if decl is None or decl is type(None):
        return UNIT
    if decl is dict:
        return JSON
    if isinstance(decl, type) and dataclasses.is_dataclass(decl):
        return Type("json", cls=decl)
    if isinstance(decl, tuple):
        if len(decl) < 2:
            raise TypeDeclarationError("a tuple type has at least two elements: %r" % (decl,))
        return Type("tuple", [declared(d) for d in decl])
    if isinstance(decl, list):
        if len(decl) != 1:
            raise TypeDeclarationError("a list type names one element type, e.g. [int]: %r" % (decl,))
        return list_of(declared(decl[0]))
    origin = typing.get_origin(decl)
    targs = typing.get_args(decl)
    if origin is tuple:
        if len(targs) == 2 and targs[1] is Ellipsis:
            raise TypeDeclarationError("a variable-length tuple has no codec; use list[%s]" % targs[0])
        return declared(tuple(targs))
    if origin is list:
        return list_of(declared(targs[0] if targs else dict))
    if origin is dict:
        return JSON
    if origin is typing.Union or type(decl).__name__ == "UnionType":
        rest = [a for a in targs if a is not type(None)]
        if len(rest) == 1 and len(targs) == 2:
            return option(declared(rest[0]))
        raise TypeDeclarationError("a union other than Optional[X] has no codec: %r" % (decl,))
    raise TypeDeclarationError("%r is not a record type (use str, bytes, int, float, bool, None, "
                               "(A, B), [A], Optional[A], dict, a dataclass, sluice.types.I32 and "
                               "the like, or a codec string)" % (decl,))


def element_of_annotation(decl):
    """For flatMap-like annotations (``-> list[str]``, ``Iterable[str]``): the element type."""
    origin = typing.get_origin(decl)
    targs = typing.get_args(decl)
    if origin in _iterable_origins() and len(targs) == 1:
        return declared(targs[0])
    if decl is list or origin in _iterable_origins():
        return None
    if isinstance(decl, list) and len(decl) == 1:
        return declared(decl[0])
    return None


def annotation_type(decl):
    """A return annotation's type, or None when it says nothing usable."""
    if decl is None or decl is typing.Any or decl is object:
        return None
    try:
        return declared(decl)
    except TypeDeclarationError:
        return None


class InferenceError(ValueError):
    pass


def of_value(value):
    """The type of a Python value: str, bytes, bool, int (i64), float (f64),
    None (unit), tuple, list (of its first element), dict/dataclass (json)."""
    cls = value.__class__
    if cls is str:
        return STRING
    if cls is int:
        return I64_T
    if cls is float:
        return F64_T
    if cls is bool:
        return BOOL
    if value is None:
        return UNIT
    if cls is bytes or cls is bytearray:
        return BYTES
    if isinstance(value, tuple):
        if len(value) < 2:
            raise InferenceError("a tuple of %d element%s has no codec (tuples have at least two)"
                                 % (len(value), "" if len(value) == 1 else "s"))
        return Type("tuple", [of_value(v) for v in value])
    if isinstance(value, list):
        if not value:
            raise InferenceError("an empty list says nothing about its elements")
        return list_of(of_value(value[0]))
    if isinstance(value, dict):
        return JSON
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return Type("json", cls=cls)
    from .codec import Some
    if cls is Some:
        return option(of_value(value.value))
    if isinstance(value, str):
        return STRING
    if isinstance(value, bool):
        return BOOL
    if isinstance(value, int):
        return I64_T
    if isinstance(value, float):
        return F64_T
    raise InferenceError("a value of type %s has no codec" % cls.__name__)


def python_spelling(t):
    """How to declare ``t`` in Python, for messages."""
    k = t.kind
    simple = {"string": "str", "bytes": "bytes", "bool": "bool", "unit": "None",
              "i64": "int", "f64": "float"}
    if k in simple:
        return simple[k]
    if k in NUMERIC:
        return "sluice.types." + k.upper()
    if k == "tuple":
        return "(" + ", ".join(python_spelling(a) for a in t.args) + ")"
    if k == "list":
        return "[" + python_spelling(t.args[0]) + "]"
    if k == "option":
        return "Optional[" + python_spelling(t.args[0]) + "]"
    if t.cls is not None:
        return t.cls.__name__
    return "dict"
