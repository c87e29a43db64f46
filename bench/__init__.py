"""Benchmarks of the DynamiCrafter UNet (and ComfyUI's VAE decode): time, peak memory, TFLOP/s.

Entry scripts run from the repository root as ``python -m bench.<script>``; see docs/performance.md.
Nothing here asserts on timings: the scripts print figures and write JSON under bench/results/.
"""
