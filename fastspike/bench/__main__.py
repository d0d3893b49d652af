"""``python -m fastspike.bench``: see docs/bench.md."""
from .cli import main

if __name__ == "__main__":
    main()
