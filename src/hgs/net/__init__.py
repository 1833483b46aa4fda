"""Adapters to the network: SSH to the hosts, ping probes, Wake-on-LAN, mail, notifications, names."""
