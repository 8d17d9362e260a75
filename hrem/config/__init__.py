"""Configuration: frozen dataclasses validated from JSON (stdlib only, no torch)."""
from hrem.config.base import ConfigError, from_dict, load_dataclass, load_json, require, to_dict

__all__ = ["ConfigError", "from_dict", "to_dict", "load_json", "load_dataclass", "require"]
