"""The store's totals as Prometheus gauges, read when metrics are scraped."""

from __future__ import annotations

from collections.abc import Iterator

from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from mangostore.sync.server.store import RelayStore

__all__ = ["StoreCollector"]


class StoreCollector(Collector):
    """Vaults, devices, batches and bytes kept, from :meth:`RelayStore.stats`."""

    def __init__(self, store: RelayStore) -> None:
        self.store = store

    def collect(self) -> Iterator[GaugeMetricFamily]:
        """One gauge per total."""
        stats = self.store.stats()
        for name, text, value in (
            ("vaults", "Vaults attached", stats.vaults),
            ("devices", "Devices not removed", stats.devices),
            ("batches", "Batches kept", stats.batches),
            ("batch_bytes", "Bytes of batches kept", stats.batch_bytes),
            ("snapshot_bytes", "Bytes of snapshots kept", stats.snapshot_bytes),
            ("blob_bytes", "Bytes of stored files' chunks kept", stats.blob_bytes),
        ):
            yield GaugeMetricFamily(f"mangostore_sync_store_{name}", text, value=value)
