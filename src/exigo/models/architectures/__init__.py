"""The models `model.name` can name: one module per architecture, each registered in
`exigo.core.registry.MODELS` with its settings and a build function that returns a
`exigo.models.layers.Classifier`."""
