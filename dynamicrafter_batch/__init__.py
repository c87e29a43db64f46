"""The API batch client (``dynamicrafter-batch``) and the engine of ``scripts/run``: standard library, aiohttp and
Pillow only (Ray too for a batch on a cluster, imported only then), never the pack's torch packages, so
``pip install .[batch]`` installs it alone."""
