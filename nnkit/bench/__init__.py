"""Measuring, kept apart from training: the benchmark workloads, the timings behind
``nnkit bench`` and the PyTorch/JAX peers they are compared with.

- ``workloads``: the named, seeded workloads (``WORKLOADS``, ``QUICK``, ``Workload``);
- ``runner``: timing helpers and ``run_bench``, which measures every (workload, backend,
  dtype) and returns the rows as a dict for JSON;
- ``report``: the ``nnkit bench`` command, its table and its JSON;
- ``peers``: the same workloads in PyTorch and JAX (optional packages, imported on use).

Importing this package imports no optional package.
"""
from . import peers
from .report import add_bench_parser, cmd_bench, format_table
from .runner import (allocated_per_step, epoch_time, execution_path, first_call_time,
                     gemm_call, gemm_peak, gemm_time, interleaved_times, parity, run_bench,
                     step_setup, sweep_rows, time_per_call)
from .workloads import QUICK, WORKLOADS, Workload

__all__ = ["QUICK", "WORKLOADS", "Workload", "peers", "add_bench_parser", "cmd_bench",
           "format_table", "run_bench", "sweep_rows", "step_setup", "time_per_call",
           "first_call_time", "allocated_per_step", "epoch_time", "parity", "gemm_peak",
           "gemm_time", "gemm_call", "interleaved_times", "execution_path"]
