"""Parameter sweeps: a grid of runs on a local pool or a Dask cluster, with statistics."""
