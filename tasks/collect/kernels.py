"""Which arithmetic kernels a collection runs on: the processor's own (native), or one set that
every x86-64 processor with AVX2 has (portable).

Collection is seeded, so on one kind of processor it repeats bit for bit; on another it does
not, because torch, its BLAS (MKL) and numpy each pick kernels for the processor they find
(AVX-512 on one, AVX2 on the next), the kernels sum in other orders, and 400,000 steps of
training carry a difference in the last bit into other episodes (docs/data/README.md, "Three
collections"). Portable kernels pin each library's choice, through the environment variables
the libraries read when they load:

- torch's own kernels at AVX2 (ATEN_CPU_CAPABILITY);
- MKL's conditional numerical reproducibility in its COMPATIBLE branch, STRICT: the one branch
  MKL keeps bit for bit on Intel and on other vendors' processors (its other branches are
  for Intel processors only);
- oneDNN at AVX2 at most (ONEDNN_MAX_CPU_ISA);
- numpy without its AVX-512 loops (NPY_DISABLE_CPU_FEATURES), so that its transcendental
  functions come from the same code as on an AVX2 processor;
- numpy's and scipy's BLAS (OpenBLAS) at its Haswell kernels (OPENBLAS_CORETYPE): AVX2 and
  FMA, what it runs on AVX2 processors (its Zen target is the same code). On an AVX-512
  processor it picks SkylakeX kernels otherwise, whose products differ in the last bits;
  DroneRun's simulator multiplies through it (docs/data/README.md, "On an AVX-512
  processor").

Variables read at load time cannot be changed in a running process, so a portable collection
runs in a child process started with them (bench.cli.data). Native stays the default: the
study's transitions were made with it (docs/study/data.json).
"""

from __future__ import annotations

import os

#: the variables portable kernels set, and their values; numpy's are the machine's own
#: AVX-512 features (portable_environment)
PINNED = {"ATEN_CPU_CAPABILITY": "avx2", "MKL_CBWR": "COMPATIBLE,STRICT",
          "ONEDNN_MAX_CPU_ISA": "AVX2", "OPENBLAS_CORETYPE": "Haswell"}
KERNELS = ("native", "portable")


class KernelsError(RuntimeError):
    """Portable kernels cannot run here (a processor without AVX2)."""


def numpy_cpu_features() -> dict[str, bool]:
    try:
        from numpy._core._multiarray_umath import __cpu_features__
    except ImportError:  # numpy < 2
        from numpy.core._multiarray_umath import __cpu_features__
    return __cpu_features__


def portable_environment(environ: dict[str, str] | None = None) -> dict[str, str]:
    """`environ` (os.environ by default) with the portable kernels' variables set over it."""
    features = numpy_cpu_features()
    if not features.get("AVX2") or not features.get("FMA3"):
        raise KernelsError("--kernels portable pins every library to AVX2, which this "
                           "processor lacks; collect with --kernels native")
    avx512 = [name for name, on in features.items() if on and name.startswith("AVX512")]
    env = dict(os.environ if environ is None else environ) | PINNED
    env["NPY_DISABLE_CPU_FEATURES"] = " ".join(avx512)
    return env


def numpy_dispatches_avx512() -> bool:
    """Whether numpy may run an AVX-512 loop. Every AVX-512 target numpy dispatches to (AVX512F
    and the AVX512_* groups: SKX, CLX, ICL, SPR...) needs AVX512F; the finer flags (AVX512VL,
    AVX512BW, ...) are no targets of their own, and numpy keeps reporting them when
    NPY_DISABLE_CPU_FEATURES has turned AVX512F off (seen on an AMD EPYC with AVX-512)."""
    features = numpy_cpu_features()
    return any(on for name, on in features.items()
               if name == "AVX512F" or name.startswith("AVX512_"))


def kernels_in_use() -> str:
    """"portable" when this process runs on the pinned kernels (the variables were set before
    torch and numpy loaded, and numpy dispatches no AVX-512 loop), else "native"."""
    if any(os.environ.get(name) != value for name, value in PINNED.items()):
        return "native"
    if numpy_dispatches_avx512():
        return "native"
    import torch

    return "portable" if torch.backends.cpu.get_cpu_capability() == "AVX2" else "native"
