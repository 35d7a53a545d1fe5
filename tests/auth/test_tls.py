"""TLS on every listener, with a CA made in the test: the SDKs' own TLS settings, plaintext and
certificate-less clients refused, and a certificate rotated on disk served without a restart."""

from __future__ import annotations

import os
import socket
import ssl
from pathlib import Path
from typing import Any

import grpc
import httpx
import pytest
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2_grpc

from tests.auth.certs import Issued, TestCA, serial_of
from tests.auth.test_otlp_auth import INGEST_KEY, endpoint_of, headers_for, sdk_export, stored_spans
from tests.helpers import otlp_request, wait_until

PROTOCOLS = ["grpc", "http/protobuf"]


@pytest.fixture
def ca(tmp_path: Path) -> TestCA:
    return TestCA(tmp_path / "pki")


@pytest.fixture
def server_cert(ca: TestCA) -> Issued:
    return ca.issue("server")


def tls_settings(server: Issued, **more: Any) -> dict[str, Any]:
    return {"cert_file": str(server.cert_file), "key_file": str(server.key_file), **more}


def client_context(ca: TestCA, client: Issued | None = None) -> ssl.SSLContext:
    context = ssl.create_default_context(cafile=ca.cert_file)
    if client is not None:
        context.load_cert_chain(client.cert_file, client.key_file)
    return context


def served_serial(port: int, ca: TestCA, alpn: list[str] | None = None) -> int:
    """The serial of the certificate the server presents to a new connection."""
    context = client_context(ca)
    if alpn:
        context.set_alpn_protocols(alpn)
    with (
        socket.create_connection(("127.0.0.1", port), timeout=10) as raw,
        context.wrap_socket(raw, server_hostname="127.0.0.1") as connection,
    ):
        certificate = connection.getpeercert(binary_form=True)
    assert certificate is not None
    return serial_of(certificate)


def grpc_export(
    target: str, credentials: grpc.ChannelCredentials | None, key: str | None = INGEST_KEY
) -> grpc.StatusCode:
    metadata = [("authorization", f"Bearer {key}")] if key else []
    channel = grpc.secure_channel(target, credentials) if credentials else grpc.insecure_channel(target)
    with channel:
        try:
            trace_service_pb2_grpc.TraceServiceStub(channel).Export(otlp_request(1), metadata=metadata, timeout=5)
        except grpc.RpcError as error:
            return error.code()
    return grpc.StatusCode.OK


@pytest.mark.usefixtures("ingest_workers")
@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_sdk_with_otel_exporter_otlp_certificate_stores_spans(
    start_collector: Any, monkeypatch: pytest.MonkeyPatch, ca: TestCA, server_cert: Issued, protocol: str
) -> None:
    running = start_collector(
        tls=tls_settings(server_cert), auth={"api_keys": [{"name": "app", "key": INGEST_KEY, "scopes": ["ingest"]}]}
    )
    result = sdk_export(
        monkeypatch,
        endpoint_of(running, protocol, "https"),
        protocol,
        OTEL_EXPORTER_OTLP_CERTIFICATE=str(ca.cert_file),
        **headers_for(INGEST_KEY),
    )
    assert result.name == "SUCCESS"
    assert stored_spans(running) == 3
    admin = httpx.get(f"https://127.0.0.1:{running.collector.ports['admin']}/healthz", verify=client_context(ca))
    assert admin.status_code == 200


def test_plaintext_clients_are_refused(start_collector: Any, server_cert: Issued) -> None:
    running = start_collector(tls=tls_settings(server_cert))
    with pytest.raises(httpx.TransportError):
        httpx.post(
            f"{running.http_url}/v1/traces", content=b"", headers={"content-type": "application/json"}, timeout=5
        )
    with pytest.raises(httpx.TransportError):
        httpx.get(f"{running.admin_url}/healthz", timeout=5)
    assert grpc_export(running.grpc_target, None) == grpc.StatusCode.UNAVAILABLE
    assert stored_spans(running) == 0


def test_tls_can_be_turned_off_for_one_listener(start_collector: Any, ca: TestCA, server_cert: Issued) -> None:
    running = start_collector(tls=tls_settings(server_cert, admin={"enabled": False}))
    assert httpx.get(f"{running.admin_url}/healthz").status_code == 200
    with pytest.raises(httpx.TransportError):
        httpx.post(f"{running.http_url}/v1/traces", content=b"{}", headers={"content-type": "application/json"})


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_mutual_tls_refuses_a_client_without_a_certificate(
    start_collector: Any,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
    ca: TestCA,
    server_cert: Issued,
    protocol: str,
) -> None:
    running = start_collector(tls=tls_settings(server_cert, client_ca_file=str(ca.cert_file)))
    https = endpoint_of(running, protocol, "https")
    without = sdk_export(monkeypatch, https, protocol, OTEL_EXPORTER_OTLP_CERTIFICATE=str(ca.cert_file))
    assert without.name == "FAILURE"
    assert stored_spans(running) == 0

    stranger = TestCA(tmp_path / "other-pki", "another CA").issue("intruder", server=False)
    signed_elsewhere = sdk_export(
        monkeypatch,
        https,
        protocol,
        OTEL_EXPORTER_OTLP_CERTIFICATE=str(ca.cert_file),
        OTEL_EXPORTER_OTLP_CLIENT_CERTIFICATE=str(stranger.cert_file),
        OTEL_EXPORTER_OTLP_CLIENT_KEY=str(stranger.key_file),
    )
    assert signed_elsewhere.name == "FAILURE"
    assert stored_spans(running) == 0

    client = ca.issue("checkout-app", server=False)
    with_certificate = sdk_export(
        monkeypatch,
        https,
        protocol,
        OTEL_EXPORTER_OTLP_CERTIFICATE=str(ca.cert_file),
        OTEL_EXPORTER_OTLP_CLIENT_CERTIFICATE=str(client.cert_file),
        OTEL_EXPORTER_OTLP_CLIENT_KEY=str(client.key_file),
    )
    assert with_certificate.name == "SUCCESS"
    assert stored_spans(running) == 3


def rotate(ca: TestCA, current: Issued) -> Issued:
    """A new certificate and key moved over the served files at once (the way a Secret update lands)."""
    fresh = ca.issue("rotated", into=current.cert_file.parent)
    os.replace(fresh.key_file, current.key_file)
    os.replace(fresh.cert_file, current.cert_file)
    return Issued(current.cert_file, current.key_file, fresh.serial)


def test_a_rotated_certificate_is_served_without_restart_or_dropped_connections(
    start_collector: Any, ca: TestCA, server_cert: Issued
) -> None:
    running = start_collector(
        tls=tls_settings(server_cert), auth={"api_keys": [{"name": "app", "key": INGEST_KEY, "scopes": ["ingest"]}]}
    )
    http_port, grpc_port = running.collector.ports["otlp_http"], running.collector.ports["otlp_grpc"]
    assert served_serial(http_port, ca) == server_cert.serial
    assert served_serial(grpc_port, ca, ["h2"]) == server_cert.serial
    https = f"https://127.0.0.1:{http_port}/v1/traces"
    headers = {"content-type": "application/x-protobuf", "authorization": f"Bearer {INGEST_KEY}"}
    channel = grpc.secure_channel(f"127.0.0.1:{grpc_port}", grpc.ssl_channel_credentials(ca.cert_file.read_bytes()))
    stub = trace_service_pb2_grpc.TraceServiceStub(channel)
    metadata = [("authorization", f"Bearer {INGEST_KEY}")]
    with httpx.Client(verify=client_context(ca)) as kept_open:
        assert kept_open.post(https, content=otlp_request(1).SerializeToString(), headers=headers).status_code == 200
        stub.Export(otlp_request(1), metadata=metadata, timeout=10)

        rotated = rotate(ca, server_cert)
        assert served_serial(http_port, ca) == rotated.serial
        wait_until(
            lambda: served_serial(grpc_port, ca, ["h2"]) == rotated.serial, 10, "gRPC to serve the new certificate"
        )

        # the connections opened before the rotation carry on
        assert kept_open.post(https, content=otlp_request(1).SerializeToString(), headers=headers).status_code == 200
        assert len(kept_open._transport._pool.connections) == 1  # type: ignore[attr-defined]
        stub.Export(otlp_request(1), metadata=metadata, timeout=10)
    channel.close()
    assert stored_spans(running) == 4


def test_half_written_files_keep_the_previous_certificate(
    start_collector: Any, ca: TestCA, server_cert: Issued
) -> None:
    running = start_collector(tls=tls_settings(server_cert))
    port = running.collector.ports["otlp_http"]
    other = ca.issue("other")
    os.replace(other.cert_file, server_cert.cert_file)  # the key has not arrived yet: they do not match
    assert served_serial(port, ca) == server_cert.serial
    os.replace(other.key_file, server_cert.key_file)
    assert served_serial(port, ca) == other.serial


def test_unusable_certificate_files_stop_start_up(start_collector: Any, tmp_path: Path, server_cert: Issued) -> None:
    from collector.service import StartupError

    with pytest.raises(StartupError, match=r"cannot serve TLS on otlp_grpc: .*missing\.pem"):
        start_collector(tls={"cert_file": str(tmp_path / "missing.pem"), "key_file": str(server_cert.key_file)})
    mismatched = {"cert_file": str(server_cert.cert_file), "key_file": str(TestCA(tmp_path / "x").issue("x").key_file)}
    with pytest.raises(StartupError, match="cannot serve TLS on otlp_grpc"):
        start_collector(tls=mismatched)
