"""A real LiteLLM proxy (its own virtual environment) forwarding its logs to the service.

LiteLLM pins packages that clash with ours (polars<2, rich<14), so it lives in its own venv,
created here on first use: `$DG_LITELLM_VENV` or `<repo>/.venv-litellm`. Creating it takes
several minutes (pip resolves ~150 packages), hence `slow`; once it exists the test takes
about a minute. Loopback only: a mock model answers (`mock_response`), nothing leaves the host.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from distillguard.serve import integrations
from distillguard.serve.harness import ServerProcess, write_config
from tests.serve.conftest import READ, READ_TOKEN, WRITE_TOKEN, free_port
from tests.serve.traffic import CASUAL, HYDRA_TEMPLATE, TASKS

pytestmark = pytest.mark.slow
REPO = Path(__file__).resolve().parents[2]
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


def litellm_venv() -> Path:
    venv = Path(os.environ.get("DG_LITELLM_VENV", REPO / ".venv-litellm"))
    if not (venv / "bin" / "litellm").exists():
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
        subprocess.run(
            [str(venv / "bin" / "pip"), "install", "--quiet", "litellm[proxy]"], check=True
        )
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
        **{"signals.inline": "true", "analysis.interval_s": "2", "analysis.min_accounts": "2"},
    )
    dg = ServerProcess(cfg, dg_port, tmp / "serve.log")
    dg.start()
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
    }
    env.pop("VIRTUAL_ENV", None)
    log = (tmp / "proxy.log").open("wb")
    proxy = subprocess.Popen(
        [str(venv / "bin" / "litellm"), "--config", str(proxy_dir / "config.yaml"),
         "--host", "127.0.0.1", "--port", str(proxy_port)],
        cwd=proxy_dir, env=env, stdout=log, stderr=subprocess.STDOUT,
    )  # fmt: skip
    proxy_url = f"http://127.0.0.1:{proxy_port}"
    try:
        deadline = time.time() + 180
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
    with httpx.Client(timeout=30) as client:
        for i in range(PER_ACCOUNT):
            for a in range(HYDRA_ACCOUNTS):
                prompt = HYDRA_TEMPLATE.format(task=TASKS[(i + a) % len(TASKS)])
                _chat(client, proxy, f"lh{a:02d}", prompt, pool[(i * 7 + a) % len(pool)])
            for u in range(3):
                _chat(
                    client, proxy, f"person{u}", CASUAL[(i + u) % len(CASUAL)], f"81.2.69.{u + 1}"
                )

        def seen(account: str, n: int):
            r = client.get(f"{dg}/v1/accounts/{account}", headers=READ)
            return r.status_code == 200 and r.json()["windows"]["168h"]["requests"] >= n

        _wait_for(lambda: seen("lh09", PER_ACCOUNT) and seen("person2", PER_ACCOUNT))

        def campaign():
            found = client.get(f"{dg}/v1/campaigns", headers=READ).json()["campaigns"]
            return found[0] if found else None

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
