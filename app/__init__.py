"""Web UI and command line: wires events to functions from model/, annotate/ and train/."""
