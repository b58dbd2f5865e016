"""The small core every stage shares: params (params.yaml's typed models), errors (one clear
line per failure), outputs (atomic writes, readers of stage outputs), runtime (seed, device,
precision), the registries' machinery, EXIGO_* variables, the environment record.

Torch-free: the `params` stage checks params.yaml with this package and the registries alone.
"""
