"""A real LiteLLM proxy (its own virtual environment) forwarding its logs to the service.

LiteLLM pins packages that clash with ours (polars<2, rich<14), so it lives in its own venv,
built here on first use with uv (seconds, where pip took minutes) at `$DG_LITELLM_VENV` or
`~/.cache/distillguard/venv-litellm-<version>` and reused afterwards (also by other clones).
Loopback only: a mock model answers (`mock_response`), nothing leaves the host.
"""

from __future__ import annotations

import fcntl
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest

from distillguard.serve import integrations
from distillguard.serve.harness import ServerProcess, write_config
from tests.serve.conftest import READ, READ_TOKEN, WRITE_TOKEN, free_port
from tests.serve.traffic import CASUAL, HYDRA_TEMPLATE, TASKS

HYDRA_ACCOUNTS = 10
PER_ACCOUNT = 25

PROXY_CONFIG = """
model_list:
  - model_name: atlas-3
    litellm_params:
      model: openai/atlas-3
      api_key: sk-mock
      mock_response: "Step 1: restate the problem. Step 2: solve it. Answer: 42."
litellm_settings:
  callbacks: litellm_callback.distillguard_logger
general_settings:
  master_key: sk-distillguard-test-master-key-0123456789abcdef
  use_x_forwarded_for: true
"""
MASTER_KEY = "sk-distillguard-test-master-key-0123456789abcdef"


# Pinned: the callback relies on LiteLLM's CustomLogger and standard logging payload; a new
# pin rebuilds the venv (the ready marker holds the requirement it was built for).
LITELLM_REQUIREMENT = "litellm[proxy]==1.108.7"
# Outside the work tree, so a fresh clone (as CI makes) on the same machine reuses it.
DEFAULT_VENV = (
    Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    / "distillguard"
    / "venv-litellm-1.108.7"
)


def _uv() -> str:
    """The uv binary: next to our interpreter (dev install), on PATH, or fetched with pip."""
    for found in (Path(sys.executable).with_name("uv"), shutil.which("uv")):
        if found and Path(found).exists():
            return str(found)
    target = DEFAULT_VENV.parent / "uv"
    if not (target / "bin" / "uv").exists():
        subprocess.run(
            [sys.executable, "-m", "pip", "install", "--quiet", "--target", str(target), "uv"],
            check=True,
        )
    return str(target / "bin" / "uv")


def litellm_venv() -> Path:
    """LiteLLM's venv, built once (a lock keeps two test runs from building it together)."""
    venv = Path(os.environ.get("DG_LITELLM_VENV", DEFAULT_VENV))
    ready = venv / ".distillguard-ready"
    venv.parent.mkdir(parents=True, exist_ok=True)
    with open(venv.with_name(venv.name + ".lock"), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if ready.exists() and ready.read_text() == LITELLM_REQUIREMENT:
            return venv
        uv = _uv()
        subprocess.run([uv, "venv", "--quiet", "--clear", "-p", sys.executable, str(venv)],
                       check=True)  # fmt: skip
        subprocess.run(
            [uv, "pip", "install", "--quiet", "-p", str(venv / "bin" / "python"),
             LITELLM_REQUIREMENT],
            check=True,
        )  # fmt: skip
        ready.write_text(LITELLM_REQUIREMENT)
    return venv


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, str]]:
    """(distillguard URL, LiteLLM proxy URL), both on loopback."""
    venv = litellm_venv()
    tmp = tmp_path_factory.mktemp("litellm")
    dg_port, proxy_port = free_port(), free_port()
    cfg = write_config(
        tmp / "serve.toml",
        dg_port,
        WRITE_TOKEN,
        READ_TOKEN,
        # Signals in the default worker (inline they cost ~0.2 s per one-record POST).
        **{"signals.flush_ms": "300", "analysis.interval_s": "2", "analysis.min_accounts": "2"},
    )
    dg = ServerProcess(cfg, dg_port, tmp / "serve.log")
    proxy_dir = tmp / "proxy"
    proxy_dir.mkdir()
    (proxy_dir / "config.yaml").write_text(PROXY_CONFIG)
    shutil.copy(Path(integrations.__file__).with_name("litellm_callback.py"), proxy_dir)
    env = {
        **os.environ,
        "DISTILLGUARD_URL": dg.url,
        "DISTILLGUARD_TOKEN": WRITE_TOKEN,
        "PYTHONPATH": str(proxy_dir),
        "LITELLM_LOG": "ERROR",
        "LITELLM_LOCAL_MODEL_COST_MAP": "True",  # no fetch (and retries) of the price list
    }
    env.pop("VIRTUAL_ENV", None)
    # Let the proxy keep its byte code: with PYTHONDONTWRITEBYTECODE set (as on CI) every
    # start would compile LiteLLM's ~3,000 modules again (~20 s of CPU).
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    log = (tmp / "proxy.log").open("wb")
    # The proxy first: its start-up (importing LiteLLM, ~10 s of CPU) overlaps the service's.
    proxy = subprocess.Popen(
        [str(venv / "bin" / "litellm"), "--config", str(proxy_dir / "config.yaml"),
         "--host", "127.0.0.1", "--port", str(proxy_port)],
        cwd=proxy_dir, env=env, stdout=log, stderr=subprocess.STDOUT,
    )  # fmt: skip
    proxy_url = f"http://127.0.0.1:{proxy_port}"
    try:
        dg.start()
        deadline = time.time() + 300  # LiteLLM's import is heavy on a loaded machine
        while time.time() < deadline:
            assert proxy.poll() is None, (tmp / "proxy.log").read_text()[-3000:]
            try:
                if httpx.get(f"{proxy_url}/health/liveliness", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                time.sleep(0.5)
        else:
            raise RuntimeError("LiteLLM proxy did not start")
        yield dg.url, proxy_url
    finally:
        proxy.terminate()
        try:
            proxy.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proxy.kill()
        dg.stop()


def _chat(client: httpx.Client, proxy: str, user: str, prompt: str, ip: str) -> None:
    r = client.post(
        f"{proxy}/v1/chat/completions",
        json={
            "model": "atlas-3",
            "user": user,
            "max_tokens": 4096,
            "messages": [{"role": "user", "content": prompt}],
        },
        headers={"X-Forwarded-For": ip, "Authorization": f"Bearer {MASTER_KEY}"},
    )
    assert r.status_code == 200, r.text


def _wait_for(check, seconds: float = 90.0):
    deadline = time.time() + seconds
    while time.time() < deadline:
        value = check()
        if value:
            return value
        time.sleep(0.5)
    raise AssertionError("condition not met in time")


def test_hydra_through_litellm_is_flagged_and_a_normal_user_is_not(stack):
    dg, proxy = stack
    pool = [f"45.{60 + k % 7}.{k}.{(k * 37) % 250 + 1}" for k in range(40)]
    calls = []
    for i in range(PER_ACCOUNT):
        for a in range(HYDRA_ACCOUNTS):
            prompt = HYDRA_TEMPLATE.format(task=TASKS[(i + a) % len(TASKS)])
            calls.append((f"lh{a:02d}", prompt, pool[(i * 7 + a) % len(pool)]))
        for u in range(3):
            calls.append((f"person{u}", CASUAL[(i + u) % len(CASUAL)], f"81.2.69.{u + 1}"))
    with httpx.Client(timeout=30) as client:
        # A few at a time, as a gateway serves them: the proxy and its callback are async.
        with ThreadPoolExecutor(6) as pool_:
            list(pool_.map(lambda c: _chat(client, proxy, *c), calls))

        def seen(account: str, n: int):
            r = client.get(f"{dg}/v1/accounts/{account}", headers=READ)
            week = r.json()["windows"]["168h"] if r.status_code == 200 else {}
            # Counted, and the request signals (computed by the worker) are in too.
            return week.get("requests", 0) >= n and week.get("signalled", 0) >= n

        _wait_for(lambda: all(seen(a, PER_ACCOUNT) for a in ("lh00", "lh09", "person2")))

        def campaign():
            # An analysis run may have seen only part of the traffic; the next one (2 s
            # later) sees it all and updates the campaign's members.
            found = client.get(f"{dg}/v1/campaigns", headers=READ).json()["campaigns"]
            full = [c for c in found if len(c["members"]) >= HYDRA_ACCOUNTS]
            return full[0] if full else None

        c = _wait_for(campaign)
        assert sorted(c["members"]) == [f"lh{a:02d}" for a in range(HYDRA_ACCOUNTS)]
        # The next requests of both get decided with the campaign verdict in place.
        _chat(client, proxy, "lh00", HYDRA_TEMPLATE.format(task=TASKS[0]), pool[0])
        _chat(client, proxy, "person0", CASUAL[0], "81.2.69.1")

        def decided(account: str, n: int):
            view = client.get(f"{dg}/v1/accounts/{account}", headers=READ).json()
            return view if view["windows"]["168h"]["requests"] >= n else None

        hydra_view = _wait_for(lambda: decided("lh00", PER_ACCOUNT + 1))
        person_view = _wait_for(lambda: decided("person0", PER_ACCOUNT + 1))
    assert hydra_view["last_decision"]["decision"] in ("challenge", "block")
    assert hydra_view["last_decision"]["campaign_id"] == c["campaign_id"]
    assert hydra_view["windows"]["168h"]["distinct_ips"] > 10  # X-Forwarded-For was recorded
    assert person_view["last_decision"]["decision"] == "allow"
