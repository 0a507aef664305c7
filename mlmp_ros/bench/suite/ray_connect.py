"""Connecting to a Ray cluster: ``ray.init`` once a cluster has answered at the address within a time limit.

``ray.init`` has no time limit (at an address where nothing listens it retries for minutes), so
the driver first checks, within ``--connect-timeout`` seconds, that the address accepts a
connection and that a Ray GCS answers there, and otherwise stops with the address in the message.
"""

from __future__ import annotations

import os
import socket
import threading
import time
from typing import Any

from .ray_settings import ClusterError, RaySettings


def import_ray() -> Any:
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")  # never phone home
    try:
        import ray
    except ImportError:
        raise ClusterError("--executor ray needs Ray: pip install 'mlmp_ros[cluster]' (on every node)") from None
    return ray


def connect(ray: Any, settings: RaySettings) -> None:
    """``ray.init``: to the cluster at the address (RAY_ADDRESS when none is given), once it has answered
    within ``settings.connect_timeout``; else a Ray instance started here."""
    address = settings.address or os.environ.get("RAY_ADDRESS") or None
    if address is not None:
        check_cluster_answers(address, settings.connect_timeout)
    try:
        if settings.address:
            ray.init(address=settings.address, log_to_driver=False, logging_level="WARNING")
        else:
            ray.init(log_to_driver=False, logging_level="WARNING", include_dashboard=False)
    except (ConnectionError, RuntimeError, ValueError) as err:
        raise ClusterError(
            f"cannot use the Ray cluster at {address or 'this machine'}: {' '.join(str(err).split())} (start one "
            "with `ray start --head`, then pass --address HOST:PORT or auto)"
        ) from None


def check_cluster_answers(address: str, timeout: float) -> None:
    """Raise :class:`ClusterError` unless a Ray cluster answers at ``address`` within ``timeout`` seconds:
    its port accepts a connection, and (``HOST:PORT`` or ``auto``) its GCS tells its cluster id."""
    endpoint = _endpoint(address)
    if endpoint is None:
        return  # an address Ray resolves itself and could not here ("auto" with none started): Ray says why
    host, port = endpoint
    started = time.monotonic()
    try:
        with socket.create_connection((host, port), timeout=timeout):
            pass
        why = "" if "://" in address else _gcs_silence(f"{host}:{port}", timeout - (time.monotonic() - started))
    except OSError as err:
        why = f"{host}:{port}: {err.strerror or err}"
    if why:
        raise ClusterError(
            f"no Ray cluster answers at {address} within {timeout:g} s ({why}); start one with `ray start --head` "
            "and pass its address (--address HOST:PORT, or auto for the one started on this machine), or allow "
            "more time with --connect-timeout"
        )


def _endpoint(address: str) -> tuple[str, int] | None:
    """(host, port) of a cluster address: HOST:PORT, ray://HOST:PORT, or auto (the cluster started here)."""
    text = address.strip()
    if text == "auto":
        try:
            from ray._private.services import canonicalize_bootstrap_address

            text = canonicalize_bootstrap_address("auto") or ""
        except Exception:  # noqa: BLE001 - none started here, or another Ray: ray.init reports it
            return None
    host, sep, port = text.split("://", 1)[-1].rpartition(":")
    if not sep or not host or not port.isdigit():
        return None
    return host.strip("[]"), int(port)


def _gcs_silence(address: str, timeout: float) -> str:
    """'' when the Ray GCS at ``address`` gave its cluster id within ``timeout`` seconds, else why not.

    The client runs on a daemon thread: Ray's own connection attempt has no time limit."""
    try:
        from ray._raylet import GcsClient
    except ImportError:  # a Ray without this client: the port check is all
        return ""
    outcome: list[str] = []

    def ask() -> None:
        try:
            GcsClient(address=address).cluster_id  # noqa: B018 - the question is whether it answers
            outcome.append("")
        except Exception as err:  # noqa: BLE001 - the reason goes into the message
            outcome.append(" ".join(str(err).split()) or type(err).__name__)

    thread = threading.Thread(target=ask, name="ray-gcs-check", daemon=True)
    thread.start()
    thread.join(max(timeout, 0.0))
    return outcome[0] if outcome else "the port is open but no Ray GCS answered"
