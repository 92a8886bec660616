"""Network namespace mode (`raftcache-chaos --net netns`): every node in its own network
namespace, so partitions and latency cut or slow EVERY port (gRPC, Redis, memcached,
follower -> leader forwarding and Raft), not just the proxied Raft links of netproxy.py.

Layout of slot k (k = 0..9, one per concurrent run; addresses 10.77.k.0/24):

    root namespace: bridge rcc<k>-br with 10.77.k.1/24 (the runner's clients and samplers
                    run here), one veth rcc<k>-n<i> per node enslaved to it
    namespace rcc<k>-n<i>: the veth's peer, renamed eth0, with 10.77.k.(10+i)/24, and lo

Faults are made INSIDE the namespaces, so the root namespace's firewall is never edited
beyond one ACCEPT rule (see below):
- cut (partition, isolation): nftables table `inet rcchaos` in the receiving node's
  namespace drops every packet from the other node's address (input hook), silently, as a
  real partition does: no RST, no ICMP, so open connections hang until their timeouts.
  A symmetric cut drops on both sides; a one-way cut src -> dst only at dst (TCP then
  cannot complete a handshake either way, yet dst's packets still reach src).
- latency: `tc qdisc replace dev eth0 root netem delay D J` in each namespace, i.e. on
  every packet a node sends (to peers and to clients alike), when the kernel has netem
  (netem_unavailable(); this machine's 6.18 Firecracker kernel has no sch_netem).
- loss: `numgen random mod 1000 < P*10 drop` in each namespace's input chain (nft, so it
  needs no netem), on every packet a node receives.
- bridge flapping: `ip link set rcc<k>-n<i> down` / `up` on every node's bridge port,
  so every node loses every peer and every client at once, on and off.
The client (the host, 10.77.k.1) is never cut by a partition: like Jepsen's control
node it reaches every node, so it sees what a cut-off node answers.

Root's firewall: with br_netfilter loaded (net.bridge.bridge-nf-call-iptables=1, as
Docker sets it up) bridged frames go through iptables' FORWARD chain, whose policy Docker
sets to DROP; setup inserts `-i rcc<k>-br -o rcc<k>-br -j ACCEPT` tagged with the comment
`raftcache-chaos-rcc<k>` and close() deletes it.

Cleanup is idempotent and crash-proof: a run holds an flock on /run/raftcache-chaos/
slot-<k>.lock for its lifetime; setup of slot k first removes whatever a dead run of
slot k left (namespaces, links, the bridge, the FORWARD rule), and
`python -m raftcache.chaos.netns cleanup` removes the leftovers of every slot nobody
holds. Needs root (CAP_NET_ADMIN + CAP_SYS_ADMIN), `ip` and `tc` (iproute2), `nft`
(nftables) and `iptables`; `unavailable()` says why not, for a clear skip or refusal.
"""

from __future__ import annotations

import argparse
import fcntl
import os
import shutil
import signal
import subprocess
import sys
import threading
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import IO, Protocol

from raftcache.chaos.netproxy import Delay

PREFIX = "rcc"
SLOTS = range(10)
LOCK_DIR = Path("/run/raftcache-chaos")
TABLE = "rcchaos"
TOOLS = ("ip", "tc", "nft", "iptables")
# Fixed ports: each namespace has its own port space, so no free_port() races.
CLIENT_PORT, RAFT_PORT, REDIS_PORT, MEMCACHED_PORT, METRICS_PORT = 6380, 7380, 6379, 11211, 9100


class Network(Protocol):
    """What the nemesis needs of a network: netproxy.NetProxy or NetnsNetwork."""

    def isolate(self, name: str) -> None: ...
    def partition(self, *groups: Iterable[str]) -> None: ...
    def heal(self) -> None: ...
    def set_delay(self, delay: Delay | None) -> None: ...


class NetnsError(RuntimeError):
    """A command that sets up or changes the namespaces failed."""


def unavailable() -> str | None:
    """Why namespaces cannot be used here (None: they can): not root, a tool missing, or the
    kernel refusing `ip netns add` (e.g. an unprivileged container)."""
    if os.geteuid() != 0:
        return "network namespaces need root (CAP_NET_ADMIN, CAP_SYS_ADMIN); use --net proxy"
    missing = [t for t in TOOLS if shutil.which(t) is None]
    if missing:
        return (
            f"{', '.join(missing)} not installed (packages iproute2, nftables, iptables; "
            ".ci/run installs them)"
        )
    probe = f"{PREFIX}probe{os.getpid() % 100000}"
    try:
        done = subprocess.run(["ip", "netns", "add", probe], capture_output=True, text=True)
        if done.returncode != 0:
            return f"`ip netns add` fails here: {done.stderr.strip()}"
        return None
    finally:
        subprocess.run(["ip", "netns", "del", probe], capture_output=True)


def netem_unavailable() -> str | None:
    """Why `tc ... netem` cannot be used here (None: it can). Firecracker-style kernels are
    often built without CONFIG_NET_SCH_NETEM; then latency faults are refused in netns
    mode (packet loss is made with nft instead and needs no netem)."""
    probe = f"{PREFIX}netem{os.getpid() % 100000}"
    try:
        if subprocess.run(["ip", "netns", "add", probe], capture_output=True).returncode != 0:
            return "cannot create a probe namespace"
        done = subprocess.run(
            ["tc", "-n", probe, "qdisc", "add", "dev", "lo", "root", "netem", "delay", "1ms"],
            capture_output=True,
            text=True,
        )
        if done.returncode != 0:
            return f"the kernel has no netem qdisc (CONFIG_NET_SCH_NETEM): {done.stderr.strip()}"
        return None
    finally:
        subprocess.run(["ip", "netns", "del", probe], capture_output=True)


def _run(*argv: str, input_text: str | None = None, check: bool = True) -> str:
    done = subprocess.run(list(argv), input=input_text, capture_output=True, text=True)
    if check and done.returncode != 0:
        raise NetnsError(f"{' '.join(argv)}: {done.stderr.strip() or done.returncode}")
    return done.stdout


def _lock(slot: int) -> IO[str] | None:
    LOCK_DIR.mkdir(parents=True, exist_ok=True)
    f = (LOCK_DIR / f"slot-{slot}.lock").open("w")
    try:
        fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        f.close()
        return None
    f.write(f"{os.getpid()}\n")
    f.flush()
    return f


def remove_leftovers(slot: int) -> list[str]:
    """Delete every namespace, link and FORWARD rule of slot `slot` (the caller holds its
    lock, or knows nobody does); returns what was removed."""
    tag = f"{PREFIX}{slot}-"
    removed = []
    for line in _run("ip", "netns", "list", check=False).splitlines():
        name = line.split()[0] if line.split() else ""
        if name.startswith(tag):
            # A crashed run's nodes would outlive their namespace's name: kill them first.
            for pid in _run("ip", "netns", "pids", name, check=False).split():
                try:
                    os.kill(int(pid), signal.SIGKILL)
                    removed.append(f"process {pid} in {name}")
                except (ValueError, ProcessLookupError):
                    pass
            _run("ip", "netns", "del", name, check=False)
            removed.append(f"netns {name}")
    for line in _run("ip", "-o", "link", "show", check=False).splitlines():
        parts = line.split(":", 2)
        name = parts[1].strip().split("@")[0] if len(parts) > 2 else ""
        if name.startswith(tag):
            _run("ip", "link", "del", name, check=False)
            removed.append(f"link {name}")
    rule = _forward_accept(slot)
    while subprocess.run(["iptables", "-D", *rule], capture_output=True).returncode == 0:
        removed.append(f"iptables FORWARD rule for {tag}br")
    return removed


def _forward_rule(slot: int) -> list[str]:
    bridge = f"{PREFIX}{slot}-br"
    comment = f"raftcache-chaos-{PREFIX}{slot}"
    return ["FORWARD", "-i", bridge, "-o", bridge, "-m", "comment", "--comment", comment]


def _forward_accept(slot: int) -> list[str]:
    return [*_forward_rule(slot), "-j", "ACCEPT"]


class NetnsNetwork:
    """Namespaces, veths and the bridge of one run; `setup()` makes them, `close()` removes
    them. Node names are the LocalCluster's node ids (n1, n2, ...)."""

    def __init__(self, names: Sequence[str]) -> None:
        self.names = list(names)
        self._lock_file: IO[str] | None = None
        self.slot = -1
        for slot in SLOTS:
            lock = _lock(slot)
            if lock is not None:
                self._lock_file, self.slot = lock, slot
                break
        else:
            raise NetnsError(f"all {len(SLOTS)} namespace slots are in use ({LOCK_DIR})")
        self._cuts: set[tuple[str, str]] = set()  # (from, to): packets from -> to dropped
        self._loss_pct = 0.0
        self._mutex = threading.Lock()
        self.ready = False

    # -- naming ---------------------------------------------------------------------

    @property
    def bridge(self) -> str:
        return f"{PREFIX}{self.slot}-br"

    @property
    def host_address(self) -> str:
        return f"10.77.{self.slot}.1"

    def namespace(self, name: str) -> str:
        return f"{PREFIX}{self.slot}-{name}"

    def address(self, name: str) -> str:
        return f"10.77.{self.slot}.{10 + self.names.index(name) + 1}"

    def exec_prefix(self, name: str) -> list[str]:
        """argv prefix running a command in node `name`'s namespace (`ip netns exec`
        execs, so the pid Popen returns is the node's: signals reach it)."""
        return ["ip", "netns", "exec", self.namespace(name)]

    def describe(self) -> str:
        addrs = ", ".join(f"{n} {self.address(n)}" for n in self.names)
        return f"netns (bridge {self.bridge} {self.host_address}/24; {addrs})"

    # -- lifecycle --------------------------------------------------------------------

    def setup(self) -> NetnsNetwork:
        """Create the bridge, the namespaces and the veths (after removing leftovers)."""
        remove_leftovers(self.slot)
        try:
            _run("ip", "link", "add", self.bridge, "type", "bridge")
            _run("ip", "addr", "add", f"{self.host_address}/24", "dev", self.bridge)
            _run("ip", "link", "set", self.bridge, "up")
            _run("iptables", "-I", *_forward_accept(self.slot))
            for name in self.names:
                ns = host_if = self.namespace(name)
                _run("ip", "netns", "add", ns)
                _run("ip", "link", "add", host_if, "type", "veth", "peer", "name", "eth0",
                     "netns", ns)  # fmt: skip
                _run("ip", "link", "set", host_if, "master", self.bridge, "up")
                _run("ip", "-n", ns, "addr", "add", f"{self.address(name)}/24", "dev", "eth0")
                _run("ip", "-n", ns, "link", "set", "eth0", "up")
                _run("ip", "-n", ns, "link", "set", "lo", "up")
                chain = f"add chain inet {TABLE} input {{ type filter hook input priority 0; }}"
                self._nft(name, f"add table inet {TABLE}\n{chain}\n")
        except BaseException:
            remove_leftovers(self.slot)
            raise
        self.ready = True
        return self

    def close(self) -> None:
        """Remove everything this run made and release the slot (idempotent)."""
        if self._lock_file is None:
            return
        remove_leftovers(self.slot)
        self.ready = False
        self._lock_file.close()
        self._lock_file = None

    # -- faults -----------------------------------------------------------------------

    def _nft(self, name: str, script: str) -> None:
        _run(*self.exec_prefix(name), "nft", "-f", "-", input_text=script)

    def _apply_cuts(self) -> None:
        for name in self.names:
            sources = sorted(self.address(a) for a, b in self._cuts if b == name)
            script = f"flush chain inet {TABLE} input\n"
            if sources:
                script += f"add rule inet {TABLE} input ip saddr {{ {', '.join(sources)} }} drop\n"
            if self._loss_pct > 0:  # nft, not netem: works on kernels without sch_netem
                script += (
                    f"add rule inet {TABLE} input iifname eth0 "
                    f"numgen random mod 1000 < {round(self._loss_pct * 10)} drop\n"
                )
            self._nft(name, script)

    def cut(self, pairs: Iterable[tuple[str, str]]) -> None:
        """Drop every packet from a to b for each (a, b), on top of the cuts in force."""
        with self._mutex:
            self._cuts.update(pairs)
            self._apply_cuts()

    def partition(self, *groups: Iterable[str]) -> None:
        """Cut every node of one group from every node of the others, both ways."""
        sets = [set(g) for g in groups]
        pairs = [
            (a, b)
            for i, ga in enumerate(sets)
            for j, gb in enumerate(sets)
            if i != j
            for a in ga
            for b in gb
        ]
        self.cut(pairs)

    def isolate(self, name: str) -> None:
        """Cut `name` from every other node, both ways (clients still reach it)."""
        self.partition([name], [n for n in self.names if n != name])

    def cut_one_way(self, src: Iterable[str], dst: Iterable[str]) -> None:
        """Packets from every src node to every dst node are dropped; dst -> src still flow."""
        self.cut((a, b) for a in src for b in dst)

    def set_bridge(self, up: bool) -> None:
        """Every node's veth (its bridge port) down or up: each node loses every peer and
        every client at once. (The bridge device itself down stops node <-> node frames,
        but the host's own address on it still reached the nodes when tried.)"""
        for name in self.names:
            _run("ip", "link", "set", self.namespace(name), "up" if up else "down")

    def set_loss(self, loss_pct: float) -> None:
        """Drop this share (%) of the packets every node receives (nft numgen); 0 stops."""
        with self._mutex:
            self._loss_pct = loss_pct
            self._apply_cuts()

    def set_delay(self, delay: Delay | None) -> None:
        """netem delay (+ uniform jitter) on every node's eth0 egress; None removes it.
        Needs the kernel's sch_netem (netem_unavailable() says whether it is there)."""
        for name in self.names:
            ns = self.namespace(name)
            if delay is None:
                _run("tc", "-n", ns, "qdisc", "del", "dev", "eth0", "root", check=False)
                continue
            args = ["tc", "-n", ns, "qdisc", "replace", "dev", "eth0", "root", "netem"]
            args += ["delay", f"{delay.latency_s * 1000:.0f}ms"]
            if delay.jitter_s > 0:
                args.append(f"{delay.jitter_s * 1000:.0f}ms")  # uniform without a table
            _run(*args)

    def heal(self) -> None:
        """Every cut and the loss removed, every port up (netem stays: set_delay(None))."""
        if not self.ready:
            return
        with self._mutex:
            self._cuts.clear()
            self._loss_pct = 0.0
            self._apply_cuts()
        self.set_bridge(True)

    def cuts(self) -> list[tuple[str, str]]:
        with self._mutex:
            return sorted(self._cuts)


def cleanup_all() -> list[str]:
    """Remove the leftovers of every slot no live run holds."""
    removed = []
    for slot in SLOTS:
        lock = _lock(slot)
        if lock is None:
            continue
        try:
            removed += remove_leftovers(slot)
        finally:
            lock.close()
    return removed


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m raftcache.chaos.netns")
    parser.add_argument("cmd", choices=["cleanup", "check"])
    args = parser.parse_args(argv)
    if args.cmd == "check":
        reason = unavailable()
        print(reason or "network namespaces are available")
        return 0 if reason is None else 1
    for line in cleanup_all():
        print(f"removed {line}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
