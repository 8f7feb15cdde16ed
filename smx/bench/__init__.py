"""Speed and memory benchmarks (each point measured in a fresh process)."""
