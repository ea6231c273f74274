"""Settings: layering, provenance, validation with one-line errors (exit 2)."""

import dataclasses
import runpy
import stat
from types import MappingProxyType

import pytest
from click.testing import CliRunner
from helpers import ROOT, run_cli

from nvr_cli.cli import cli
from nvr_cli.config import FIELDS, SECTION_OF, SECTIONS, Settings, load_settings
from nvr_cli.core.errors import ConfigError
from nvr_cli.core.geometry import parse_polygon


def invoke(*args):
    return CliRunner().invoke(cli, list(args))


def test_defaults_are_written_once_in_the_documented_file_in_section_order():
    # the root's config.py is the package's defaults file, not a copy of it
    assert (ROOT / "config.py").resolve() == (ROOT / "nvr_cli" / "config" / "defaults.py").resolve()
    names = [k for k in runpy.run_path(str(ROOT / "config.py")) if not k.startswith("_")]
    assert sorted(names) == sorted(FIELDS)
    # its blocks are the schema's sections, in the same order, so the file reads as the stages do
    assert [SECTION_OF[n] for n in names] == [SECTION_OF[n] for n in FIELDS]
    assert names == list(FIELDS)


def test_each_stage_gets_its_own_section_and_flat_names_read_through():
    s = Settings(PRE_ALARM_RECORDING_SECONDS=3, MOTION_BLUR_SIZE=5)
    assert s.events.PRE_ALARM_RECORDING_SECONDS == 3.0 == s.PRE_ALARM_RECORDING_SECONDS
    assert s.motion.MOTION_BLUR_SIZE == 5 and not hasattr(s.motion, "PRE_ALARM_RECORDING_SECONDS")
    assert set(FIELDS) == {
        f for section in SECTIONS for f in dataclasses.fields(getattr(s, section)) for f in [f.name]
    }
    with pytest.raises(
        ConfigError, match="unknown setting 'PRE_ALARM_SECONDS'; did you mean PRE_ALARM_RECORDING_SECONDS"
    ):
        Settings(PRE_ALARM_SECONDS=3)
    with pytest.raises(ConfigError, match="MOTION_BLUR_SIZE: must be odd"):
        s.replace(MOTION_BLUR_SIZE=4)


def test_machine_file_overrides_config_and_options_override_both(isolated_home):
    (isolated_home / "config.py").write_text((ROOT / "config.py").read_text())
    (isolated_home / "machine_specific_configuration.py").write_text(
        "PRE_ALARM_RECORDING_SECONDS = 7\nCAMERA_NAME = 'yard'\n"
        "def subFolderNameGeneratorFunc(dts):\n    return f'{dts.year}-{dts.month:02}'\n"
    )
    loaded = load_settings(overrides={"CAMERA_NAME": "gate"})
    s = loaded.settings
    assert s.PRE_ALARM_RECORDING_SECONDS == 7.0
    assert s.CAMERA_NAME == "gate" and loaded.origins["CAMERA_NAME"] == "command line"
    assert loaded.origins["PRE_ALARM_RECORDING_SECONDS"].endswith("machine_specific_configuration.py")
    assert loaded.origins["MOTION_ERODE_ITERATIONS"].startswith("default")
    assert callable(s.subFolderNameGeneratorFunc)
    out = invoke("config", "show")
    assert out.exit_code == 0
    line = next(x for x in out.output.splitlines() if x.startswith("PRE_ALARM_RECORDING_SECONDS"))
    assert "7.0" in line and "machine_specific_configuration.py" in line


@pytest.mark.parametrize(
    "body, fragment",
    [
        ("PRE_ALARM_RECORDNG_SECONDS = 3\n", "did you mean PRE_ALARM_RECORDING_SECONDS?"),
        ("pre_alarm_recording_seconds = 3\n", "did you mean PRE_ALARM_RECORDING_SECONDS?"),
        ("PRE_ALARM_RECORDING_SECONDS = 'five'\n", "expected a number"),
        ("PRE_ALARM_RECORDING_SECONDS = -1\n", "must be at least 0"),
        ("MOTION_BLUR_SIZE = 20\n", "must be odd"),
        ("MOTION_DILATE_ITERATIONS = 2.5\n", "whole number"),
        ("LOG_TO_CONSOLE = 'maybe'\n", "expected True or False"),
        ("EVENT_REENCODE = 'maybe'\n", "expected True, False or None (automatic)"),
        ("MASKS = ['0,0 10,10']\n", "at least 3 points"),
        ("MASKS = ['0,0 10,x 5,5']\n", "must be numbers"),
        ("REGIONS = 5\n", "list of polygons"),
        ("scaleFrameTo = (500,)\n", "(width, height)"),
        ("APP_LOG_LEVEL = 'LOUD'\n", "DEBUG, INFO"),
        ("CAMERA_NAME = 'a/b'\n", "folder name"),
        ("x = = 1\n", "syntax error"),
        ("raise RuntimeError('boom')\n", "RuntimeError: boom"),
    ],
)
def test_bad_config_is_one_line_and_exit_2(tmp_path, body, fragment):
    cfg = tmp_path / "bad.py"
    cfg.write_text(body)
    for args in (["config", "check", "--config", str(cfg)], ["record", "--config", str(cfg), "x.mp4"]):
        out = invoke(*args)
        assert out.exit_code == 2, out.output
        lines = out.output.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("nvr-cli: error:"), out.output
        assert fragment in lines[0]
        assert "Traceback" not in out.output


def test_missing_or_directory_config_file(tmp_path):
    for target, words in ((tmp_path / "nope.py", "not found"), (tmp_path, "is a directory")):
        out = invoke("config", "check", "--config", str(target))
        assert out.exit_code == 2 and words in out.output


@pytest.mark.skipif(
    __import__("os").geteuid() == 0, reason="root reads any file; permissions cannot be tested"
)
def test_unreadable_config_file(tmp_path):
    cfg = tmp_path / "c.py"
    cfg.write_text("CAMERA_NAME = 'x'\n")
    cfg.chmod(0)
    out = invoke("config", "check", "--config", str(cfg))
    assert out.exit_code == 2 and "not readable" in out.output
    cfg.chmod(stat.S_IRUSR | stat.S_IWUSR)


def test_bad_option_value_is_exit_2():
    out = invoke("record", "--pre-alarm", "-3", "x.mp4")
    assert out.exit_code == 2 and "PRE_ALARM_RECORDING_SECONDS" in out.output
    out = invoke("record", "--mask", "1,2 3", "x.mp4")
    assert out.exit_code == 2 and "polygon" in out.output


def test_legacy_names_warn_and_helpers_are_allowed(tmp_path):
    cfg = tmp_path / "old.py"
    cfg.write_text(
        "import os\nFOURCC_CODEC = 'DIVX'\ndef helper(x):\n    return x\nCAMERA_NAME = helper('old')\n"
    )
    loaded = load_settings(str(cfg))
    assert loaded.settings.CAMERA_NAME == "old"
    assert any("FOURCC_CODEC" in w for w in loaded.warnings)


def test_settings_are_frozen():
    with pytest.raises(Exception):
        Settings().CAMERA_NAME = "x"
    with pytest.raises(ConfigError):
        load_settings(overrides={"NOPE": 1})


def test_settings_made_in_code_are_validated_and_typed():
    with pytest.raises(ConfigError, match=r"^MOTION_BLUR_SIZE: must be odd"):
        Settings(MOTION_BLUR_SIZE=4)
    with pytest.raises(ConfigError, match=r"^PRE_ALARM_RECORDING_SECONDS: must be at least 0"):
        Settings().replace(PRE_ALARM_RECORDING_SECONDS=-1)
    with pytest.raises(ConfigError, match=r"^MASKS: .*at least 3 points"):
        Settings(MASKS=["0,0 10,10"])
    s = Settings().replace(
        ON_EVENT_END=["/bin/true", "-x"],
        MASKS=["0,0 10,0 10,10"],
        scaleFrameTo=[320, 240],
        OBJECT_LABELS_OF_INTEREST="person, car",
        APP_LOG_LEVEL="debug",
        PRE_ALARM_RECORDING_SECONDS=3,
        OBJECT_LABEL_OVERRIDES={"car": {"min_score": 1}},
        CAMERAS={"front": {"cam": "rtsp://h/x"}},
    )
    assert s.ON_EVENT_END == ("/bin/true", "-x") and s.scaleFrameTo == (320, 240)
    assert s.MASKS == (parse_polygon("0,0 10,0 10,10"),) and s.OBJECT_LABELS_OF_INTEREST == ("person", "car")
    assert s.APP_LOG_LEVEL == "DEBUG" and type(s.PRE_ALARM_RECORDING_SECONDS) is float
    assert isinstance(s.OBJECT_LABEL_OVERRIDES, MappingProxyType)
    assert s.OBJECT_LABEL_OVERRIDES["car"]["min_score"] == 1.0
    assert isinstance(s.CAMERAS["front"], MappingProxyType)
    # every checker takes its own output: a typed Settings made again is the same
    again = Settings(**{name: getattr(s, name) for name in FIELDS})
    assert again == s and s.replace() == s
    assert Settings().replace(CAMERA_NAME="x").CAMERA_NAME == "x"


def test_typed_settings_from_files_keep_their_origin_in_errors(tmp_path):
    cfg = tmp_path / "c.py"
    cfg.write_text("MOTION_BLUR_SIZE = 4\n")
    with pytest.raises(ConfigError, match=rf"^{cfg}: MOTION_BLUR_SIZE: must be odd"):
        load_settings(str(cfg))


MISSPELT_FUNCTION = "def subFolderNameGeneratorFun(dts):\n    return dts.strftime('%Y')\n"


def test_misspelt_config_function_is_an_unknown_setting(tmp_path):
    cfg = tmp_path / "c.py"
    cfg.write_text(MISSPELT_FUNCTION)
    with pytest.raises(ConfigError) as e:
        load_settings(str(cfg))
    assert str(e.value) == (
        f"{cfg}: unknown setting 'subFolderNameGeneratorFun'; did you mean subFolderNameGeneratorFunc?"
    )
    proc = run_cli("config", "check", "--config", cfg)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert proc.stderr.strip().splitlines() == [f"nvr-cli: error: {e.value}"]


def test_helper_functions_and_lambdas_with_other_names_are_allowed(tmp_path):
    cfg = tmp_path / "c.py"
    cfg.write_text(
        "def folder_for(dts):\n    return dts.strftime('%Y')\n"
        "def subFolderNameGeneratorFunc(dts):\n    return folder_for(dts)\n"
        "def camera(n):\n    return f'rtsp://10.0.0.{n}/s'\n"
        "scale = lambda w: (w, w * 9 // 16)\ncam = camera(5)\nscaleFrameTo = scale(320)\n"
    )
    s = load_settings(str(cfg)).settings
    assert s.cam == "rtsp://10.0.0.5/s" and s.scaleFrameTo == (320, 180)
    assert s.subFolderNameGeneratorFunc.__name__ == "subFolderNameGeneratorFunc"
    out = invoke("config", "check", "--config", str(cfg))
    assert out.exit_code == 0, out.output


@pytest.mark.parametrize("given", ["person,car", " person, car ", "['person', 'car']", '["person","car"]'])
def test_labels_from_the_command_line_in_either_form(given):
    # --help shows the config file's form; both it and "person,car" work on the command line
    assert Settings(OBJECT_LABELS_OF_INTEREST=given).OBJECT_LABELS_OF_INTEREST == ("person", "car")
