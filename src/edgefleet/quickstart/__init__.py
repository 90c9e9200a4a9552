"""The quickstart: the whole main job on one machine (``edgefleet demo``)."""
