"""`skuai bench`: the performance harness (SPEC section 8). Each scenario measures one thing in
one run on one machine and returns plain numbers; the CLI prints them and writes JSON."""
