"""hwsim: hardware cost model and latency simulator for in-situ tunable robust networks."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("hwsim")
except PackageNotFoundError:  # running from a source tree that is not installed
    __version__ = "0.0.0+unknown"

from hwsim.errors import HwsimError

__all__ = ["HwsimError", "__version__"]
