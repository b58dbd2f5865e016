"""The datasets `data.name` can name: one module per dataset, each registered in
`exigo.core.registry.DATASETS` with a load function that returns a `RawDataset`."""
