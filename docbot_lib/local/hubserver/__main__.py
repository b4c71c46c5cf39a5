"""`python -m docbot_lib.local.hubserver`: the hub stand-in as a process (docbot_lib.local.hubserver.cli).

Layer: local (the hub stand-in's entry point): imports local.hubserver.cli.
"""

import sys

from docbot_lib.local.hubserver.cli import main

if __name__ == "__main__":
    sys.exit(main())
