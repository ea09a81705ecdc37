"""`lightning.pytorch.callbacks.device_stats_monitor`."""

from ember.callbacks.device_stats import DeviceStatsMonitor

__all__ = ["DeviceStatsMonitor"]
