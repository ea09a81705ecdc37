"""One file per workload; each exposes CONTENDERS: name -> run(params, workdir) -> result dict.

A run function is called in a fresh child process by benchmarks.child and returns plain JSON data.
"""
