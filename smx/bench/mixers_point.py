"""One point of ``smx bench mixers``, run in its own process (spec on stdin, JSON on stdout)."""

from smx.bench.mixers import main_point

if __name__ == "__main__":
    main_point()
