"""Putting hgs in place on this box: the UPS daemons' hooks, their wiring, sudoers."""
