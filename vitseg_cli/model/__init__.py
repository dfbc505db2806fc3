"""ViT-Adapter model: ViT, deformable attention, adapter modules, decode heads and the segmentor that joins them."""
