"""The C++ build helper: the vector ISA it compiles for, and the reason it gives when a build fails."""

from __future__ import annotations

import shutil
import subprocess
import sysconfig
from pathlib import Path

import pytest
import torch

from core import cpp_build

GMM_SOURCE = Path(__file__).resolve().parents[2] / "models/deep_gmm/csrc/gmm_cpu_kernels.cpp"


def test_avx512_is_opt_in_and_follows_torch(monkeypatch):
    monkeypatch.setattr(cpp_build.platform, "machine", lambda: "x86_64")
    monkeypatch.setattr(torch.backends.cpu, "get_cpu_capability", lambda: "AVX512")
    assert cpp_build.vector_isa() == "AVX2"  # a kernel without AVX-512 paths stays on AVX2
    assert cpp_build.vector_isa(avx512=True) == "AVX512"
    assert "-DCPU_CAPABILITY_AVX512" in cpp_build.vector_flags(avx512=True)
    monkeypatch.setattr(torch.backends.cpu, "get_cpu_capability", lambda: "AVX2")
    assert cpp_build.vector_isa(avx512=True) == "AVX2"  # an AVX2-only CPU, or ATEN_CPU_CAPABILITY
    monkeypatch.setattr(cpp_build.platform, "machine", lambda: "aarch64")
    assert cpp_build.vector_flags(avx512=True) == ["-DCPU_CAPABILITY=DEFAULT"]


def test_failure_reason_names_the_compiler_error_not_ninja():
    err = RuntimeError(
        "Error building extension 'gmm':\n[1/2] c++ -c gmm.cpp\nFAILED: gmm.o\n"
        "gmm.cpp:98:50: error: no matching function for call to 'vec_reduce_all'\n"
        "ninja: build stopped: subcommand failed."
    )
    reason = cpp_build.failure_reason(err)
    assert reason.startswith("RuntimeError: gmm.cpp:98:50: error: no matching function")
    assert cpp_build.failure_reason(OSError("no compiler\nat all")) == "OSError: at all"


@pytest.mark.slow
@pytest.mark.skipif(shutil.which("c++") is None, reason="needs a C++ compiler")
@pytest.mark.parametrize("isa", ["AVX512", "DEFAULT"])
def test_gmm_kernels_compile_for_every_isa(isa, monkeypatch):
    """The AVX-512 build can only run on an AVX-512 CPU, but it compiles anywhere: an AVX2-only
    development machine must still catch an intrinsic or ATen call that only AVX2 accepts."""
    from torch.utils.cpp_extension import include_paths

    monkeypatch.setattr(cpp_build.platform, "machine", lambda: "x86_64")
    monkeypatch.setattr(torch.backends.cpu, "get_cpu_capability", lambda: isa)
    flags = cpp_build.vector_flags(avx512=True)
    includes = [f"-I{p}" for p in [*include_paths(), sysconfig.get_paths()["include"]]]
    cmd = ["c++", "-std=c++20", "-fsyntax-only", "-fopenmp", *flags, *includes]
    cmd += ["-DTORCH_EXTENSION_NAME=gmm", "-DTORCH_API_INCLUDE_EXTENSION_H", str(GMM_SOURCE)]
    done = subprocess.run(cmd, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-3000:]
