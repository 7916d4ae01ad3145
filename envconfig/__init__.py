"""Configuration of a process from its environment: typed settings and log set-up.

The services (`pantheon/config.py`), the gateway (`gateway/settings.py`) and
the CLI (`pantheon/cli/settings.py`) each read one typed object with this
package's base, so a value is parsed, bounded and reported the same way
everywhere. It imports neither `pantheon` nor `gateway`: the gateway may not
import `pantheon` (the layering test in tests/unit/test_client_channel.py),
and both may import this.
"""

from envconfig.logs import JsonFormatter, LogSettings, configure_logging
from envconfig.settings import ConfigError, EnvSettings, variable, variables

__all__ = [
    "ConfigError",
    "EnvSettings",
    "JsonFormatter",
    "LogSettings",
    "configure_logging",
    "variable",
    "variables",
]
