"""Test setup for the core's tests (tests/) and every plugin's (plugins/*/tests)."""

import os

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import pytest  # noqa: E402
import torch  # noqa: E402

# one thread for the whole session, so that module- and session-scoped fixtures that train
# (they run before the per-test fixture below) give the same numbers on every machine
torch.set_num_threads(1)


@pytest.fixture(autouse=True)
def _seed_and_one_thread():
    """Seeded and single-threaded: the tests are many small ops, and on a shared 2-core
    machine two intra-op threads made a 3-step training run 20-30x slower (measured)."""
    torch.manual_seed(0)
    saved = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(saved)


@pytest.fixture(autouse=True, scope="session")
def _session_cache_dir(tmp_path_factory):
    """Numerics decisions and cached features (``DEEPCLUST_CACHE_DIR``) go to a folder of the
    test session, never into the user's ~/.cache/deepclust."""
    saved = os.environ.get("DEEPCLUST_CACHE_DIR")
    os.environ["DEEPCLUST_CACHE_DIR"] = str(tmp_path_factory.mktemp("deepclust-cache"))
    yield
    if saved is None:
        os.environ.pop("DEEPCLUST_CACHE_DIR", None)
    else:
        os.environ["DEEPCLUST_CACHE_DIR"] = saved


@pytest.fixture(autouse=True, scope="session")
def _simplest_auto_numerics():
    """``"auto"`` numerics (every recipe's default) resolve to fp32, contiguous, eager with no
    probe (``DEEPCLUST_AUTO_NUMERICS=simplest``), so a test's numbers and run time do not
    depend on the machine; the tests of the probe itself unset it."""
    saved = os.environ.get("DEEPCLUST_AUTO_NUMERICS")
    os.environ["DEEPCLUST_AUTO_NUMERICS"] = "simplest"
    yield
    if saved is None:
        os.environ.pop("DEEPCLUST_AUTO_NUMERICS", None)
    else:
        os.environ["DEEPCLUST_AUTO_NUMERICS"] = saved


@pytest.fixture(scope="session")
def plugins():
    """Every installed plugin and the core, loaded once per session (tests that need another
    set build their own with ``corekit.testing.plugin_set`` or ``load_only``)."""
    from corekit.plugins import load_plugins

    return load_plugins()
