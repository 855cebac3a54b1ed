"""Fuzz ``photoshield.io.read_image`` with the seeded corpus of tests/fuzz_corpus.py, each file in a watched worker.

    python benchmarks/fuzz_io.py --count 2000 [--seed 0] [--timeout 10] [--max-rss-mb 2048] [--workers 2]

Every case is read by a worker process (photoshield imported once per worker) under a per-file
timeout and a resident-memory watch (sampled every 20 ms, and the worker's peak after each file); a
worker that hangs, crashes or goes over the memory limit is killed and replaced. The outcome of each
case is one of:

* clean error: ``ImageError`` naming the file (for a file that should not read);
* decoded ok: a valid file read to a finite (1, 3, H, W) tensor in [0, 1] of the expected size;
* decoded damaged file: damage the format cannot notice (byte flips in formats without checksums);
  reported, allowed;
* other exception (or a crash), hang, over memory, garbage decoded (a structurally invalid PNG/JPEG,
  a bomb or an unusable path that decoded, or an invalid tensor), valid file refused: failures.

Prints the counts, writes them with a stamp (command, git commit, date, versions, threads, device)
to benchmarks/results/fuzz_io.json, and exits 1 when any failure class is non-zero.
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import resource
import selectors
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "tests"))

import fuzz_corpus as corpus  # noqa: E402

DEFAULT_OUTPUT = REPO / "benchmarks" / "results" / "fuzz_io.json"
_POLL_SECONDS = 0.02


# ----------------------------------------------------------------------------- worker side


def _worker(threads: int) -> None:
    """Read cases named on stdin (one JSON object a line), answer one JSON line each on stdout."""
    import warnings

    import torch

    import photoshield.io  # noqa: F401 - imported before "ready", so it is not timed with the first file

    torch.set_num_threads(threads)
    warnings.simplefilter("ignore")
    out = sys.stdout
    out.write("ready\n")
    out.flush()
    for line in sys.stdin:
        job = json.loads(line)
        path = bytes.fromhex(job["path_hex"]) if "path_hex" in job else job["path"]
        case = corpus.Case(job["name"], job["kind"], job["fmt"], job["expect"],
                           size=tuple(job["size"]) if job["size"] else None)
        start = time.perf_counter()
        outcome, detail = corpus.run_case(case, path)
        peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        out.write(json.dumps({"outcome": outcome, "detail": detail[:500], "seconds": time.perf_counter() - start,
                              "peak_mb": peak_mb}) + "\n")
        out.flush()


# ----------------------------------------------------------------------------- parent side


def _rss_mb(pid: int) -> float:
    """Resident memory of a process in MiB (Linux /proc, else psutil, else 0)."""
    try:
        with open(f"/proc/{pid}/status", encoding="ascii") as handle:
            for line in handle:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    try:
        import psutil

        return psutil.Process(pid).memory_info().rss / 2**20
    except Exception:  # noqa: BLE001 - no way to measure here
        return 0.0


class Worker:
    """One reader process and the case it is working on."""

    def __init__(self, threads: int, log: Path):
        self.log = open(log, "ab")  # noqa: SIM115 - libtiff & co. print to stderr; kept out of the report
        self.process = subprocess.Popen(
            [sys.executable, str(Path(__file__).resolve()), "--worker", "--threads", str(threads)],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=self.log, cwd=REPO, start_new_session=True,
        )
        self.buffer = b""
        self.job: tuple[int, float] | None = None  # (case index, start time)
        self.ready = False
        self.started = time.monotonic()

    def send(self, index: int, case: corpus.Case, path: str | bytes) -> None:
        job = {"name": case.name, "kind": case.kind, "fmt": case.fmt, "expect": case.expect,
               "size": list(case.size) if case.size else None}
        if isinstance(path, bytes):
            job["path_hex"] = path.hex()
        else:
            job["path"] = path
        self.process.stdin.write((json.dumps(job) + "\n").encode())
        self.process.stdin.flush()
        self.job = (index, time.monotonic())

    def lines(self) -> list[str]:
        """Complete lines available now; [] at end of stream is told apart by ``alive``."""
        chunk = os.read(self.process.stdout.fileno(), 1 << 16)
        if not chunk:
            return [""]
        self.buffer += chunk
        *complete, self.buffer = self.buffer.split(b"\n")
        return [line.decode() for line in complete]

    def kill(self) -> None:
        try:
            os.killpg(self.process.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
        self.process.wait()
        for stream in (self.process.stdin, self.process.stdout):
            try:
                stream.close()
            except OSError:
                pass
        self.log.close()


def _stamp(args: argparse.Namespace, threads: int) -> dict:
    """Where and how the numbers were measured: the shared benchmarks/_common.stamp() when there is one."""
    import imagecodecs
    import numpy
    import PIL

    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from _common import stamp  # benchmarks/_common.py, shared by the benchmark scripts

    result = stamp("cpu")
    result.update({
        "threads": threads,  # torch threads in each worker (decoders are single-threaded)
        "workers": args.workers,
        "cpu_count": os.cpu_count(),
        "pillow": PIL.__version__,
        "imagecodecs": imagecodecs.__version__,
        "numpy": numpy.__version__,
    })
    return result


def run(args: argparse.Namespace) -> int:
    started = time.perf_counter()
    cases = corpus.generate(args.count, args.seed)
    print(f"{len(cases)} cases (seed {args.seed}) generated in {time.perf_counter() - started:.1f} s; "
          f"{args.workers} workers, timeout {args.timeout:g} s, memory limit {args.max_rss_mb:g} MiB", flush=True)
    counts: collections.Counter[str] = collections.Counter()
    by_format: dict[str, collections.Counter[str]] = collections.defaultdict(collections.Counter)
    by_kind: dict[str, collections.Counter[str]] = collections.defaultdict(collections.Counter)
    failures: list[dict] = []
    timings: list[tuple[float, str]] = []
    peak_mb = 0.0

    with tempfile.TemporaryDirectory(prefix="fuzz_io_") as tmp:
        folder = Path(tmp) / "cases"
        log = Path(tmp) / "workers.log"
        paths = [corpus.materialize(case, folder) for case in cases]
        pending = list(range(len(cases)))[::-1]
        selector = selectors.DefaultSelector()
        workers: list[Worker] = []

        def spawn() -> Worker:
            worker = Worker(1, log)
            selector.register(worker.process.stdout, selectors.EVENT_READ, worker)
            workers.append(worker)
            return worker

        def retire(worker: Worker) -> None:
            selector.unregister(worker.process.stdout)
            workers.remove(worker)
            worker.kill()

        def record(index: int, outcome: str, detail: str, seconds: float) -> None:
            case = cases[index]
            counts[outcome] += 1
            by_format[case.fmt][outcome] += 1
            by_kind[case.kind][outcome] += 1
            timings.append((seconds, case.name))
            if outcome in corpus.FAILURES:
                failures.append({"case": case.name, "kind": case.kind, "format": case.fmt, "expect": case.expect,
                                 "outcome": outcome, "detail": detail})
                print(f"  {outcome}: {case.name} ({detail[:200]})", flush=True)
            done = sum(counts.values())
            if done % 250 == 0:
                print(f"  {done}/{len(cases)} read", flush=True)

        def feed(worker: Worker) -> None:
            if pending:
                index = pending.pop()
                worker.send(index, cases[index], paths[index])

        for _ in range(args.workers):
            spawn()
        while pending or any(worker.job for worker in workers):
            for key, _ in selector.select(timeout=_POLL_SECONDS):
                worker: Worker = key.data
                if worker not in workers:
                    continue
                for line in worker.lines():
                    if line == "":  # the worker died
                        if worker.job:
                            index, since = worker.job
                            code = worker.process.poll()
                            record(index, corpus.OTHER, f"worker crashed (exit status {code})", time.monotonic() - since)
                        retire(worker)
                        spawn()
                        break
                    if line == "ready":
                        worker.ready = True
                        feed(worker)
                        continue
                    reply = json.loads(line)
                    index, _ = worker.job
                    worker.job = None
                    peak_mb = max(peak_mb, reply["peak_mb"])
                    if reply["peak_mb"] > args.max_rss_mb:
                        record(index, corpus.MEMORY, f"peak resident memory {reply['peak_mb']:.0f} MiB", reply["seconds"])
                        retire(worker)
                        spawn()
                        break
                    record(index, reply["outcome"], reply["detail"], reply["seconds"])
                    feed(worker)
            now = time.monotonic()
            for worker in list(workers):
                if not worker.ready:
                    if now - worker.started > 300:
                        raise SystemExit("a worker did not start within 300 s; see the log: " + str(log))
                    continue
                if worker.job is None:
                    if pending:
                        feed(worker)
                    continue
                index, since = worker.job
                rss = _rss_mb(worker.process.pid)
                peak_mb = max(peak_mb, rss)
                if now - since > args.timeout:
                    record(index, corpus.HANG, f"no answer after {args.timeout:g} s", now - since)
                elif rss > args.max_rss_mb:
                    record(index, corpus.MEMORY, f"resident memory {rss:.0f} MiB", now - since)
                else:
                    continue
                retire(worker)
                spawn()
        for worker in list(workers):
            retire(worker)

    elapsed = time.perf_counter() - started
    print(f"\n{len(cases)} files in {elapsed:.1f} s; worker peak resident memory {peak_mb:.0f} MiB")
    width = max(len(outcome) for outcome in corpus.OUTCOMES)
    for outcome in corpus.OUTCOMES:
        flag = "  <- failure" if outcome in corpus.FAILURES and counts[outcome] else ""
        print(f"  {outcome:<{width}}  {counts[outcome]:>6}{flag}")
    print("\nby format: " + "; ".join(
        f"{fmt} " + ", ".join(f"{n} {outcome}" for outcome, n in sorted(row.items()))
        for fmt, row in sorted(by_format.items())))
    slowest = sorted(timings, reverse=True)[:5]
    print("slowest: " + ", ".join(f"{name} {seconds:.2f} s" for seconds, name in slowest))

    failed = sum(counts[outcome] for outcome in corpus.FAILURES)
    result = {
        "stamp": _stamp(args, 1),
        "settings": {"count": args.count, "seed": args.seed, "timeout_s": args.timeout, "max_rss_mb": args.max_rss_mb},
        "counts": {outcome: counts[outcome] for outcome in corpus.OUTCOMES},
        "failed": failed,
        "by_format": {fmt: dict(row) for fmt, row in sorted(by_format.items())},
        "by_kind": {kind: dict(row) for kind, row in sorted(by_kind.items())},
        "seconds": round(elapsed, 1),
        "worker_peak_rss_mb": round(peak_mb),
        "slowest": [{"case": name, "seconds": round(seconds, 3)} for seconds, name in slowest],
        "failures": failures,
    }
    output = Path(args.output)
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(json.dumps(result, indent=1, ensure_ascii=False) + "\n")
    print(f"wrote {output}")
    print("FAILED: " + ", ".join(f"{counts[o]} {o}" for o in corpus.FAILURES if counts[o]) if failed else "clean")
    return 1 if failed else 0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=2000, help="number of corpus files (default 2000)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--timeout", type=float, default=10.0, help="seconds per file before it counts as a hang")
    parser.add_argument("--max-rss-mb", type=float, default=2048.0, help="resident memory a worker may reach (MiB)")
    parser.add_argument("--workers", type=int, default=max(1, min(2, os.cpu_count() or 1)))
    parser.add_argument("--output", default=str(DEFAULT_OUTPUT), help="JSON results file")
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--threads", type=int, default=1, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        _worker(args.threads)
        return
    sys.exit(run(args))


if __name__ == "__main__":
    main()
