"""sightd-export: OpenCLIP-family checkpoints to sightd bundles."""
