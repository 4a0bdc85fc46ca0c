"""Data for SD-MAE: PCam HDF5, class folders (NCT-CRC-HE, ImageNet-100), embedded tiles."""
