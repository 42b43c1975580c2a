"""The review queue: its database, import from HumanCaption datasets, export, Label Studio.

`annotate.store.Store` is the API; `annotate.cli` is a thin command line over it.
Nothing here imports torch or touches the network at import time.
"""
