"""Debian's nginx running `deploy/nginx-callgate.conf` on a loopback port, for the deploy tests.

The site is used as shipped, with only what a machine decides replaced: the port it listens on
(a free loopback one), the service's port, and the access log's directory. It is included in
a minimal main configuration under the test's own prefix (pid, logs, temp files), and nginx
runs in the foreground as one process (no master, no workers changing user), so nothing
outside the test's directory is touched.
"""

from __future__ import annotations

import shutil
import subprocess
import time
from pathlib import Path
from types import TracebackType

from tests.support.service import free_port
from tests.support.services import missing, port_open

ROOT = Path(__file__).resolve().parents[2]
SITE = ROOT / "deploy" / "nginx-callgate.conf"
NGINX = shutil.which("nginx") or "/usr/sbin/nginx"


def require_nginx() -> str:
    """nginx's path; skip (or fail, under CALLGATE_REQUIRE_SERVICES=1) when it is missing."""
    if not Path(NGINX).is_file():
        missing("nginx", "it is not installed (apt-get install nginx)")
    return NGINX


def _replace_once(text: str, old: str, new: str) -> str:
    # The site's shape is part of the test: a line that moved fails here, by name.
    assert text.count(old) == 1, f"{SITE.name}: expected exactly one {old!r}"
    return text.replace(old, new)


def render_site(listen_port: int, upstream_port: int, log_dir: Path) -> str:
    text = SITE.read_text(encoding="utf-8")
    text = _replace_once(text, "    listen 80;\n", f"    listen 127.0.0.1:{listen_port};\n")
    text = _replace_once(text, "    listen [::]:80;\n", "")
    text = _replace_once(text, "server 127.0.0.1:8018;", f"server 127.0.0.1:{upstream_port};")
    return _replace_once(text, "/var/log/nginx/", f"{log_dir}/")


class Nginx:
    """``with Nginx(tmp_path, upstream_port) as nginx:`` serves the site on ``nginx.port``."""

    def __init__(self, directory: Path, upstream_port: int) -> None:
        self.nginx = require_nginx()
        self.prefix = directory / "nginx"
        self.prefix.mkdir(parents=True, exist_ok=True)
        self.port = free_port()
        self.base_url = f"http://127.0.0.1:{self.port}"
        site = self.prefix / "callgate.conf"
        site.write_text(render_site(self.port, upstream_port, self.prefix), encoding="utf-8")
        temp = {name: self.prefix / name for name in ("body", "proxy", "fastcgi", "uwsgi", "scgi")}
        self.conf = self.prefix / "nginx.conf"
        self.conf.write_text(
            "daemon off;\n"
            "master_process off;\n"
            f"pid {self.prefix}/nginx.pid;\n"
            f"error_log {self.prefix}/error.log info;\n"
            "events { worker_connections 256; }\n"
            "http {\n"
            f"    client_body_temp_path {temp['body']};\n"
            f"    proxy_temp_path {temp['proxy']};\n"
            f"    fastcgi_temp_path {temp['fastcgi']};\n"
            f"    uwsgi_temp_path {temp['uwsgi']};\n"
            f"    scgi_temp_path {temp['scgi']};\n"
            f"    include {site};\n"
            "}\n",
            encoding="utf-8",
        )
        self.process: subprocess.Popen[bytes] | None = None

    def _argv(self, *extra: str) -> list[str]:
        return [self.nginx, "-p", str(self.prefix), "-c", str(self.conf), "-e", "stderr", *extra]

    def check(self) -> subprocess.CompletedProcess[str]:
        """`nginx -t` on the configuration."""
        return subprocess.run(self._argv("-t"), capture_output=True, text=True, check=False)

    def error_log(self) -> str:
        path = self.prefix / "error.log"
        return path.read_text(encoding="utf-8", errors="replace") if path.exists() else ""

    def __enter__(self) -> Nginx:
        output = (self.prefix / "stderr.log").open("wb")
        with output:
            self.process = subprocess.Popen(self._argv(), stdout=output, stderr=output)
        deadline = time.monotonic() + 10
        while not port_open("127.0.0.1", self.port, timeout=0.2):
            if self.process.poll() is not None or time.monotonic() > deadline:
                self.__exit__(None, None, None)
                log = (self.prefix / "stderr.log").read_text(errors="replace")
                raise RuntimeError(f"nginx did not start: {log}{self.error_log()}")
            time.sleep(0.05)
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        value: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(5)
