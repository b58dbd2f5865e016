"""The learned features in 2-D: the projection registry (one module per method), the map's
quality numbers, and TensorBoard's projector and scalars.
"""
