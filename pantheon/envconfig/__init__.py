"""Configuration of a process from its environment: typed settings, log set-up,
and the garbage collector of a long-running server (`heap`).

The services (`pantheon/config.py`), the gateway (`gateway/settings.py`) and
the CLI (`pantheon/cli/settings.py`) each read one typed object with this
package's base, so a value is parsed, bounded and reported the same way
everywhere. It is a leaf: it imports nothing else of `pantheon`, nor
`gateway`, so it is the one part of `pantheon` the gateway may import (the
layering test in tests/unit/test_client_channel.py).
"""

from pantheon.envconfig.logs import JsonFormatter, LogSettings, configure_logging
from pantheon.envconfig.settings import ConfigError, EnvSettings, variable, variables

__all__ = [
    "ConfigError",
    "EnvSettings",
    "JsonFormatter",
    "LogSettings",
    "configure_logging",
    "variable",
    "variables",
]
