"""The session summary says where each server setting came from (flag, env, config, implied)."""

from pathlib import Path

from embedgate.config.options import PathBase
from embedgate.config.settings import resolve
from embedgate.session import RunState

BASE = PathBase(Path("/proj"), Path("/cwd"))


def test_summary_names_server_url_as_the_source_of_the_external_backend():
    # [tool.embedgate] backend = "auto" (this checkout's pyproject) and a --embedgate-server-url:
    # the backend is external because of the URL, not because of the config key.
    settings = resolve({"server_url": "http://127.0.0.1:9"}, {"EMBEDGATE_PROFILE": "tiny-qwen3"},
                       {"backend": "auto", "startup_timeout": 60}, BASE)
    lines = RunState(settings).summary_lines()
    assert lines[0] == ("backend: external (asked: external, implied by --embedgate-server-url "
                        "(from --embedgate-server-url)), profile: tiny-qwen3 "
                        "(from env EMBEDGATE_PROFILE)")
    assert lines[1] == ("settings: backend=external (implied by --embedgate-server-url (from "
                        "--embedgate-server-url)); server_url=http://127.0.0.1:9 (from "
                        "--embedgate-server-url); profile=tiny-qwen3 (from env "
                        "EMBEDGATE_PROFILE); startup_timeout=60.0 (from [tool.embedgate] "
                        "startup_timeout)")
    assert "[tool.embedgate] backend" not in "\n".join(lines)


def test_summary_with_every_setting_at_its_default_says_so():
    assert RunState(resolve({}, {}, {}, BASE)).summary_lines()[1] == "settings: all defaults"
