"""The web server under load, on loopback, bounded in time: is it as fast as ``recognise`` itself?

    python benchmarks/web_load.py [--clients 8] [--seconds 60] [--workers 2] [--json]

One run measures, in this order:

1. in-process throughput: one ``recognise_many`` stream over the JAFFE photos (again and again)
   on ``--workers`` processes (the same cores the server gets), for 15 s;
2. the server (``facial-expressions serve --workers N`` on 127.0.0.1, a free port): ``--clients``
   threads, each on its own keep-alive connection, post real JAFFE photos (multipart) back to back
   for ``--seconds``; per request the latency and the status. Mixed in, from two more threads:
   corrupt uploads (expect 400), uploads announcing 25 MB (expect 413 at once), and clients
   that send their body at 20 bytes a second (expect 408 after the server's receive timeout,
   set to 5 s here); the server RSS (its process and its analysis workers) is sampled every second;
3. in-process throughput again (the machine is shared: the two in-process figures bracket the
   server's).

Reported: photo requests answered 200 and failed (anything else, or no answer), p50 and p95
latency, photos per second, its ratio to the mean in-process figure, the RSS at the 10th second
and at the end and its growth, and the mixed-in requests by status. On a machine shared with
other work the wall-clock ratio moves with their load; the CPU cost per photo (server process and
analysis workers, against the in-process workers; the load generator's own CPU not counted) does
not, and is reported beside it.
"""

import http.client
import json
import os
import random
import re
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time

import click

PROJECT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, PROJECT)
JAFFE = os.path.join(PROJECT, "..", "shared", "datasets", "jaffe")
BOUNDARY = "facial-expressions-load-test"


def multipart(data, name="photo.tiff"):
    head = (f"--{BOUNDARY}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"{name}\"\r\n"
            "Content-Type: application/octet-stream\r\n\r\n").encode()
    return head + data + f"\r\n--{BOUNDARY}--\r\n".encode()


HEADERS = {"Content-Type": f"multipart/form-data; boundary={BOUNDARY}"}


def _cpu():
    """CPU seconds of this process and of its finished children."""
    import resource

    own, children = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


def in_process(paths, jobs, seconds):
    """(photos per second, CPU ms per photo) of one recognise_many stream on ``jobs`` processes over
    the photos again and again, stopped after ``seconds`` (its workers start once, as the server's do)."""
    from classifiers import recognise_many

    done, started, cpu = 0, time.perf_counter(), _cpu()
    stream = recognise_many([paths[i % len(paths)] for i in range(100_000)], jobs=jobs)
    for _ in stream:
        done += 1
        if time.perf_counter() - started >= seconds:
            break
    elapsed = time.perf_counter() - started
    stream.close()  # stops the workers
    return done / elapsed, 1000 * (_cpu() - cpu) / max(done, 1)


class ServerProcess:
    def __init__(self, workers, folder):
        self.log_path = os.path.join(folder, "server.log")
        self.log = open(self.log_path, "w")
        env = dict(os.environ, PYTHONPATH=PROJECT, TMPDIR=folder)
        env.pop("FER_WEB_TOKEN", None)
        self.process = subprocess.Popen([sys.executable, "-m", "facial_expressions", "serve", "--port", "0", "-q",
                                         "--workers", str(workers), "--receive-timeout", "5"],
                                        cwd=PROJECT, env=env, stdout=self.log, stderr=subprocess.STDOUT)
        for _ in range(1800):
            found = re.search(r"on http://127\.0\.0\.1:(\d+)/", open(self.log_path).read())
            if found:
                self.port = int(found.group(1))
                return
            if self.process.poll() is not None:
                raise SystemExit(f"the server stopped: {open(self.log_path).read()}")
            time.sleep(0.1)
        raise SystemExit("the server did not start")

    def rss(self):
        import psutil

        root = psutil.Process(self.process.pid)
        return sum(p.memory_info().rss for p in [root] + root.children(recursive=True))

    def cpu_seconds(self):
        """(CPU seconds of the server process, of its analysis workers)."""
        import psutil

        root = psutil.Process(self.process.pid)
        own = root.cpu_times()
        return own.user + own.system, sum(sum(c.cpu_times()[:2]) for c in root.children(recursive=True))

    def stop(self):
        self.process.send_signal(signal.SIGINT)
        try:
            self.process.wait(30)
        except subprocess.TimeoutExpired:
            self.process.kill()
        self.log.close()


def photo_client(port, bodies, stop, records, seed):
    rng = random.Random(seed)
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    while not stop.is_set():
        body = bodies[rng.randrange(len(bodies))]
        started = time.perf_counter()
        try:
            conn.request("POST", "/api/analyze", body=body, headers=HEADERS)
            response = conn.getresponse()
            data = response.read()
            ok = response.status == 200 and json.loads(data)["faces"] is not None
            records.append((time.perf_counter(), time.perf_counter() - started, response.status if ok else
                            f"{response.status}: {data[:120]!r}"))
        except (OSError, http.client.HTTPException, ValueError) as exc:
            records.append((time.perf_counter(), time.perf_counter() - started, f"{type(exc).__name__}: {exc}"))
            conn.close()
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    conn.close()


def one_shot(port, head, body=b"", trickle=None):
    """Send a raw request (``trickle``: bytes per second for the body) -> the answer's status or an error."""
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=30) as sock:
            sock.sendall(head)
            if trickle:
                for i in range(0, len(body), 1):
                    sock.sendall(body[i:i + 1])
                    sock.settimeout(1 / trickle)
                    try:
                        answer = sock.recv(4096)
                        if answer:
                            return int(answer.split(b" ", 2)[1])
                    except socket.timeout:
                        pass
            else:
                try:
                    sock.sendall(body)
                except OSError:
                    pass
            sock.settimeout(30)
            answer = sock.recv(4096)
            return int(answer.split(b" ", 2)[1]) if answer else "no answer"
    except OSError as exc:
        return f"{type(exc).__name__}"


def mixed_client(port, kinds, stop, outcomes, seed):
    rng = random.Random(seed)
    corrupt = multipart(b"\xff\xd8\xff\xe0" + bytes(rng.randrange(256) for _ in range(20000)), "broken.jpg")
    while not stop.is_set():
        kind = kinds[rng.randrange(len(kinds))]
        if kind == "corrupt":
            head = (f"POST /api/analyze HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: {HEADERS['Content-Type']}\r\n"
                    f"Content-Length: {len(corrupt)}\r\nConnection: close\r\n\r\n").encode()
            status = one_shot(port, head, corrupt)
        elif kind == "oversized":
            head = (f"POST /api/analyze HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: {HEADERS['Content-Type']}\r\n"
                    f"Content-Length: {25 * 2**20}\r\n\r\n").encode()
            status = one_shot(port, head, b"\0" * 2**20)
        else:
            body = multipart(b"\xff\xd8\xff\xe0" + b"\0" * 400)
            head = (f"POST /api/analyze HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: {HEADERS['Content-Type']}\r\n"
                    f"Content-Length: {len(body)}\r\n\r\n").encode()
            status = one_shot(port, head, body, trickle=20)
        outcomes.append((kind, status))
        stop.wait(1.0)


def percentile(values, q):
    values = sorted(values)
    return values[min(len(values) - 1, int(round(q * (len(values) - 1))))]


@click.command()
@click.option("--clients", default=8, show_default=True, help="Concurrent clients posting photos.")
@click.option("--seconds", default=60, show_default=True, help="How long the clients post.")
@click.option("--workers", default=os.cpu_count() or 2, show_default=True, help="Analysis processes (= cores used).")
@click.option("--baseline-seconds", default=15, show_default=True, help="Length of each in-process measurement.")
@click.option("--json", "as_json", is_flag=True)
def main(clients, seconds, workers, baseline_seconds, as_json):
    from landmarks.datasets import load_dataset

    paths = [s.path for s in load_dataset(JAFFE)]
    bodies = [multipart(open(p, "rb").read()) for p in paths]
    in_process(paths[:8], 1, 0.1)  # load the models once
    in_process(paths, workers, 3)  # and warm the workers (first-use caches, the file cache)
    before, before_cpu = in_process(paths, workers, baseline_seconds)
    folder = tempfile.mkdtemp(prefix="web-load-")
    server = ServerProcess(workers, folder)
    records, outcomes, memory = [], [], []
    stop = threading.Event()
    try:
        for body in bodies[:4]:  # warm-up, not counted
            conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=60)
            conn.request("POST", "/api/analyze", body=body, headers=HEADERS)
            conn.getresponse().read()
            conn.close()
        threads = [threading.Thread(target=photo_client, args=(server.port, bodies, stop, records, i))
                   for i in range(clients)]
        threads += [threading.Thread(target=mixed_client, args=(server.port, kinds, stop, outcomes, 100 + i))
                    for i, kinds in enumerate((("corrupt", "oversized"), ("slow",)))]
        started = time.perf_counter()
        cpu_before = server.cpu_seconds()
        for thread in threads:
            thread.start()
        while (elapsed := time.perf_counter() - started) < seconds:
            memory.append((elapsed, server.rss()))
            time.sleep(1.0 - (time.perf_counter() - started) % 1.0)
        memory.append((time.perf_counter() - started, server.rss()))
        cpu = [b - a for a, b in zip(cpu_before, server.cpu_seconds())]
        stop.set()
        for thread in threads:
            thread.join(60)
        uploads_left = sum(len(os.listdir(os.path.join(folder, d))) for d in os.listdir(folder)
                           if d.startswith("facial-expressions-uploads-"))
    finally:
        server.stop()
    after, after_cpu = in_process(paths, workers, baseline_seconds)
    window = [r for r in records if r[0] - started <= seconds]
    ok = [r for r in window if r[2] == 200]
    failed = [r for r in records if r[2] != 200]
    latencies = [r[1] for r in ok]
    rate = len(ok) / seconds
    baseline = (before + after) / 2
    cpu_per_photo = 1000 * (cpu[0] + cpu[1]) / max(1, len(records))
    baseline_cpu = (before_cpu + after_cpu) / 2
    rss10 = next(rss for t, rss in memory if t >= 10)
    rss_end = memory[-1][1]
    mixed = {}
    for kind, status in outcomes:
        mixed.setdefault(kind, {}).setdefault(str(status), 0)
        mixed[kind][str(status)] += 1
    result = {"clients": clients, "seconds": seconds, "workers": workers, "cores": os.cpu_count(),
              "photo_requests": len(records), "ok": len(ok), "failed": len(failed),
              "failures": sorted({str(r[2]) for r in failed})[:5],
              "p50_ms": round(1000 * statistics.median(latencies), 1),
              "p95_ms": round(1000 * percentile(latencies, 0.95), 1),
              "photos_per_second": round(rate, 1),
              "in_process_per_second": [round(before, 1), round(after, 1)],
              "ratio_to_in_process": round(rate / baseline, 3),
              "rss_mb_at_10s": round(rss10 / 2**20, 1), "rss_mb_at_end": round(rss_end / 2**20, 1),
              "rss_growth": round(rss_end / rss10 - 1, 4),
              "cpu_seconds_server": round(cpu[0], 1), "cpu_seconds_workers": round(cpu[1], 1),
              "cpu_ms_per_photo": round(cpu_per_photo, 2),
              "in_process_cpu_ms_per_photo": [round(before_cpu, 2), round(after_cpu, 2)],
              "cpu_ratio_to_in_process": round(baseline_cpu / cpu_per_photo, 3), "mixed_in": mixed, "uploads_left": uploads_left}
    if as_json:
        click.echo(json.dumps(result))
        return
    click.echo(f"{clients} clients, {seconds} s, {workers} analysis workers on {os.cpu_count()} cores:")
    click.echo(f"  photos: {len(ok)} answered 200, {len(failed)} failed {result['failures'] or ''}")
    click.echo(f"  latency p50 {result['p50_ms']} ms, p95 {result['p95_ms']} ms")
    click.echo(f"  throughput {rate:.1f} photos/s; in process {before:.1f} before, {after:.1f} after: "
               f"ratio {result['ratio_to_in_process']:.2f}")
    click.echo(f"  server RSS (with its workers) {result['rss_mb_at_10s']} MB at 10 s, {result['rss_mb_at_end']} MB "
               f"at the end: {100 * result['rss_growth']:+.1f}%")
    click.echo(f"  CPU: server process {cpu[0]:.1f} s, analysis workers {cpu[1]:.1f} s: {cpu_per_photo:.1f} ms per "
               f"photo ({1000 * cpu[0] / max(1, len(records)):.1f} in the server process); in process "
               f"{before_cpu:.1f} and {after_cpu:.1f} ms: efficiency ratio {baseline_cpu / cpu_per_photo:.2f}")
    click.echo(f"  mixed in: {json.dumps(mixed)}; uploads left on disk: {uploads_left}")


if __name__ == "__main__":
    main()
