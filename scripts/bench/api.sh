bench_api() { note "NOT RUN: api section not written yet"; }
