"""Shared helpers for the SDK's unit tests (standard library only)."""

import importlib.util
import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
SDK = os.path.dirname(HERE)
REPO = os.path.dirname(os.path.dirname(SDK))
if SDK not in sys.path:
    sys.path.insert(0, SDK)

from sluice import codec, context, runtime  # noqa: E402
from sluice import types as T  # noqa: E402


def load_app(relative):
    """Imports ``<repo>/<relative>/app.py`` under a unique module name."""
    path = os.path.join(REPO, relative, "app.py")
    name = "app_" + relative.replace("/", "_").replace("-", "_")
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


class Job:
    """A job module made of a ``define`` function."""

    def __init__(self, define, name="TestJob"):
        self.define = define
        self.APP_NAME = name


def define(f, pairs=(), name="TestJob"):
    return context.define(Job(f, name), list(pairs))


def rows(t, values):
    return codec.encode_rows(t, values)


def decoded(t, result):
    data, ends = result
    return codec.decode_rows(t, data, ends)


def node(graph, op):
    found = [n for n in graph.nodes if n.name.startswith(op + " at ")]
    assert found, "no %s in %r" % (op, [n.name for n in graph.nodes])
    return found[0]
