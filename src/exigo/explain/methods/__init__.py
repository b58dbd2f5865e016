"""The saliency methods `saliency.methods` can list: one module per method, each a
`exigo.explain.method.SaliencyMethod` registered in `exigo.core.registry.SALIENCY_METHODS`."""
