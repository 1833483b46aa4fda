"""Wake-on-LAN: a magic packet to the host's configured broadcast address and port.

Only the address in the config is ever used: hgs never falls back to 255.255.255.255 on its
own. A dry run logs the packet it would send.
"""

from hgs.errors import WakeError


class Waker:
    def __init__(self, log):
        self.log = log
        self.sent = 0

    def wake(self, host):
        """Sends one magic packet for HostSettings ``host``; raises WakeError."""
        import wakeonlan

        if not host.mac:
            raise WakeError(f"{host.name}: no MAC address configured (HOSTS[...]['mac']): cannot wake it")
        try:
            if hasattr(wakeonlan, "wake"):
                wakeonlan.wake(host.mac, host=host.wol_broadcast, port=host.wol_port)
            else:  # wakeonlan < 4
                wakeonlan.send_magic_packet(host.mac, ip_address=host.wol_broadcast, port=host.wol_port)
        except (OSError, ValueError) as err:
            raise WakeError(f"{host.name}: cannot send Wake-on-LAN to {host.wol_broadcast}:{host.wol_port}: {err}") from None
        self.sent += 1
        self.log.info("%s: Wake-on-LAN sent for %s to %s:%d", host.name, host.mac, host.wol_broadcast, host.wol_port)


class DryRunWaker(Waker):
    def __init__(self, log, woken):
        super().__init__(log)
        self.woken = woken  # shared with the dry-run prober: a woken host counts as up

    def wake(self, host):
        self.woken.add(host.name)
        self.log.info("dry run: would send Wake-on-LAN for %s (%s) to %s:%d", host.name, host.mac,
                      host.wol_broadcast, host.wol_port)
