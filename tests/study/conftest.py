"""Study tests run single-threaded, like the method tests (tiny tensors)."""

from tests.methods.conftest import _single_thread  # noqa: F401  (an autouse fixture)
