bench_memory() { note "NOT RUN: memory section not written yet"; }
