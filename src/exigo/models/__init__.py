"""The networks: the model registry (one module per architecture), checkpoints, the training
loop, data-parallel training (DDP), and DVCLive's per-epoch logging.
"""
