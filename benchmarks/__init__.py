"""The product's benchmarks: accuracy on UCSD Ped2, CPU and GPU speed, deployment parity, data loading.

Run from the repository's root as ``python -m benchmarks.<name>`` (``ped2_accuracy``, ``speed``,
``gpu_speed``, ``gpu_paper_run``, ``deploy_parity_throughput``, ``data_loading``, ``device_clips``,
``som_speed``); each writes a results file into ``benchmarks/results/`` with
:func:`benchmarks.common.record`, and ``python -m benchmarks.make_table`` regenerates the READMEs'
tables from them. One-off investigations live in ``research/``.
"""
