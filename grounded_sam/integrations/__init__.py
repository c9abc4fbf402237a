"""grounded-sam inside other tools: autodistill (``grounded_sam.autodistill``)."""
