"""What every call may use: accumulators, broadcast values, and the host.

Natively (unit tests) a fake host sums accumulators in ``HOST.sums`` and
serves broadcast values from ``HOST.broadcasts``; in the component the glue
module installs the real host calls with :func:`install_host`.
"""

from . import codec
from .types import InferenceError

__all__ = ["Accumulator", "Broadcast", "HOST", "install_host"]


class _State:
    defining = False   # define (and the inference calls in it) is running


STATE = _State()


class FakeHost:
    def __init__(self):
        self.sums = {}
        self.broadcasts = {}

    def add(self, name, value):
        self.sums[name] = self.sums.get(name, 0) + value

    def broadcast_value(self, name):
        return self.broadcasts.get(name)


HOST = FakeHost()


def install_host(host):
    """Replaces the host (``add(name, value)``, ``broadcast_value(name)``)."""
    global HOST
    HOST = host


class Accumulator:
    """A named sum kept by the host (Spark's accumulator): ``acc.add(x)``.

    Integer accumulators take ints, float accumulators numbers. Additions
    made during ``define`` (including the calls that infer types) are
    dropped; a task's additions count once, when it succeeds.
    """

    __slots__ = ("name", "is_float")

    def __init__(self, name, is_float):
        self.name = name
        self.is_float = is_float

    def add(self, value):
        if STATE.defining:
            return
        if self.is_float:
            value = float(value)
        elif value.__class__ is not int:
            if isinstance(value, int):
                value = int(value)
            else:
                raise TypeError("accumulator %r adds integers, not a %s"
                                % (self.name, value.__class__.__name__))
        HOST.add(self.name, value)

    def __iadd__(self, value):
        self.add(value)
        return self

    def __repr__(self):
        return "Accumulator(%r)" % self.name


class Broadcast:
    """A named read-only value (Spark's broadcast variable): ``b.value``.

    The value is encoded into the graph (or, for ``broadcastFile``, read from
    the file by the host at start) and fetched once per instance on first
    use. During ``define`` it is the value given to ``broadcast`` (a file's
    content is not available there).
    """

    __slots__ = ("name", "type", "_define_value", "_is_file", "_value", "_loaded")

    def __init__(self, name, type_, define_value, is_file):
        self.name = name
        self.type = type_
        self._define_value = define_value
        self._is_file = is_file
        self._value = None
        self._loaded = False

    @property
    def value(self):
        if self._loaded:
            return self._value
        if STATE.defining:
            if self._is_file:
                raise InferenceError("broadcast %r is a file, read by the host at start: its value "
                                     "is not available during define" % self.name)
            return self._define_value
        raw = HOST.broadcast_value(self.name)
        if raw is None:
            raise LookupError("broadcast %r: the host has no value of that name" % self.name)
        try:
            value = codec.decoder(self.type)(raw, 0, len(raw))
        except (codec.DecodeError, ValueError) as e:
            raise ValueError("broadcast %r: cannot decode its value as %s: %s"
                             % (self.name, self.type.codec, e)) from None
        self._value = value
        self._loaded = True
        return value

    def __repr__(self):
        return "Broadcast(%r)" % self.name
