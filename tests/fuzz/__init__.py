"""Fuzz targets (`make fuzz`): generated programs through the verifier and the C core."""
