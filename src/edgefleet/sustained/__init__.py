"""Sustained load, shared by the probe worker on devices (agent) and the class emulation on the build host
(optimize), which may not import each other: reading the host's thermal state from ``/sys`` (``thermal``,
read-only IO) and the drift arithmetic over a run (``drift``, pure). It imports only ``protocol``, whose
``SustainedFigures`` both roles report.
"""
