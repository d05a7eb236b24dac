"""postroom's task functions, one module per family; importing this package registers them.

Workers import the modules named by `POSTROOM_TASK_MODULES` (default: this package).
"""

from tasks import maintenance

__all__ = ["maintenance"]
