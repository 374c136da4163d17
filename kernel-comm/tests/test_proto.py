"""The package's stream types against the one schema, proto/sparkscope/v1/model.proto: every
field a table of state.py reads exists in the proto under its proto3 JSON name (lowerCamelCase, as
the agent's pbjson encoding writes it) and with its type, and every field of a message the package
reads is read or deliberately ignored. A field added to, renamed in or removed from the proto fails
here until the tables follow."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path

import pytest
from sparkscope import state
from sparkscope.agent import AgentClient
from sparkscope.sessions import SessionKey

PROTO = Path(__file__).resolve().parents[2] / "proto" / "sparkscope" / "v1" / "model.proto"
SCALARS = {
    "string": "string",
    "bool": "bool",
    **{t: "int" for t in ("int32", "int64", "uint32", "uint64", "sint32", "sint64")},
}
TABLES = {
    m.name: m for m in vars(state).values() if isinstance(m, state.Message)
}  # every table the package has
# What the agent sends the kernel: everything in them is read through a table.
ROOTS = ("Update", "TaskList", "CancelResult", "MyWork")


@dataclass(frozen=True)
class ProtoField:
    name: str
    type: str
    label: str  # "", "optional" or "repeated"

    @property
    def json_name(self) -> str:
        head, *rest = self.name.split("_")
        return head + "".join(p[:1].upper() + p[1:] for p in rest)


def parse(text: str) -> tuple[dict[str, dict[str, ProtoField]], dict[str, list[str]]]:
    """Messages (their fields, oneof members included) and enums (their value names)."""
    text = re.sub(r"//[^\n]*", "", text)
    messages: dict[str, dict[str, ProtoField]] = {}
    enums: dict[str, list[str]] = {}
    for kind, name, body in _blocks(text):
        if kind == "enum":
            enums[name] = re.findall(r"\b([A-Z][A-Z0-9_]*)\s*=\s*\d+\s*;", body)
        elif kind == "message":
            fields = re.findall(
                r"(?:\b(optional|repeated)\s+)?\b([A-Za-z_][\w.]*)\s+([a-z_][a-z0-9_]*)\s*=\s*\d+\s*;",
                body,
            )
            messages[name] = {
                ProtoField(n, t, label).json_name: ProtoField(n, t, label) for label, t, n in fields
            }
    return messages, enums


def _blocks(text: str) -> list[tuple[str, str, str]]:
    """Top-level `message`/`enum`/`service` blocks with their bodies (braces balanced)."""
    out = []
    for m in re.finditer(r"\b(message|enum|service)\s+(\w+)\s*\{", text):
        if _depth(text, m.start()) != 0:
            continue
        depth, i = 1, m.end()
        while depth:
            depth += {"{": 1, "}": -1}.get(text[i], 0)
            i += 1
        out.append((m.group(1), m.group(2), text[m.end() : i - 1]))
    return out


def _depth(text: str, pos: int) -> int:
    return text.count("{", 0, pos) - text.count("}", 0, pos)


@pytest.fixture(scope="module")
def proto() -> tuple[dict[str, dict[str, ProtoField]], dict[str, list[str]]]:
    return parse(PROTO.read_text(encoding="utf-8"))


def test_the_parser_reads_the_proto(proto) -> None:
    messages, enums = proto
    job = messages["Job"]
    assert job["completionTimeMs"] == ProtoField("completion_time_ms", "int64", "optional")
    assert job["stageIds"].label == "repeated" and job["connect"].type == "ConnectRef"
    assert "jobId" in messages["CancelRequest"]  # a oneof's members are fields too
    assert enums["JobStatus"][:2] == ["JOB_STATUS_UNSPECIFIED", "JOB_STATUS_RUNNING"]


@pytest.mark.parametrize("name", sorted(TABLES))
def test_every_field_read_is_in_the_proto_with_its_type(proto, name: str) -> None:
    messages, enums = proto
    assert name in messages, f"{name} is not a message of model.proto"
    fields = messages[name]
    table = TABLES[name]
    for json_name, reader in table.fields.items():
        assert json_name in fields, f"{name}.{json_name}: no such field in model.proto"
        f = fields[json_name]
        where = f"{name}.{json_name} ({f.label} {f.type})"
        assert reader.repeated == (f.label == "repeated"), f"{where}: repeated or not"
        if f.type in SCALARS:
            assert reader.kind == SCALARS[f.type], f"{where} read as {reader.kind}"
            # an optional scalar's absence means unset, not its default: read as None
            assert reader.optional or f.label != "optional", f"{where}: read with a default"
        elif f.type in enums:
            assert reader.kind.startswith("enum:"), f"{where} read as {reader.kind}"
            prefix = reader.kind.removeprefix("enum:")
            values = enums[f.type]
            assert all(v.startswith(prefix) for v in values), f"{where}: values of {values}"
            assert f"{prefix}UNSPECIFIED" in values, f"{where}: its default"
        else:
            assert f.type in messages, f"{where}: unknown type"
            assert reader.kind == f"message:{f.type}", f"{where} read as {reader.kind}"
            assert f.type in TABLES, f"{where}: no table for {f.type}"
    unknown = table.ignored - fields.keys()
    assert not unknown, f"{name}: ignores fields model.proto does not have: {unknown}"


@pytest.mark.parametrize("name", sorted(TABLES))
def test_every_field_of_the_proto_is_read_or_ignored(proto, name: str) -> None:
    messages, _ = proto
    table = TABLES[name]
    missed = messages[name].keys() - table.fields.keys() - table.ignored
    assert not missed, f"{name}: model.proto's {sorted(missed)} neither read nor ignored"


def test_every_message_the_agent_sends_has_a_table(proto) -> None:
    messages, _ = proto
    seen: set[str] = set()
    todo = list(ROOTS)
    while todo:
        name = todo.pop()
        if name in seen:
            continue
        seen.add(name)
        assert name in TABLES, f"the agent sends {name}, which no table of state.py reads"
        ignored = TABLES[name].ignored
        todo.extend(
            f.type for k, f in messages[name].items() if f.type in messages and k not in ignored
        )


def test_what_the_kernel_sends_uses_the_protos_names(proto) -> None:
    messages, _ = proto
    client = AgentClient("ws://127.0.0.1:9/api/v1/stream", None, lambda _u: None)
    client.status.connected = True  # as if connected: requests are queued, not refused
    key = SessionKey("s", "u")
    client.cancel(key, {"tag": "t"}, lambda _r: None, reason="why")
    client.cancel(key, {"jobId": 4}, lambda _r: None)
    client.request_tasks(key, "app", 3, 0, lambda _r: None)
    frames = [json.loads(c.frame) for c in client._cancels.values()]
    client.stop()
    for frame in frames:
        ((kind, body),) = frame.items()
        assert kind in messages["ClientMessage"], kind
        request = messages[messages["ClientMessage"][kind].type]
        assert body.keys() <= request.keys(), f"{kind}: {body.keys() - request.keys()}"
    assert key.to_json().keys() <= messages["SessionKey"].keys()
