"""The benchmark workloads: defined once in ``nnkit.bench.workloads`` (so the installed
``nnkit bench`` has them) and shared here with the pytest-benchmark suites."""
from nnkit.bench.workloads import QUICK, WORKLOADS, Workload  # noqa: F401 (re-exported)

__all__ = ["QUICK", "WORKLOADS", "Workload"]
