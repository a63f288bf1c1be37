"""flashgdn: ahead-of-time compiled Gated DeltaNet kernels for NVIDIA Hopper (sm_90a).

``import flashgdn`` needs only torch: no GPU, no TileLang, no compiler. The native extension
is loaded on the first GPU call.
"""

from . import reference
from .api import chunk_gated_delta_rule

__version__ = "0.1.0"
__all__ = ["chunk_gated_delta_rule", "reference", "__version__", "cmake_prefix_path", "include_dir"]


def _package_dir() -> str:
    import os
    return os.path.dirname(os.path.abspath(__file__))


def cmake_prefix_path() -> str:
    """Prefix to put on CMAKE_PREFIX_PATH for ``find_package(flashgdn)`` (C/C++ users)."""
    return _package_dir()


def include_dir() -> str:
    """Directory holding ``flashgdn/flashgdn.h``."""
    import os
    return os.path.join(_package_dir(), "include")
