"""Shared by the Bytewax peer flows: a generator source partitioned over the workers
and a counting sink that prints waxfast's summary line on stderr when the last worker
closes. Mirrors waxfast's `flows::bench` (input generated inside the flow, 1024 items per
batch, time from the source's build to the last sink's close)."""

import os
import sys
import threading
import time

from bytewax.inputs import DynamicSource, StatelessSourcePartition
from bytewax.outputs import DynamicSink, StatelessSinkPartition

BATCH = 1024


class Stats:
    def __init__(self, name, records):
        self.name = name
        self.records = records
        self.started = None
        self.received = 0
        self.closed = 0
        self.lock = threading.Lock()

    def start(self):
        with self.lock:
            if self.started is None:
                self.started = time.monotonic()

    def close(self, count, workers):
        # Under `python -m bytewax.testing -p P` each of the P processes prints its own
        # line once its own workers are done; scripts/compare takes the slowest.
        local = max(1, workers // int(os.environ.get("WAXFAST_BENCH_PROCESSES", "1")))
        with self.lock:
            self.received += count
            self.closed += 1
            if self.closed == local:
                secs = time.monotonic() - self.started
                rss = "unknown"
                for line in open("/proc/self/status"):
                    if line.startswith("VmHWM:"):
                        rss = line.split()[1]
                print(
                    f"{self.name}: records={self.records} workers={workers} processes={workers // local} seconds={secs:.4f} "
                    f"records_per_sec={self.records / secs:.0f} outputs={self.received} peak_rss_kb={rss}",
                    file=sys.stderr,
                    flush=True,
                )


class _GenPart(StatelessSourcePartition):
    def __init__(self, lo, hi, make_batch):
        self.next = lo
        self.hi = hi
        self.make_batch = make_batch

    def next_batch(self):
        if self.next >= self.hi:
            raise StopIteration()
        stop = min(self.next + BATCH, self.hi)
        batch = self.make_batch(self.next, stop)
        self.next = stop
        return batch


class Generator(DynamicSource):
    """Worker w of n emits make_batch(lo, hi) over its share of range(records)."""

    def __init__(self, stats, make_batch):
        self.stats = stats
        self.make_batch = make_batch

    def build(self, step_id, worker_index, worker_count):
        self.stats.start()
        n = self.stats.records
        lo = n * worker_index // worker_count
        hi = n * (worker_index + 1) // worker_count
        return _GenPart(lo, hi, self.make_batch)


class _CountPart(StatelessSinkPartition):
    def __init__(self, stats, workers):
        self.stats = stats
        self.workers = workers
        self.count = 0

    def write_batch(self, items):
        self.count += len(items)

    def close(self):
        self.stats.close(self.count, self.workers)


class Counting(DynamicSink):
    def __init__(self, stats):
        self.stats = stats

    def build(self, step_id, worker_index, worker_count):
        return _CountPart(self.stats, worker_count)
