"""`skuai bench`: the performance harness (docs/benchmarks.md). Each scenario measures one thing in
one run on one machine and returns plain numbers; the CLI prints them and writes JSON."""
