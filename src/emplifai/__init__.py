"""emplifai: build, validate and benchmark fine-grained empathetic medical dialogue datasets in Japanese."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("emplifai")
except PackageNotFoundError:  # running from a source tree that was not installed
    __version__ = "0.0.0+local"

