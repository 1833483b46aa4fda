"""The flows: plain orchestration over small interfaces (UPS, hypervisor, prober, clock)."""
