"""Finding the pieces without configuration: the stream a Connect server announces, the token
`sparkscope server` leaves, the binary and jar installed with the package."""

from __future__ import annotations

from pathlib import Path

import pytest
from sparkscope import connection, extension, install


class Client:
    def __init__(self, value: str | None = None, error: Exception | None = None) -> None:
        self.value, self.error, self.asked = value, error, []

    def get_config_with_defaults(self, *pairs: tuple[str, str]) -> tuple[str | None, ...]:
        self.asked.append(pairs)
        if self.error is not None:
            raise self.error
        return tuple(self.value if k == connection.STREAM_URL_CONF else d for k, d in pairs)


def test_the_stream_url_the_server_announces_is_used() -> None:
    client = Client("wss://agent.example:4740/api/v1/stream")
    assert connection.announced_url(client) == "wss://agent.example:4740/api/v1/stream"
    assert client.asked == [(("spark.sparkscope.streamUrl", ""),)]


@pytest.mark.parametrize(
    "client",
    [
        Client(""),
        Client(None),
        Client("http://not-a-stream"),
        Client(error=OSError("down")),
        object(),
    ],
)
def test_no_usable_announcement_leaves_the_default(client: object) -> None:
    assert connection.announced_url(client) is None


def test_the_token_sparkscope_server_wrote_is_the_last_resort(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in ("SPARKSCOPE_TOKEN", "SPARKSCOPE_TOKEN_FILE", "JUPYTERHUB_API_TOKEN"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("SPARKSCOPE_HOME", str(tmp_path))
    assert extension.default_token() is None
    (tmp_path / "token").write_text("from-the-server\n")
    assert extension.default_token() == "from-the-server"
    monkeypatch.setenv("JUPYTERHUB_API_TOKEN", "hub")
    assert extension.default_token() == "hub"
    monkeypatch.setenv("SPARKSCOPE_TOKEN", "explicit")
    assert extension.default_token() == "explicit"


def test_missing_pieces_say_what_to_do(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SPARKSCOPE_BIN", str(tmp_path / "nope"))
    with pytest.raises(install.NotInstalled, match="SPARKSCOPE_BIN names"):
        install.binary()
    monkeypatch.setenv("SPARKSCOPE_LISTENER_JAR", str(tmp_path / "nope.jar"))
    with pytest.raises(install.NotInstalled, match="SPARKSCOPE_LISTENER_JAR names"):
        install.listener_jar()
    jar = tmp_path / "l.jar"
    jar.write_bytes(b"PK")
    monkeypatch.setenv("SPARKSCOPE_LISTENER_JAR", str(jar))
    assert install.listener_jar() == jar


class Conf:
    """The part of pyspark's SparkConf the injection uses."""

    def __init__(self, **values: str) -> None:
        self.values = dict(values)

    def get(self, key: str, default: str | None = None) -> str | None:
        return self.values.get(key, default)

    def set(self, key: str, value: str) -> Conf:
        self.values[key] = value
        return self


def test_the_listener_joins_what_the_notebook_configured(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from sparkscope import classic

    jar = tmp_path / "l.jar"
    jar.write_bytes(b"PK")
    monkeypatch.setenv("SPARKSCOPE_LISTENER_JAR", str(jar))

    class Agent:
        ingest = "127.0.0.1:5555"

    conf = Conf(
        **{"spark.extraListeners": "com.example.Mine", "spark.driver.extraClassPath": "/opt/x.jar"}
    )
    classic._add_listener(conf, Agent())  # type: ignore[arg-type]
    classic._add_listener(conf, Agent())  # type: ignore[arg-type]  # twice: still once
    assert conf.values == {
        "spark.extraListeners": "com.example.Mine,io.sparkscope.listener.SparkscopeListener",
        "spark.driver.extraClassPath": f"/opt/x.jar:{jar}",
        "spark.sparkscope.agent": "127.0.0.1:5555",
        "spark.sparkscope.classicSession": "true",
    }
