#!/usr/bin/env python3
"""Failover time of rollcall leases against `etcdctl lock`, on this machine, in one run.

Two hosts contend for one lease; each "host" is an agent and a `rollcall lease run` (or an
`etcdctl lock`) whose command appends `start HOLDER NANOS` to a log. A round SIGKILLs the
holder's whole host (agent, lease run, command) and measures the time until the other
host's command has started (its own timestamp). The killed host is started again before the
next round. Prints p50/p99/max per system (docs/LEASES.md, Figures).

Usage: contrib/lease-failover.py [PATH-TO-rollcall]
Environment: RUNS=20, ETCD_RUNS=10, SYSTEMS=rollcall,rollcall-confirm,rollcall-quick,etcd (those to measure).
"""

import json
import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request

BIN = os.path.abspath(sys.argv[1] if len(sys.argv) > 1 else "target/debug/rollcall")
RUNS = int(os.environ.get("RUNS", "20"))
ETCD_RUNS = int(os.environ.get("ETCD_RUNS", "10"))
TOKEN = "failover-token-0123456789"
DIR = tempfile.mkdtemp(prefix="lease-failover-")
LOG = os.path.join(DIR, "starts.log")
# The command: one line with its holder and start time, then it idles; its pid is the
# group to kill (it execs sleep, and lease run starts it in its own process group).
COMMAND = ["sh", "-c", 'echo "start $0 $(date +%s%N) $$" >> "$1"; exec sleep 100000']


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def starts():
    try:
        with open(LOG) as f:
            return [line.split() for line in f if line.startswith("start ")]
    except FileNotFoundError:
        return []


def wait(condition, what, bound=60):
    deadline = time.time() + bound
    while time.time() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.01)
    sys.exit(f"timed out waiting for {what}")


def kill_all(pids, command_pid):
    for pid in pids:
        for kill in (os.killpg, os.kill):  # the group, when it leads one (etcdctl's session)
            try:
                kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
    try:
        os.killpg(command_pid, signal.SIGKILL)
    except ProcessLookupError:
        pass


def measure(start_host, runs, what):
    hosts = {name: start_host(name) for name in ("h1", "h2")}
    wait(starts, f"{what}: a first holder")
    times = []
    for _ in range(runs):
        last = starts()[-1]
        holder, command_pid = last[1], int(last[3])
        count = len(starts())
        killed = time.time_ns()
        kill_all([p.pid for p in hosts[holder]], command_pid)
        line = wait(lambda: len(starts()) > count and starts()[-1], f"{what}: a new holder")
        assert line[1] != holder, f"{holder} started again: {line}"
        times.append((int(line[2]) - killed) / 1e9)
        for process in hosts[holder]:
            process.wait()
        hosts[holder] = start_host(holder)
    for processes in hosts.values():
        for process in processes:
            process.kill()
    return times


def rollcall(extra=""):
    key = os.path.join(DIR, "rollcall.key")
    with open(key, "w") as f:
        f.write(subprocess.check_output([BIN, "keygen"]).decode())
    config = os.path.join(DIR, "monitor.toml")
    with open(config, "w") as f:
        f.write(f'[api]\ntoken = "{TOKEN}"\n{extra}')
    monitor = subprocess.Popen(
        [BIN, "monitor", "--udp", "127.0.0.1:0", "--http", "127.0.0.1:0", "--data-dir",
         tempfile.mkdtemp(dir=DIR), "--key-file", key, "--config", config],
        stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
    line = monitor.stdout.readline().decode().split()
    udp = line[3].removeprefix("udp=")
    http = line[4].removeprefix("http=")

    def up(node):
        try:
            with urllib.request.urlopen(f"http://{http}/v1/nodes/{node}") as answer:
                return json.load(answer)["state"] == "up"
        except Exception:
            return False

    def host(name):
        agent = subprocess.Popen([BIN, "agent", "--node", name, "--monitor", udp, "--key-file", key,
                                  "--interval", "1s"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wait(lambda: up(name), f"{name} up")
        run = subprocess.Popen([BIN, "lease", "run", "--api", f"http://{http}", "--token", TOKEN,
                                "--name", "leader", "--node", name, "--holder", name, "--ttl", "15s", "--"]
                               + COMMAND + [name, LOG], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        return [agent, run]

    try:
        return measure(host, RUNS, "rollcall")
    finally:
        monitor.kill()


def etcd():
    client, peer = free_port(), free_port()
    endpoint = f"http://127.0.0.1:{client}"
    server = subprocess.Popen(
        ["etcd", "--data-dir", os.path.join(DIR, "etcd"), "--listen-client-urls", endpoint,
         "--advertise-client-urls", endpoint, "--listen-peer-urls", f"http://127.0.0.1:{peer}",
         "--initial-advertise-peer-urls", f"http://127.0.0.1:{peer}",
         "--initial-cluster", f"default=http://127.0.0.1:{peer}"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

    def healthy():
        return subprocess.run(["etcdctl", "--endpoints", endpoint, "endpoint", "health"],
                              capture_output=True).returncode == 0

    wait(healthy, "etcd")

    def host(name):
        lock = subprocess.Popen(["etcdctl", "--endpoints", endpoint, "lock", "--ttl", "10", "leader", "--"]
                                + COMMAND + [name, LOG], stdout=subprocess.DEVNULL,
                                stderr=subprocess.DEVNULL, start_new_session=True)
        return [lock]

    try:
        return measure(host, ETCD_RUNS, "etcdctl lock")
    finally:
        server.kill()


def summary(name, times):
    times = sorted(times)
    p99 = times[min(len(times) - 1, int(round(0.99 * (len(times) - 1))))]
    print(f"{name}: runs {len(times)}, p50 {statistics.median(times):.2f} s, p99 {p99:.2f} s, "
          f"max {times[-1]:.2f} s, min {times[0]:.2f} s")


if __name__ == "__main__":
    systems = os.environ.get("SYSTEMS", "rollcall,rollcall-confirm,rollcall-quick,etcd").split(",")
    measured = {
        "rollcall": ("rollcall lease run (1 s heartbeats, default detector, TTL 15 s)", rollcall),
        "rollcall-confirm": ("rollcall lease run (1 s heartbeats, [confirm] on, TTL 15 s)",
                             lambda: rollcall("[confirm]\nenabled = true\n")),
        "rollcall-quick": ("rollcall lease run (1 s heartbeats, acceptable_pause 1 s, TTL 15 s)",
                           lambda: rollcall('[phi]\nacceptable_pause = "1s"\n')),
        "etcd": ("etcdctl lock (10 s session)", etcd),
    }
    for system in systems:
        name, run = measured[system]
        summary(name, run())
        if os.path.exists(LOG):
            os.remove(LOG)
