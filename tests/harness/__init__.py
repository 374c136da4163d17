"""Process harness for whole-system tests: real servers on free loopback ports, one module each
(a Spark Connect server with Spark's REST API, the sparkscope agent, `sparkscope server`, Spark's
History Server, JupyterLab, Prometheus, JupyterHub), all on the process lifecycle of `service`.

Shared by the end-to-end tests, the kernel extension's notebook test, the demo and the benchmarks
(scripts/setup.sh installs it into .venv), so it depends on the standard library and `requests`
only; pyspark is imported lazily by `connect_session`. `harness.nbrun` (notebooks under nbclient),
`harness.browser` (JupyterLab in Chromium) and `harness.fake_agent` (a stand-in for the agent's
stream, honest or an impostor) are imported by those who need them.
"""

from .agent import Agent
from .history import HistoryServer, replay
from .jupyterhub import JupyterHub, configurable_http_proxy
from .jupyterlab import JupyterLab
from .prometheus import Prometheus, PromQLError, prometheus_binary, promtool_binary
from .proxy import Proxy
from .spark import (
    CONNECT_SERVER_CLASS,
    JOB_FIELDS,
    LISTENER_CLASS,
    SparkConnectServer,
    close_connect_sessions,
    connect_operations,
    connect_session,
    connect_sessions,
    rest_get,
    spark_jobs,
)
from .sparkscope_server import SparkscopeServer
from .util import (
    LOOPBACK,
    REPO_ROOT,
    agent_binary,
    compile_listener,
    free_port,
    free_ports,
    listener_jar,
    port_open,
    self_signed,
    spark_home,
    tail,
    venv_bin,
    wait_until,
)

__all__ = [
    "CONNECT_SERVER_CLASS",
    "JOB_FIELDS",
    "LISTENER_CLASS",
    "LOOPBACK",
    "REPO_ROOT",
    "Agent",
    "HistoryServer",
    "JupyterHub",
    "JupyterLab",
    "PromQLError",
    "Prometheus",
    "Proxy",
    "SparkConnectServer",
    "SparkscopeServer",
    "agent_binary",
    "close_connect_sessions",
    "compile_listener",
    "configurable_http_proxy",
    "connect_operations",
    "connect_session",
    "connect_sessions",
    "free_port",
    "free_ports",
    "listener_jar",
    "port_open",
    "prometheus_binary",
    "promtool_binary",
    "replay",
    "rest_get",
    "self_signed",
    "spark_home",
    "spark_jobs",
    "tail",
    "venv_bin",
    "wait_until",
]
