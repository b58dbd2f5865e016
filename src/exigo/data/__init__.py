"""Images in: the dataset registry (one module per source), download and verification, file
formats, and the train/val/test splits the stages load as in-memory tensors.
"""
