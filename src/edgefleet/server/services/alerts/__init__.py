"""Alerts: webhooks told about rollouts, devices, security events and disabled artifacts.

``rules`` decides (pure, with an explicit ``now``); ``protocol.webhooks`` signs bodies; ``outbox`` writes
events and their deliveries in the caller's transaction; ``webhooks`` manages the endpoints;
``dispatcher`` sends what is due; ``scan`` finds silent devices and stalled rollouts.
"""
