"""The projections `embed.method` can name: one module per method, each registered in
`exigo.core.registry.PROJECTIONS` with its settings and a function (features (N, D), settings,
seed) -> (N, 2) float32, deterministic for a seed."""
