"""What every node of the pack shares: its menu category."""

CATEGORY = "DynamiCrafter"
"""The node menu's folder of every pack node (features add a sub-folder, e.g. ``DynamiCrafter/long video``)."""
