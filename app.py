"""HumanVLM Studio entry point.

With no arguments this serves the web UI (what Hugging Face Spaces runs); subcommands
caption, queue, export, train and evaluate. `python app.py --help` lists them.
"""

import sys

from app.cli import main

if __name__ == "__main__":
    sys.exit(main())
