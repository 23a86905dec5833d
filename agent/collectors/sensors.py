"""Temperatures and fans from ``/sys/class/hwmon`` and ``/sys/class/thermal``.

Series:

- ``node_hwmon_temp_celsius{chip,sensor}`` from ``temp*_input`` (millidegrees in the file)
- ``node_hwmon_fan_rpm{chip,sensor}`` from ``fan*_input``
- ``node_thermal_zone_temp{zone,type}`` from ``thermal_zone*/temp`` (degrees Celsius)

``chip`` is named as node_exporter names it: from the device the chip belongs to
("platform_coretemp_0", "nvme_nvme0"), else from its ``name`` file, so the name does not depend on
the order drivers loaded in. ``sensor`` is the sensor's own label ("Core 0", "Package id 0") when the
driver gives one, else its file name ("temp1"). A host without sensors (most VMs) reports nothing.
A sensor that cannot be read (the driver answers EIO or ENODATA while its device sleeps, or writes
something that is not a number) is skipped for that reading.
"""

from __future__ import annotations

import os
import re
from collections.abc import Sequence
from pathlib import Path

from .base import Sample, SeriesCache, read_text

_INVALID = re.compile(r"[^a-z0-9:_]")
_INPUT = re.compile(r"^(temp|fan)(\d+)_input$")
_DIGITS = re.compile(r"\d+")


def clean(name: str) -> str:
    """A chip name as node_exporter writes it: lower case, other characters as "_"."""
    return _INVALID.sub("_", name.strip().lower()).strip("_")


def chip_name(hwmon: Path) -> str:
    device = hwmon / "device"
    if device.exists():
        real = device.resolve()
        kind, dev = clean(real.parent.name), clean(real.name)
        if dev:
            return f"{kind}_{dev}" if kind else dev
    name = _read(hwmon / "name")
    if name and clean(name):
        return clean(name)
    return clean(hwmon.resolve().name)


def _read(path: Path) -> str | None:
    try:
        return read_text(path).strip()
    except OSError:
        return None


def _number(path: Path) -> int | None:
    text = _read(path)
    try:
        return int(text) if text is not None else None
    except ValueError:
        return None


class SensorsCollector:
    name = "sensors"

    def __init__(
        self, sys_root: Path = Path("/sys"), *, interval: float = 60.0, cache: SeriesCache | None = None
    ) -> None:
        self.interval = interval
        self._hwmon = sys_root / "class" / "hwmon"
        self._thermal = sys_root / "class" / "thermal"
        self._cache = cache or SeriesCache()

    def collect(self, now: float) -> Sequence[Sample]:
        return self._hwmon_sensors() + self._thermal_zones()

    def _hwmon_sensors(self) -> list[Sample]:
        c = self._cache
        out: list[Sample] = []
        for entry in sorted(_listdir(self._hwmon), key=_natural):
            if not entry.startswith("hwmon"):
                continue
            hwmon = self._hwmon / entry
            # some drivers keep the sensor files in device/ rather than in the hwmon folder itself
            folders = [hwmon, hwmon / "device"]
            chip = chip_name(hwmon)
            used: set[str] = set()
            for folder in folders:
                for name in sorted(_listdir(folder), key=_natural):
                    m = _INPUT.match(name)
                    if not m or (folder is not hwmon and (hwmon / name).exists()):
                        continue
                    value = _number(folder / name)
                    if value is None:
                        continue
                    kind, index = m.groups()
                    sensor = _read(folder / f"{kind}{index}_label") or f"{kind}{index}"
                    if sensor in used:  # two sensors with the same label: tell them apart by file
                        sensor = f"{kind}{index}"
                    used.add(sensor)
                    labels = (("chip", chip), ("sensor", sensor))
                    if kind == "temp":
                        out.append((c.gauge("node_hwmon_temp_celsius", labels, 1), round(value / 1000, 1)))
                    else:
                        out.append((c.gauge("node_hwmon_fan_rpm", labels), value))
        return out

    def _thermal_zones(self) -> list[Sample]:
        c = self._cache
        out: list[Sample] = []
        for entry in sorted(_listdir(self._thermal), key=_natural):
            if not entry.startswith("thermal_zone"):
                continue
            zone = self._thermal / entry
            value = _number(zone / "temp")
            if value is None:
                continue
            labels = (("type", _read(zone / "type") or ""), ("zone", entry[len("thermal_zone") :]))
            out.append((c.gauge("node_thermal_zone_temp", labels, 1), round(value / 1000, 1)))
        return out


def _listdir(path: Path) -> list[str]:
    try:
        return os.listdir(path)
    except OSError:  # no such class: no sensors
        return []


def _natural(name: str) -> tuple[str, int, str]:
    """temp2_input before temp10_input, thermal_zone2 before thermal_zone10."""
    m = _DIGITS.search(name)
    return (name[: m.start()], int(m.group()), name) if m else (name, -1, name)
