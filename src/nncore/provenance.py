"""Where a result came from: the command, the package versions, the BLAS and the machine.

The study records a :class:`Provenance` in each report, so that a reader can tell what ran
and on what.
"""

import dataclasses
import datetime
import importlib.metadata
import os
import platform

from . import __version__

__all__ = ["Provenance", "blas_description", "collect", "machine", "package_versions",
           "python_command"]

#: Packages whose versions a report names, after nncore and Python.
PACKAGES = ("numpy", "scipy", "matplotlib", "joblib", "threadpoolctl", "tqdm")


@dataclasses.dataclass(frozen=True)
class Provenance:
    """The command that made a result, when, and with what.

    Attributes
    ----------
    command : str
        The command line, as a reader would type it again.
    versions : dict
        Name -> version text (:func:`package_versions`).
    machine : dict
        CPU, cores, memory, system, BLAS (:func:`machine`).
    written : datetime.datetime
        When it was collected, in UTC.
    """

    command: str
    versions: dict
    machine: dict
    written: datetime.datetime


def collect(command):
    """The :class:`Provenance` of ``command`` on this machine, now."""
    return Provenance(command=command, versions=package_versions(), machine=machine(),
                      written=datetime.datetime.now(datetime.timezone.utc))


def python_command(data, out, quick, seed, n_jobs):
    """The ``python -c`` line that repeats a :func:`nncore.experiments.run_study` call."""
    return (f"python -c \"import nncore.experiments as e; e.run_study(data={data!r}, "
            f"out={os.fspath(out)!r}, quick={bool(quick)}, seed={int(seed)}, "
            f"n_jobs={int(n_jobs)})\"")


def package_versions():
    """nncore's, Python's and :data:`PACKAGES`' versions, and which build of the kernels."""
    versions = {"nncore": __version__, "Python": platform.python_version()}
    for package in PACKAGES:
        try:
            versions[package] = importlib.metadata.version(package)
        except importlib.metadata.PackageNotFoundError:
            versions[package] = "not installed"
    try:
        from . import _kernels

        versions["nncore kernels"] = ("debug build (bounds checks on)"
                                      if getattr(_kernels, "DEBUG_BUILD", False)
                                      else "optimised build")
    except ImportError:  # pragma: no cover - the kernels are needed to get here
        pass
    return versions


def blas_description():
    """The BLAS libraries loaded in this process (threadpoolctl's view), as one line."""
    try:
        from threadpoolctl import threadpool_info
    except ImportError:
        return "unknown (threadpoolctl not installed)"
    libraries = [f"{info.get('internal_api')} {info.get('version')} "
                 f"({info.get('architecture') or '?'}) from {info.get('prefix')}"
                 for info in threadpool_info() if info.get("user_api") == "blas"]
    return "; ".join(sorted(set(libraries))) or "none found"


def machine():
    """CPU model, core count, memory, operating system and BLAS, as texts."""
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as handle:
            for line in handle:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    memory = "unknown"
    try:
        memory = f"{os.sysconf('SC_PAGE_SIZE') * os.sysconf('SC_PHYS_PAGES') / 2**30:.0f} GiB"
    except (ValueError, OSError, AttributeError):
        pass
    return {"CPU": cpu, "cores": str(os.cpu_count()), "memory": memory,
            "system": platform.platform(), "BLAS": blas_description()}
