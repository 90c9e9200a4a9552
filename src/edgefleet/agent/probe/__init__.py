"""Probes on the device: measure a release-signed build's candidates in a scratch area, report figures."""
