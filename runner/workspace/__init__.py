"""A run's workspace as part of its checkpoint (issue 11; DESIGN "The turn's world").

- ``manifest``: path -> entry, the path rules, the fold of a run's workspace events
- ``scan``: a directory into a manifest, hashing only what may have changed
- ``blobs``: where contents go (the run's Redis hash, or an fsspec URL)
- ``tree``: a manifest written to a directory (restore, pull), never outside it
- ``checkpoint``: the worker's restore and per-step checkpoint
- ``diffing``: a run's changes as a unified diff
"""
