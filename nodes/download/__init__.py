"""The Download Model node (``node``): the hub's files (``catalogue``, ``hub``), their bytes (``transfer``), their
checks (``integrity``) and the progress shown while they come (``progress``)."""
