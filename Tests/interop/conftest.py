import os
import pathlib
import subprocess

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[2]
FIXTURES = ROOT / "Fixtures"


def find_binary():
    explicit = os.environ.get("COMPRESSOR")
    if explicit:
        return explicit
    builds = [p for p in (ROOT / ".build" / c / "compressor" for c in ("release", "debug")) if p.exists()]
    if not builds:
        raise RuntimeError("build compressor first (make build)")
    return str(max(builds, key=lambda p: p.stat().st_mtime))


def ort_outputs(path, feeds):
    """ONNX Runtime's outputs with its graph optimizations off: the ONNX semantics, not its fusions."""
    import onnxruntime as ort
    opts = ort.SessionOptions()
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    return ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"]).run(None, feeds)


@pytest.fixture(scope="session")
def compressor():
    return runner(find_binary())


@pytest.fixture(scope="session")
def compressor_release():
    """The optimized build, for tests that train (COMPRESSOR_RELEASE, else the newest build)."""
    return runner(os.environ.get("COMPRESSOR_RELEASE") or find_binary())


def runner(binary):
    # Absolute, so that tests may run it from another working directory.
    binary = os.path.abspath(binary) if os.sep in binary else binary

    def run(*args, check=True, **kw):
        r = subprocess.run([binary, *map(str, args)], capture_output=True, text=True, **kw)
        if check and r.returncode != 0:
            raise AssertionError(f"compressor {' '.join(map(str, args))} exited {r.returncode}: {r.stderr}")
        return r

    return run
