"""Sluice jobs in Python: PySpark's DStream API on the ``sluice:plugin`` contract.

A job is a module ``app.py`` with ``def define(ssc, args)``::

    def define(ssc, args):
        lines = ssc.socketTextStream(args["host"], args.int("port"))
        counts = (lines.flatMap(lambda line: line.split(" "))
                       .map(lambda word: (word, 1))
                       .reduceByKey(lambda a, b: a + b))
        counts.pprint()

Build it into a component with ``guest-sdk/python/build <plugin-dir> <out.wasm>``.
"""

from . import types
from .args import Args, ArgumentError
from .codec import Some
from .context import (COUNT, MAX, MIN, NONZERO, SUM, DStream, JobError, MapWithStateDStream,
                      StateSpec, StreamingContext)
from .runtime import State
from .shared import Accumulator, Broadcast

__all__ = ["Args", "ArgumentError", "Accumulator", "Broadcast", "COUNT", "DStream", "JobError", "MAX", "MIN",
           "MapWithStateDStream", "NONZERO", "SUM", "Some", "State", "StateSpec",
           "StreamingContext", "types"]
