"""The ``--arg KEY=VALUE`` pairs given to ``define`` (the Rust SDK's ``Args``)."""

__all__ = ["Args", "ArgumentError", "parse_duration_ms"]

_MISSING = object()


class ArgumentError(KeyError):
    """A missing or malformed argument; its message names the argument."""

    def __str__(self):
        return str(self.args[0]) if self.args else ""


def parse_duration_ms(text):
    """``500ms``, ``30s``, ``5m`` (or ``5min``), ``2h`` -> milliseconds."""
    t = text.strip()
    i = 0
    while i < len(t) and t[i].isdigit() and t[i].isascii():
        i += 1
    number, unit = t[:i], t[i:].strip()
    if not number:
        raise ValueError("%r is not a duration like 500ms, 30s, 5m or 2h" % text)
    scale = {"ms": 1, "s": 1000, "m": 60000, "min": 60000, "h": 3600000}.get(unit)
    if scale is None:
        raise ValueError("%r is not a duration like 500ms, 30s, 5m or 2h (units: ms, s, m, h)" % text)
    return int(number) * scale


class Args:
    """A read-only mapping of the arguments; the last value of a repeated key wins.

    ``args["host"]`` raises ``ArgumentError`` ("missing argument `host` (pass
    --arg host=VALUE)"); ``args.get(k, default)``; ``args.int(k)``,
    ``args.float(k)``, ``args.duration_ms(k)`` parse (with an optional
    default used when the argument is absent); ``k in args``, ``len(args)``,
    ``args.items()`` (every pair, in order).
    """

    def __init__(self, pairs=()):
        self._pairs = [(str(k), str(v)) for k, v in pairs]
        self._map = dict(self._pairs)

    def __getitem__(self, key):
        return self.require(key)

    def require(self, key):
        try:
            return self._map[key]
        except KeyError:
            raise ArgumentError("missing argument `%s` (pass --arg %s=VALUE)" % (key, key)) from None

    def get(self, key, default=None):
        return self._map.get(key, default)

    def __contains__(self, key):
        return key in self._map

    def __iter__(self):
        return iter(self._map)

    def __len__(self):
        return len(self._pairs)

    def keys(self):
        return self._map.keys()

    def items(self):
        return list(self._pairs)

    def _parse(self, key, default, kind, parse):
        if key not in self._map:
            if default is not _MISSING:
                return default
            self.require(key)
        value = self._map[key]
        try:
            return parse(value)
        except ValueError as e:
            raise ArgumentError("argument `%s`: cannot parse %r as %s: %s" % (key, value, kind, e)) from None

    def int(self, key, default=_MISSING):
        return self._parse(key, default, "an integer", int)

    def float(self, key, default=_MISSING):
        return self._parse(key, default, "a number", float)

    def duration_ms(self, key, default=_MISSING):
        """A duration argument (``500ms``, ``30s``, ``5m``, ``2h``) in milliseconds."""
        return self._parse(key, default, "a duration", parse_duration_ms)

    def __repr__(self):
        return "Args(%r)" % (self._pairs,)
