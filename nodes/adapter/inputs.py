"""What the pack's nodes share: their menu category and the ranges of the inputs several nodes take."""

CATEGORY = "DynamiCrafter"
"""The node menu's folder of every pack node (features add a sub-folder, e.g. ``DynamiCrafter/long video``)."""
SEED_MAX = 0xFFFFFFFFFFFFFFFF
"""The largest seed (the host's KSampler range): the sampler, the analytic noise and the training nodes."""
FRAMES_MAX = 64
"""Frames one video may have: the conditioning nodes, Pin Frames and the camera paths."""
DECODE_FRAMES_MAX = 1024
"""Frames one decode may take: a whole long video (ToonCrafter Decode)."""
