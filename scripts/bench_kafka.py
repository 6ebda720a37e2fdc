#!/usr/bin/env python3
"""Kafka figures for BENCHMARKS.md (issue 19): prints a markdown section.

Usage: scripts/bench_kafka.py [--smoke] [--runs N] [--messages N] [--bytes B]

Starts tansu (scripts/kafka installs it) on a free loopback port, writes N messages
(default 500 000) of B bytes (default 100) round robin into topic `in` of 2 partitions,
then runs, interleaved round by round so drift of the machine hits all alike, the same
copy (source -> map -> sink, what `in` holds at start into a fresh 2-partition topic):
  floor      benches/peers/kafka_floor `copy`: one fetch/produce loop per partition with
             the same client (rskafka), no engine: the broker's limit with this client
  waxfast    `waxfast kafka_copy:BROKER,in,OUT` at -w1 and -w2
  bytewax    Bytewax 0.21.1's KafkaSource -> map -> KafkaSink
             (benches/peers/bytewax/kafka_copy.py, confluent-kafka / librdkafka) at
             -w1 and -w2, from target/venv-bench-kafka (made on first use)
Every run's output topic is checked to hold N messages, then deleted. Reports the
median wall time (process start to exit, connecting included), messages/s and MB/s
(value bytes / wall), with the spread (min-max).
"""
import os
import socket
import statistics
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BIN = os.path.join(ROOT, "target", "release", "waxfast")
FLOOR = os.path.join(ROOT, "target", "peers", "release", "kafka-floor")
VENV = os.path.join(ROOT, "target", "venv-bench-kafka")
SMOKE = "--smoke" in sys.argv


def arg(name, default):
    return int(sys.argv[sys.argv.index(name) + 1]) if name in sys.argv else default


RUNS = 1 if SMOKE else arg("--runs", 5)
N = 20_000 if SMOKE else arg("--messages", 500_000)
BYTES = arg("--bytes", 100)


def sh(*cmd, **kw):
    return subprocess.run(cmd, check=True, **kw)


def setup():
    sh("bash", os.path.join(ROOT, "scripts", "kafka"))
    tansu = subprocess.run(["bash", os.path.join(ROOT, "scripts", "kafka"), "path"],
                           capture_output=True, text=True).stdout.strip()
    if not tansu:
        sys.exit("tansu is not installed (scripts/kafka could not install it)")
    sh("cargo", "build", "--release", "--quiet", "--bin", "waxfast", cwd=ROOT)
    env = dict(os.environ, CARGO_TARGET_DIR=os.path.join(ROOT, "target", "peers"))
    sh("cargo", "build", "--release", "--quiet", "--manifest-path",
       os.path.join(ROOT, "benches", "peers", "kafka_floor", "Cargo.toml"), cwd=ROOT, env=env)
    py = os.path.join(VENV, "bin", "python")
    if not os.path.exists(py):
        sh(sys.executable, "-m", "venv", VENV)
        sh(os.path.join(VENV, "bin", "pip"), "install", "-q", "bytewax[kafka]==0.21.1")
    return tansu, py


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def main():
    tansu, py = setup()
    port = free_port()
    broker = f"127.0.0.1:{port}"
    url = f"tcp://{broker}"
    proc = subprocess.Popen([tansu, "broker", "--listener-url", url, "--advertised-listener-url", url,
                             "--storage-engine", "memory://tansu/"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        for _ in range(200):
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.1).close()
                break
            except OSError:
                time.sleep(0.05)
        sh(FLOOR, "produce", broker, "in", "2", str(N), str(BYTES))
        peers = os.path.join(ROOT, "benches", "peers", "bytewax")
        contestants = [
            ("floor (rskafka copy loop)", lambda out: [FLOOR, "copy", broker, "in", out], None),
            ("waxfast -w1", lambda out: [BIN, f"kafka_copy:{broker},in,{out}", "-w1"], None),
            ("waxfast -w2", lambda out: [BIN, f"kafka_copy:{broker},in,{out}", "-w2"], None),
            ("bytewax 0.21.1 -w1", lambda out: [py, "-m", "bytewax.run",
                                                f"kafka_copy.py:flow('{broker}', 'in', '{out}')", "-w1"], peers),
            ("bytewax 0.21.1 -w2", lambda out: [py, "-m", "bytewax.run",
                                                f"kafka_copy.py:flow('{broker}', 'in', '{out}')", "-w2"], peers),
        ]
        times = {name: [] for name, _, _ in contestants}
        for r in range(RUNS):
            for i, (name, cmd, cwd) in enumerate(contestants):
                out = f"out-{r}-{i}"
                sh(FLOOR, "create", broker, out, "2")
                t0 = time.perf_counter()
                sh(*cmd(out), cwd=cwd, stdout=subprocess.DEVNULL)
                dt = time.perf_counter() - t0
                got = int(subprocess.run([FLOOR, "count", broker, out], capture_output=True,
                                         text=True, check=True).stdout)
                if got != N:
                    sys.exit(f"{name}: the output topic holds {got} messages, not {N}")
                sh(FLOOR, "delete", broker, out)
                times[name].append(dt)
                print(f"round {r} {name}: {dt:.3f} s", file=sys.stderr)
    finally:
        proc.kill()
        proc.wait()
    mb = N * BYTES / 1e6
    print(f"{N} messages of {BYTES} B in 2 partitions, copied to a 2-partition topic on tansu "
          f"(memory storage), {RUNS} interleaved rounds; median wall (min-max):\n")
    print("| program | wall s | messages/s | MB/s |")
    print("|---|---|---|---|")
    for name, ts in times.items():
        m = statistics.median(ts)
        print(f"| {name} | {m:.3f} ({min(ts):.3f}-{max(ts):.3f}) | {N / m:,.0f} | {mb / m:.1f} |")


if __name__ == "__main__":
    main()
