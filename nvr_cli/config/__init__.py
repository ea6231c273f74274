"""Settings: the schema and its sections (schema.py), the documented defaults (defaults.py), and
loading them from config files and the command line (loading.py)."""
from nvr_cli.config.loading import (ENV_HOME, LEGACY_NAMES, MACHINE_FILE, LoadedSettings, camera_settings, home_dir,
                                    load_settings, read_config_file)
from nvr_cli.config.schema import (FIELDS, SECTION_OF, SECTIONS, ContinuousSettings, EventSettings, HookSettings,
                                   LogSettings, MotionSettings, ObjectSettings, OutputSettings, QrSettings,
                                   RetentionSettings, RunSettings, Settings, SourceSettings, StatusSettings, as_plain,
                                   default_of, unknown_setting)

__all__ = ["ENV_HOME", "LEGACY_NAMES", "MACHINE_FILE", "LoadedSettings", "camera_settings", "home_dir", "load_settings",
           "read_config_file", "FIELDS", "SECTION_OF", "SECTIONS", "ContinuousSettings", "EventSettings", "HookSettings",
           "LogSettings", "MotionSettings", "ObjectSettings", "OutputSettings", "QrSettings", "RetentionSettings",
           "RunSettings", "Settings", "SourceSettings", "StatusSettings", "as_plain", "default_of", "unknown_setting"]
