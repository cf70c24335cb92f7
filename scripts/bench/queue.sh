bench_queue() { note "NOT RUN: queue section not written yet"; }
