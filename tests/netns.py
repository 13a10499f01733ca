"""A network namespace of the test's own, joined to the host by a veth pair: a process started
in it (``prefix``) reaches the host at ``host_ip`` only over that link. ``cut`` takes the
host's end of the link down (packets vanish: no reset, no error, a real partition); ``heal``
brings it back. Needs ``ip netns`` (root or CAP_NET_ADMIN): ``create_or_skip`` skips the test
with the reason when the machine does not allow it.
"""

from __future__ import annotations

import contextlib
import random
import shutil
import subprocess
import uuid

import pytest


def _ip(*args: str) -> None:
    subprocess.run(["ip", *args], check=True, capture_output=True, timeout=30)


class NetnsLink:
    def __init__(self) -> None:
        tag = uuid.uuid4().hex[:8]
        self.ns, self.host_if, self.ns_if = f"cv{tag}", f"cvh{tag}", f"cvn{tag}"
        a, b = random.randrange(64, 128), random.randrange(0, 256)
        self.host_ip, self.ns_ip = f"10.{a}.{b}.1", f"10.{a}.{b}.2"

    @property
    def prefix(self) -> list[str]:
        """The command prefix that runs a process inside the namespace."""
        return ["ip", "netns", "exec", self.ns]

    def create(self) -> None:
        try:
            _ip("netns", "add", self.ns)
            _ip("link", "add", self.host_if, "type", "veth", "peer", "name", self.ns_if)
            _ip("link", "set", self.ns_if, "netns", self.ns)
            _ip("addr", "add", f"{self.host_ip}/30", "dev", self.host_if)
            _ip("link", "set", self.host_if, "up")
            _ip("-n", self.ns, "addr", "add", f"{self.ns_ip}/30", "dev", self.ns_if)
            _ip("-n", self.ns, "link", "set", self.ns_if, "up")
            _ip("-n", self.ns, "link", "set", "lo", "up")
        except BaseException:
            self.close()
            raise

    def cut(self) -> None:
        _ip("link", "set", self.host_if, "down")

    def heal(self) -> None:
        _ip("link", "set", self.host_if, "up")

    def close(self) -> None:
        with contextlib.suppress(subprocess.SubprocessError, OSError):
            _ip("netns", "del", self.ns)  # takes its end of the pair, and so the pair, along
        with contextlib.suppress(subprocess.SubprocessError, OSError):
            _ip("link", "del", self.host_if)


def create_or_skip() -> NetnsLink:
    if shutil.which("ip") is None:
        pytest.skip("no `ip` command: the network-namespace partition test needs iproute2")
    link = NetnsLink()
    try:
        link.create()
    except subprocess.CalledProcessError as exc:
        reason = exc.stderr.decode(errors="replace").strip() if exc.stderr else str(exc)
        pytest.skip(f"`ip netns` is not permitted here ({reason})")
    return link
