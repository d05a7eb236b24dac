import sys

from workers.ops.cli import main

sys.exit(main())
