"""Python helpers shared by rai4eo's tools and tests; each module documents itself.

Among them:
safetensors_io  -- read and write safetensors files (numpy or torch), no extra package
vit_reference   -- a PyTorch DINO v1 ViT with DINO's key names and feature recipes
"""
