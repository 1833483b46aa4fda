"""Hypervisor backends: each maps its own API onto the port the flows speak (hgs.flows.ports)."""
