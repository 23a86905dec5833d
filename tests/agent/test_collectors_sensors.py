"""SensorsCollector on hand-made sysfs trees (a Raspberry Pi and a PC board)."""

from __future__ import annotations

from pathlib import Path

from edgewatch.agent.collectors.sensors import SensorsCollector, clean

from .readings import FIXTURES, PI, Reading

PC = FIXTURES / "sensors_pc"


def test_pc_chips_are_named_by_their_device_and_sensors_by_their_label() -> None:
    r = Reading(SensorsCollector(PC / "sys").collect(0.0))
    temps = {
        (d["chip"], d["sensor"]): v
        for d, v in ((dict(k), v) for k, v in r.of("node_hwmon_temp_celsius").items())
    }
    assert temps == {
        ("platform_coretemp_0", "Package id 0"): 52.0,
        ("platform_coretemp_0", "Core 0"): 50.0,
        ("platform_coretemp_0", "temp3"): 49.0,  # a second "Core 0" label: told apart by its file
        ("platform_coretemp_0", "Core 8"): 47.0,
        ("platform_nct6775_656", "SYSTIN"): 38.0,
        ("platform_nct6775_656", "CPUTIN"): 45.5,  # AUXTIN0 reads "garbage": skipped
        ("nvme_nvme0", "Composite"): 35.9,
        ("hwmon4", "temp1"): 29.9,  # no device and no name file: the folder's name
    }
    assert r("node_hwmon_fan_rpm", chip="platform_nct6775_656", sensor="fan1") == 1234
    assert r("node_hwmon_fan_rpm", chip="platform_nct6775_656", sensor="fan2") == 0
    assert not r.of("node_thermal_zone_temp")


def test_raspberry_pi_hwmon_and_thermal_zone() -> None:
    r = Reading(SensorsCollector(PI / "sys").collect(0.0))
    assert r("node_hwmon_temp_celsius", chip="thermal_thermal_zone0", sensor="temp1") == 48.7
    assert r("node_thermal_zone_temp", zone="0", type="cpu-thermal") == 48.7
    assert len(r.samples) == 2  # thermal_zone1 has no reading, cooling_device0 is not a zone


def test_no_sensors_is_no_samples(tmp_path: Path) -> None:
    assert SensorsCollector(tmp_path).collect(0.0) == []
    (tmp_path / "class" / "hwmon").mkdir(parents=True)
    assert SensorsCollector(tmp_path).collect(0.0) == []


def test_sensor_files_kept_in_the_device_folder(tmp_path: Path) -> None:
    device = tmp_path / "devices" / "platform" / "w83627ehf.2560"  # older drivers: the files live here
    hwmon = device / "hwmon" / "hwmon0"
    hwmon.mkdir(parents=True)
    (hwmon / "device").symlink_to("../../../w83627ehf.2560")
    (tmp_path / "class" / "hwmon").mkdir(parents=True)
    (tmp_path / "class" / "hwmon" / "hwmon0").symlink_to(hwmon)
    (device / "temp1_input").write_text("61000\n")
    (device / "temp2_input").write_text("62000\n")
    (hwmon / "temp2_input").write_text("62000\n")  # in both folders: read once
    r = Reading(SensorsCollector(tmp_path).collect(0.0))
    assert r.of("node_hwmon_temp_celsius") == {
        (("chip", "platform_w83627ehf_2560"), ("sensor", "temp1")): 61.0,
        (("chip", "platform_w83627ehf_2560"), ("sensor", "temp2")): 62.0,
    }


def test_chip_names_are_cleaned_like_node_exporter() -> None:
    assert clean("coretemp.0") == "coretemp_0"
    assert clean("0000:3d:00.0") == "0000:3d:00_0"
    assert clean(" ACPI-Thermal \n") == "acpi_thermal"
