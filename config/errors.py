"""The root of postroom's exceptions, here because config/ is the package everything imports."""


class PostroomError(Exception):
    """Base of every error postroom raises on purpose."""


class ConfigError(PostroomError, ValueError):
    """Raised when a setting has a wrong value; the message names the environment variable."""
