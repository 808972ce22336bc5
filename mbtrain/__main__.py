"""``python -m mbtrain``: the same console script as ``mbtrain``."""
import sys

from .cli import main

sys.exit(main())
