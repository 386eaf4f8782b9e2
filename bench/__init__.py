"""depcache's benchmarks: run each as a module from the checkout, e.g. ``python -m
bench.bench_core`` (see bench/README.md); ``_harness`` is what they share."""
