"""Where runs are kept: the MLflow store, one run per pipeline run, the model registry,
lineage (git, DVC, environment), the detail tables, and `exigo push` for a team's remote.
"""
