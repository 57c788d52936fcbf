"""distillguard: find and stop distillation attacks on LLM APIs."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("distillguard")
except PackageNotFoundError:  # running from a source tree without install
    __version__ = "0.0.0"
