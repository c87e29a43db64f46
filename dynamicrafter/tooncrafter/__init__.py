"""ToonCrafter's dual-reference VAE: its network (``vae``), its config read from a state dict (``config``) and the
chunked decode of a video (``decode``)."""
