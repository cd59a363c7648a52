"""Clean-room PyTorch implementation of PartCrafter (arXiv 2506.05573).

Importing this package is cheap and needs no torch: the network modules
(dit, scheduler, denoise, image_encoder, vae, geometry) import torch themselves.
"""
