"""Decode and auxiliary heads: each family is a torch module (`upernet.py`, ...) and its torch-free `*_config.py`
(see model/registry.py)."""
