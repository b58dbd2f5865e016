"""Where the network looks, and whether the maps mean anything: the saliency-method registry
(one module per method, Captum underneath), the faithfulness metrics (deletion/insertion, model
randomisation) and the figures.
"""
