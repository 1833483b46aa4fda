"""The simulated site: a XenServer pool and a UPS, for tests, benchmarks and `hgs demo`."""
