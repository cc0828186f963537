"""Entry point of the frozen app: the same `pruneviz` CLI/GUI as the console script."""

import multiprocessing

from visualizer.cli import main

if __name__ == "__main__":
    multiprocessing.freeze_support()
    raise SystemExit(main())
