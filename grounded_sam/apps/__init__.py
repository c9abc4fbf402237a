"""What users run: the ``grounded-sam`` command (``cli``), ``predict`` into a folder, the review page."""
